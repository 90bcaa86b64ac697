"""Kafka client properties (a ``--command-config`` file, ``-X key=value``) into the pipeline's settings.

The names are Kafka's: the Java client's (as Kafka's own tools take them in ``--command-config``)
and librdkafka's (as kcat takes them with ``-X``). Each supported key becomes one of our settings
(so it is validated, and shown masked by ``python config.py``) or one of a few kafka-python tuning
options. A key the pipeline sets itself, because its guarantees depend on it, is refused; so is
any other, by name, with the list of what is supported. Pure: no file or network access here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from churnstream.errors import ConfigError
from churnstream.settings import (
    ENV_BOOTSTRAP_SERVERS,
    ENV_SASL_MECHANISM,
    ENV_SASL_PASSWORD,
    ENV_SASL_USERNAME,
    ENV_SECURITY_PROTOCOL,
    ENV_SSL_CAFILE,
    ENV_SSL_CERTFILE,
    ENV_SSL_CHECK_HOSTNAME,
    ENV_SSL_KEY_PASSWORD,
    ENV_SSL_KEYFILE,
    SECRET_VARIABLES,
    Settings,
)

# Kafka property -> the setting (environment variable) it sets.
AS_SETTINGS: dict[str, str] = {
    "bootstrap.servers": ENV_BOOTSTRAP_SERVERS,
    "security.protocol": ENV_SECURITY_PROTOCOL,
    "sasl.mechanism": ENV_SASL_MECHANISM,  # Java
    "sasl.mechanisms": ENV_SASL_MECHANISM,  # librdkafka
    "sasl.username": ENV_SASL_USERNAME,  # librdkafka
    "sasl.password": ENV_SASL_PASSWORD,  # librdkafka
    "ssl.ca.location": ENV_SSL_CAFILE,  # librdkafka
    "ssl.certificate.location": ENV_SSL_CERTFILE,  # librdkafka
    "ssl.key.location": ENV_SSL_KEYFILE,  # librdkafka
    "ssl.key.password": ENV_SSL_KEY_PASSWORD,
}
# Kafka property -> the kafka-python option it sets, for tuning the connection (whole numbers).
AS_CLIENT_OPTIONS: dict[str, str] = {
    "connections.max.idle.ms": "connections_max_idle_ms",
    "metadata.max.age.ms": "metadata_max_age_ms",
    "reconnect.backoff.ms": "reconnect_backoff_ms",
    "reconnect.backoff.max.ms": "reconnect_backoff_max_ms",
    "receive.buffer.bytes": "receive_buffer_bytes",
    "send.buffer.bytes": "send_buffer_bytes",
}
# Java's ways to say the same, handled below: the JAAS line, PEM trust and key stores, hostname check.
SPECIAL = (
    "sasl.jaas.config",
    "ssl.truststore.location",
    "ssl.truststore.type",
    "ssl.keystore.location",
    "ssl.keystore.type",
    "ssl.endpoint.identification.algorithm",
    "enable.ssl.certificate.verification",
)
# Set by the pipeline, per role, because its guarantees depend on them.
OWNED = (
    "acks",
    "enable.idempotence",
    "transactional.id",
    "transaction.timeout.ms",
    "isolation.level",
    "group.id",
    "group.instance.id",
    "enable.auto.commit",
    "auto.offset.reset",
    "max.poll.records",
    "delivery.timeout.ms",
    "request.timeout.ms",
    "linger.ms",
    "batch.size",
    "compression.type",
    "max.request.size",
    "client.id",
)
SUPPORTED = tuple(sorted({*AS_SETTINGS, *AS_CLIENT_OPTIONS, *SPECIAL}))
# Keys whose values are secrets besides those that set a secret setting: the JAAS line holds the
# password; the rest are refused here, but may still be typed on a command line that is shown.
_SECRET_KEYS = ("sasl.jaas.config", "ssl.key.pem", "ssl.keystore.key", "sasl.oauthbearer.config")
# What Java's String.trim() removes, as ConfigDef.parseType calls it: every character up to U+0020.
_JAVA_TRIMMED = "".join(map(chr, range(0x21)))
_JAAS = re.compile(r'(username|password)\s*=\s*"((?:[^"\\]|\\.)*)"')


def is_secret_property(key: str) -> bool:
    """Whether a client property's value is a secret, never to be shown: the one place that decides."""
    key = key.strip().lower()
    named = "password" in key or "secret" in key
    return named or key in _SECRET_KEYS or AS_SETTINGS.get(key) in SECRET_VARIABLES


