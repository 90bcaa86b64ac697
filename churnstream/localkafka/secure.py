"""Throwaway TLS and SCRAM material for the local broker's secure listeners (``up --secure``).

Generated once per broker home with the JDK's ``keytool`` (and ``openssl`` for the client's key)
into ``<home>/secure/`` (git-ignored): a private CA, a broker certificate for
``localhost``/``127.0.0.1`` signed by it, a client certificate ``CN=churn`` signed by it, random
passwords, and three SCRAM users: ``churn`` (the pipeline), ``churn-replay`` (replay) and
``intruder`` (no rights, for tests).

Two listeners use them: SASL_SSL (SCRAM) on port + 2, and mutual TLS on port + 3, where the
client certificate's CN is the user (``churn``, with the same rights). For each, the folder holds
the client settings twice: as variables (``client.env``, ``replay.env``, ``mtls.env``) and as a
Kafka client properties file (``client.properties``, ``mtls.properties``) for ``--command-config``.
Nothing secret is ever committed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from churnstream.errors import BrokerToolingError
from churnstream.files import write_private
from churnstream.kafka.properties import java_properties
from churnstream.settings import settings_from

MECHANISM = "SCRAM-SHA-512"
PIPELINE_USER = "churn"
REPLAY_USER = "churn-replay"  # replay's own principal: reads the dead letters, writes the raw topic
UNPRIVILEGED_USER = "intruder"
LISTENER = "SECURE"
MTLS_LISTENER = "MTLS"
# A client certificate's subject CN=<name> is the user <name> (else it would be "CN=churn").
PRINCIPAL_MAPPING = "RULE:^CN=([^,]+)$/$1/,DEFAULT"


@dataclass(frozen=True)
class SecureMaterial:
    folder: Path
    store_password: str
    users: dict[str, str]  # name -> password

    @property
    def keystore(self) -> Path:
        return self.folder / "broker.p12"

    @property
    def ca_pem(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def client_env(self) -> Path:
        return self.folder / "client.env"

    @property
    def replay_env(self) -> Path:
        return self.folder / "replay.env"

    @property
    def client_properties(self) -> Path:
        return self.folder / "client.properties"

    @property
    def client_certificate(self) -> Path:
        return self.folder / "client.pem"

    @property
    def client_key(self) -> Path:
        return self.folder / "client.key"

    @property
    def client_keystore(self) -> Path:
        """The key and the certificate in one PEM file, as Java's PEM keystore wants them."""
        return self.folder / "client-keystore.pem"

    @property
    def mtls_env(self) -> Path:
        return self.folder / "mtls.env"

    @property
    def mtls_properties(self) -> Path:
        return self.folder / "mtls.properties"

    def redact(self, text: str) -> str:
        """``text`` with every generated password masked (for error messages quoting a tool)."""
        for secret in (self.store_password, *self.users.values()):
            text = text.replace(secret, "***")
        return text

    def scram_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create the SCRAM users at format time."""
        args = []
        for name, password in sorted(self.users.items()):
            args += ["--add-scram", f"{MECHANISM}=[name={name},password={password}]"]
        return args

    def listener_properties(self) -> dict[str, str]:
        prefix = f"listener.name.{LISTENER.lower()}"
        mtls = f"listener.name.{MTLS_LISTENER.lower()}"
        return {
            "sasl.enabled.mechanisms": MECHANISM,
            f"{prefix}.sasl.enabled.mechanisms": MECHANISM,
            f"{prefix}.{MECHANISM.lower()}.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            f"{prefix}.ssl.keystore.location": str(self.keystore),
            f"{prefix}.ssl.keystore.password": self.store_password,
            f"{prefix}.ssl.key.password": self.store_password,
            f"{prefix}.ssl.keystore.type": "PKCS12",
            f"{mtls}.ssl.keystore.location": str(self.keystore),
            f"{mtls}.ssl.keystore.password": self.store_password,
            f"{mtls}.ssl.key.password": self.store_password,
            f"{mtls}.ssl.keystore.type": "PKCS12",
            f"{mtls}.ssl.client.auth": "required",
            f"{mtls}.ssl.truststore.type": "PEM",
            f"{mtls}.ssl.truststore.location": str(self.ca_pem),
            "ssl.principal.mapping.rules": PRINCIPAL_MAPPING,
            # ACLs: the plaintext listeners (tools, inter-broker, controller) act as ANONYMOUS,
            # a super user; everyone on the secure listener needs explicit grants.
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": "User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        }


STORE_PASSWORD_ENV = "CHURN_KEYSTORE_PASSWORD"


def _keytool(*args: str, password: str) -> None:
    """Run keytool; ``-storepass:env``/``-keypass:env`` in ``args`` read ``password`` from the
    environment, so it never shows on a command line (``ps``) or in keytool's messages."""
    env = {**os.environ, STORE_PASSWORD_ENV: password}
    result = subprocess.run(["keytool", *args], capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        raise BrokerToolingError(f"keytool {args[0]} failed: {(result.stdout + result.stderr).strip()[-300:]}")


def ensure_material(home: Path, secure_bootstrap: str, mtls_bootstrap: str | None = None) -> SecureMaterial:
    """Create the CA, broker keystore, client certificate and users once; later calls reuse them."""
    folder = home / "secure"
    state_file = folder / "secrets.json"
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        material = SecureMaterial(folder, state["store_password"], state["users"])
        if REPLAY_USER not in material.users:  # a home made before replay had its own user
            material.users[REPLAY_USER] = secrets.token_hex(16)
            write_private(
                state_file, json.dumps({"store_password": material.store_password, "users": material.users}, indent=2)
            )
    else:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
        material = SecureMaterial(
            folder,
            secrets.token_hex(16),
            {name: secrets.token_hex(16) for name in (PIPELINE_USER, REPLAY_USER, UNPRIVILEGED_USER)},
        )
        _generate_certificates(material)
        write_private(
            state_file, json.dumps({"store_password": material.store_password, "users": material.users}, indent=2)
        )
    for path, user, example in (
        (material.client_env, PIPELINE_USER, "python producer.py ..."),
        (material.replay_env, REPLAY_USER, "python -m churnstream.replay ..."),
    ):
        write_private(
            path,
            f"# Connect as {user} to the local broker's SASL_SSL listener.\n"
            f"# Use it with: CHURN_DOTENV={path} {example}\n"
            f"KAFKA_BOOTSTRAP_SERVERS={secure_bootstrap}\n"
            "KAFKA_SECURITY_PROTOCOL=SASL_SSL\n"
            f"KAFKA_SASL_MECHANISM={MECHANISM}\n"
            f"KAFKA_SASL_USERNAME={user}\n"
            f"KAFKA_SASL_PASSWORD={material.users[user]}\n"
            f"KAFKA_SSL_CAFILE={material.ca_pem}\n",
        )
    write_private(
        material.client_properties,
        f"# Connect as {PIPELINE_USER} to the SASL_SSL listener: --command-config {material.client_properties}\n"
        + java_properties(settings_from(_read_env(material.client_env))),
    )
    if mtls_bootstrap is not None and material.client_certificate.is_file():
        write_private(
            material.mtls_env,
            f"# Connect as {PIPELINE_USER} to the mutual-TLS listener (the certificate's CN is the user).\n"
            f"# Use it with: CHURN_DOTENV={material.mtls_env} python producer.py ...\n"
            f"KAFKA_BOOTSTRAP_SERVERS={mtls_bootstrap}\n"
            "KAFKA_SECURITY_PROTOCOL=SSL\n"
            f"KAFKA_SSL_CAFILE={material.ca_pem}\n"
            f"KAFKA_SSL_CERTFILE={material.client_certificate}\n"
            f"KAFKA_SSL_KEYFILE={material.client_key}\n",
        )
        write_private(
            material.mtls_properties,
            f"# Connect as {PIPELINE_USER} to the mutual-TLS listener: --command-config {material.mtls_properties}\n"
            + java_properties(settings_from(_read_env(material.mtls_env)), keystore=str(material.client_keystore)),
        )
    return material


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def _client_certificate(material: SecureMaterial, ca_store: Path) -> None:
    """The pipeline user's certificate for the mutual-TLS listener: a key made by openssl (keytool
    cannot export one as PEM, which the Python client needs), signed by the CA."""
    csr = material.folder / "client.csr"
    result = subprocess.run(
        ["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={PIPELINE_USER}",
         "-keyout", str(material.client_key), "-out", str(csr)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise BrokerToolingError(f"openssl req failed: {(result.stdout + result.stderr).strip()[-300:]}")
    material.client_key.chmod(0o600)
    _keytool(
        "-gencert", "-alias", "ca", "-keystore", str(ca_store), "-storepass:env", STORE_PASSWORD_ENV,
        "-infile", str(csr), "-outfile", str(material.client_certificate), "-rfc", "-validity", "3650",
        "-ext", "EKU=clientAuth", password=material.store_password,
    )  # fmt: skip
    csr.unlink()
    write_private(material.client_keystore, material.client_key.read_text() + material.client_certificate.read_text())


def _generate_certificates(material: SecureMaterial) -> None:
    folder, password = material.folder, material.store_password
    ca_store, csr, signed = folder / "ca.p12", folder / "broker.csr", folder / "broker.crt"
    storepass = ["-storepass:env", STORE_PASSWORD_ENV]
    common = ["-storetype", "PKCS12", *storepass, "-keypass:env", STORE_PASSWORD_ENV]
    _keytool(
        "-genkeypair", "-alias", "ca", "-dname", "CN=telco-churn-stream local CA", "-keyalg", "RSA",
        "-keysize", "2048", "-validity", "3650", "-ext", "bc:c", "-keystore", str(ca_store), *common,
        password=password,
    )  # fmt: skip
    _keytool("-exportcert", "-alias", "ca", "-rfc", "-keystore", str(ca_store), *storepass,
             "-file", str(material.ca_pem), password=password)  # fmt: skip
    _keytool(
        "-genkeypair", "-alias", "broker", "-dname", "CN=localhost", "-keyalg", "RSA", "-keysize", "2048",
        "-validity", "3650", "-keystore", str(material.keystore), *common, password=password,
    )  # fmt: skip
    _keytool("-certreq", "-alias", "broker", "-keystore", str(material.keystore), *storepass,
             "-file", str(csr), password=password)  # fmt: skip
    _keytool(
        "-gencert", "-alias", "ca", "-keystore", str(ca_store), *storepass, "-infile", str(csr),
        "-outfile", str(signed), "-rfc", "-validity", "3650", "-ext", "SAN=dns:localhost,ip:127.0.0.1",
        "-ext", "EKU=serverAuth", password=password,
    )  # fmt: skip
    for alias, certificate in (("ca", material.ca_pem), ("broker", signed)):
        _keytool("-importcert", "-alias", alias, "-file", str(certificate), "-keystore", str(material.keystore),
                 *storepass, "-noprompt", password=password)  # fmt: skip
    csr.unlink()
    _client_certificate(material, ca_store)
    # The CA's private key signs nothing after this; a key left lying around could sign a
    # certificate that every client trusting ca.pem would accept.
    ca_store.unlink()
