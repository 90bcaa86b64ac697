"""Throwaway TLS and SCRAM material for the local broker's secure listener (``up --secure``).

Generated once per broker home with the JDK's ``keytool`` into ``<home>/secure/`` (git-ignored):
a private CA, a broker certificate for ``localhost``/``127.0.0.1`` signed by it, random
passwords, and three SCRAM users: ``churn`` (the pipeline), ``churn-replay`` (replay) and
``intruder`` (no rights, for tests). ``client.env`` and ``replay.env`` there hold the variables a
client needs; nothing secret is ever committed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from churnstream.errors import BrokerToolingError

MECHANISM = "SCRAM-SHA-512"
PIPELINE_USER = "churn"
REPLAY_USER = "churn-replay"  # replay's own principal: reads the dead letters, writes the raw topic
UNPRIVILEGED_USER = "intruder"
LISTENER = "SECURE"


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


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def ensure_material(home: Path, secure_bootstrap: str) -> SecureMaterial:
    """Create the CA, broker keystore and users once; later calls reuse them."""
    folder = home / "secure"
    state_file = folder / "secrets.json"
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        material = SecureMaterial(folder, state["store_password"], state["users"])
        if REPLAY_USER not in material.users:  # a home made before replay had its own user
            material.users[REPLAY_USER] = secrets.token_hex(16)
            _write_private(
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
        _write_private(
            state_file, json.dumps({"store_password": material.store_password, "users": material.users}, indent=2)
        )
    for path, user, example in (
        (material.client_env, PIPELINE_USER, "python producer.py ..."),
        (material.replay_env, REPLAY_USER, "python -m churnstream.replay ..."),
    ):
        _write_private(
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
    return material


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
    # The CA's private key signs nothing after this; a key left lying around could sign a
    # certificate that every client trusting ca.pem would accept.
    ca_store.unlink()