def client_option_properties(settings: Settings) -> list[tuple[str, str]]:
    """The kafka-python tuning options back as the Kafka properties that set them (none is a secret)."""
    names = {option: key for key, option in AS_CLIENT_OPTIONS.items()}
    return [(names[option], str(value)) for option, value in settings.client_options]


@dataclass
class Translated:
    settings: dict[str, str] = field(default_factory=dict)  # variables, layered over the environment
    client_options: dict[str, int | str] = field(default_factory=dict)


def parse_properties(text: str, source: str) -> list[tuple[str, str, str]]:
    """``key=value`` (or ``key:value``) lines of a Java properties file; ``#``/``!`` comments.
    Returns (key, value, where) with ``where`` like ``client.properties:3`` for error messages.

    Read as a Java client reads the file: ``Properties.load`` keeps a value's trailing whitespace
    (``secret\\ `` too, escaped), then the client's ``ConfigDef`` trims every string and password
    value at both ends (kafka-clients 4.3.1 reads ``ssl.key.password=secret`` and two spaces as ``secret``).
    A password ending in a space survives only inside the quotes of ``sasl.jaas.config``, as in Java;
    ``-X`` (kcat's way, librdkafka's) keeps the value as typed."""
    pairs = []
    pending = ""  # a line ending in a backslash continues on the next, as in Java
    for number, raw in enumerate(text.splitlines(), start=1):
        line = pending + raw.lstrip()
        if not line.strip() or line.startswith(("#", "!")):
            pending = ""
            continue
        if (len(line) - len(line.rstrip("\\"))) % 2 == 1:
            pending = line[:-1]
            continue
        pending = ""
        key, separator, value = _split(line)
        if not separator:
            raise ConfigError(f"{source}:{number}: {line[:60]!r} has no value (key=value)")
        pairs.append((_unescape(key), _unescape(value).strip(_JAVA_TRIMMED), f"{source}:{number}"))
    return pairs


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def _unescape(text: str) -> str:
    """Java's escapes in a properties file: ``\\t`` and the like, ``\\uXXXX``, else the character itself."""

    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("u") and len(code) == 5:
            return chr(int(code[1:], 16))
        return _ESCAPES.get(code, code)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", one, text)


def _split(line: str) -> tuple[str, str, str]:
    """Java's three separators: ``=``, ``:``, or whitespace alone (``ssl.key.password secret``)."""
    match = re.match(r"([^=:\s]+)\s*([=:])\s*(.*)$", line) or re.match(r"([^=:\s]+)(\s)\s*(.*)$", line)
    if match is None:
        return line.rstrip(), "", ""
    return match.group(1), match.group(2), match.group(3)


def translate(pairs: Iterable[tuple[str, str, str]]) -> Translated:
    """Kafka properties, later ones winning, into settings variables and kafka-python options."""
    values: dict[str, tuple[str, str]] = {}
    for key, value, where in pairs:
        if key in OWNED:
            raise ConfigError(f"{where}: {key} is set by the pipeline itself (its guarantees depend on it)")
        if key not in SUPPORTED:
            raise ConfigError(f"{where}: {key} is not a supported client property; supported: {', '.join(SUPPORTED)}")
        values[key] = (value, where)
    out = Translated()
    for key, (value, where) in values.items():
        if key in AS_SETTINGS:
            out.settings[AS_SETTINGS[key]] = value
        elif key in AS_CLIENT_OPTIONS:
            if not value.isdigit():
                raise ConfigError(f"{where}: {key}={value!r} is not a whole number")
            out.client_options[AS_CLIENT_OPTIONS[key]] = int(value)
    _java_forms(values, out)
    return out


def _java_forms(values: Mapping[str, tuple[str, str]], out: Translated) -> None:
    if "sasl.jaas.config" in values:
        jaas, where = values["sasl.jaas.config"]
        found = {name: re.sub(r"\\(.)", r"\1", value) for name, value in _JAAS.findall(jaas)}
        known_module = "PlainLoginModule" in jaas or "ScramLoginModule" in jaas
        if not known_module or set(found) != {"username", "password"}:
            raise ConfigError(
                f"{where}: sasl.jaas.config must be a PlainLoginModule or ScramLoginModule line with a username and "
                "a password (other logins, such as OAUTHBEARER or GSSAPI, are not supported)"
            )
        out.settings[ENV_SASL_USERNAME] = found["username"]
        out.settings[ENV_SASL_PASSWORD] = found["password"]
    for store, variable in (("truststore", ENV_SSL_CAFILE), ("keystore", ENV_SSL_CERTFILE)):
        if f"ssl.{store}.location" not in values:
            continue
        location, where = values[f"ssl.{store}.location"]
        kind = values.get(f"ssl.{store}.type", ("JKS", where))[0].upper()
        if kind != "PEM":
            raise ConfigError(
                f"{where}: ssl.{store}.location is a {kind} store; kafka-python reads PEM only: convert it (keytool "
                f"-exportcert -rfc for a truststore; openssl pkcs12 for a keystore) and set ssl.{store}.type=PEM"
            )
        out.settings[variable] = location
        if store == "keystore":  # a Java PEM keystore holds the key and the certificate chain in one file
            out.settings[ENV_SSL_KEYFILE] = location
    if "ssl.endpoint.identification.algorithm" in values:
        algorithm = values["ssl.endpoint.identification.algorithm"][0].lower()
        out.settings[ENV_SSL_CHECK_HOSTNAME] = "true" if algorithm == "https" else "false"
    if values.get("enable.ssl.certificate.verification", ("true", ""))[0].lower() == "false":
        raise ConfigError(
            f"{values['enable.ssl.certificate.verification'][1]}: turning certificate verification off is not "
            "supported; give the broker's CA (ssl.ca.location) instead"
        )


def java_properties(settings: Settings, keystore: str | None = None) -> str:
    """The settings the other way round: a Java client properties file, for Kafka's own tools
    (``--command-config``), so they reach the cluster the pipeline reaches, as the same user.

    Java reads a PEM keystore as one file holding the key and the certificate chain: ``keystore``
    is that file (the caller writes it, next to this text, for mutual TLS). Holds the password:
    the caller keeps it in a private file.
    """
    lines = [f"bootstrap.servers={settings.bootstrap_servers}", f"security.protocol={settings.security_protocol}"]
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_mechanism and settings.sasl_username and settings.sasl_password is not None
        module = "plain.PlainLoginModule" if settings.sasl_mechanism == "PLAIN" else "scram.ScramLoginModule"
        username, password = (_jaas_quoted(v) for v in (settings.sasl_username, settings.sasl_password.reveal()))
        lines += [
            f"sasl.mechanism={settings.sasl_mechanism}",
            f"sasl.jaas.config=org.apache.kafka.common.security.{module} required "
            f'username="{username}" password="{password}";',
        ]
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        if settings.ssl_cafile is not None:
            lines += ["ssl.truststore.type=PEM", f"ssl.truststore.location={settings.ssl_cafile}"]
        lines.append(f"ssl.endpoint.identification.algorithm={'https' if settings.ssl_check_hostname else ''}")
        if keystore is not None:
            lines += ["ssl.keystore.type=PEM", f"ssl.keystore.location={keystore}"]
            if settings.ssl_key_password is not None:
                lines.append(f"ssl.key.password={settings.ssl_key_password.reveal()}")
    return "".join(line.replace("\\", "\\\\") + "\n" for line in lines)


def _jaas_quoted(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
