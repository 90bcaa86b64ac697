"""The one place that reads settings: the environment, then ``.env`` (python-dotenv).

``load_settings()`` builds one frozen :class:`Settings`; everything else takes it as an
argument. A bad value raises :class:`ConfigError` naming the variable, the value and what is
allowed. The SASL password is wrapped in :class:`Secret`, so it never shows in a repr, a
log line or an error message.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from dotenv import dotenv_values

from churnstream.errors import ConfigError


def _project_root() -> Path:
    """The checkout this package runs from (``make`` installs it editable), else the working folder.

    Default paths (data, model, checkpoints, the local broker) live under it.
    """
    checkout = Path(__file__).resolve().parent.parent
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


PROJECT_ROOT = _project_root()

# Environment variable names: a contract the scripts, docs and tests rely on.
ENV_BOOTSTRAP_SERVERS = "KAFKA_BOOTSTRAP_SERVERS"
ENV_TOPIC_RAW = "KAFKA_TOPIC_RAW"
ENV_TOPIC_PREDICTIONS = "KAFKA_TOPIC_PREDICTIONS"
ENV_TOPIC_DEADLETTER = "KAFKA_TOPIC_DEADLETTER"
ENV_TOPIC_PREDICTIONS_SHADOW = "KAFKA_TOPIC_PREDICTIONS_SHADOW"  # a challenger's predictions (--shadow-model)
ENV_CONSUMER_GROUP = "KAFKA_CONSUMER_GROUP"
ENV_TOPIC_PARTITIONS = "KAFKA_TOPIC_PARTITIONS"
ENV_REPLICATION_FACTOR = "KAFKA_REPLICATION_FACTOR"
ENV_SECURITY_PROTOCOL = "KAFKA_SECURITY_PROTOCOL"
ENV_SASL_MECHANISM = "KAFKA_SASL_MECHANISM"
ENV_SASL_USERNAME = "KAFKA_SASL_USERNAME"
ENV_SASL_PASSWORD = "KAFKA_SASL_PASSWORD"
ENV_SSL_CAFILE = "KAFKA_SSL_CAFILE"
ENV_SSL_CERTFILE = "KAFKA_SSL_CERTFILE"  # mutual TLS: the client's certificate (PEM)
ENV_SSL_KEYFILE = "KAFKA_SSL_KEYFILE"  # ... and its private key (PEM)
ENV_SSL_KEY_PASSWORD = "KAFKA_SSL_KEY_PASSWORD"  # ... if the key is encrypted
ENV_SSL_CHECK_HOSTNAME = "KAFKA_SSL_CHECK_HOSTNAME"  # "false" only for brokers without a proper name in their cert
ENV_MODEL_STORE = "MODEL_STORE"  # the model store: <store>/<version>/ and <store>/current (churnstream.ml.store)
ENV_MODEL_PATH = "MODEL_PATH"  # a pinned model file; unset or empty: follow the store's current version
ENV_DATA_PATH = "DATA_PATH"
ENV_EVENT_SCHEMA = "EVENT_SCHEMA"  # the event contract the producer writes and training reads (a JSON Schema file)
ENV_CHECKPOINT_DIR = "CHECKPOINT_DIR"
ENV_DEADLETTER_RETENTION_MS = "KAFKA_DEADLETTER_RETENTION_MS"
ENV_CONSUMER_INSTANCE_ID = "CONSUMER_INSTANCE_ID"
# How long a consumer started before its input topic exists waits for it (services in any order).
ENV_CONSUMER_WAIT_FOR_TOPIC_S = "CONSUMER_WAIT_FOR_TOPIC_S"
ENV_METRICS_PORT = "METRICS_PORT"  # the consumer serves /metrics, /healthz and /readyz here; off when unset
# The streaming producer's own port: one .env serves both on one host, so they cannot share a name.
ENV_PRODUCER_METRICS_PORT = "PRODUCER_METRICS_PORT"
# The interface both ports listen on; empty: every interface. One name for both: two processes can
# listen on one address (on two ports), so an operator restricting it means both.
ENV_METRICS_ADDRESS = "METRICS_ADDRESS"
ENV_LOG_FORMAT = "LOG_FORMAT"  # text (default) or json
ENV_DOTENV = "CHURN_DOTENV"  # which .env file to read; "none" to read none

ALL_VARIABLES = (
    ENV_BOOTSTRAP_SERVERS,
    ENV_TOPIC_RAW,
    ENV_TOPIC_PREDICTIONS,
    ENV_TOPIC_PREDICTIONS_SHADOW,
    ENV_TOPIC_DEADLETTER,
    ENV_CONSUMER_GROUP,
    ENV_TOPIC_PARTITIONS,
    ENV_REPLICATION_FACTOR,
    ENV_SECURITY_PROTOCOL,
    ENV_SASL_MECHANISM,
    ENV_SASL_USERNAME,
    ENV_SASL_PASSWORD,
    ENV_SSL_CAFILE,
    ENV_SSL_CERTFILE,
    ENV_SSL_KEYFILE,
    ENV_SSL_KEY_PASSWORD,
    ENV_SSL_CHECK_HOSTNAME,
    ENV_MODEL_STORE,
    ENV_MODEL_PATH,
    ENV_DATA_PATH,
    ENV_EVENT_SCHEMA,
    ENV_CHECKPOINT_DIR,
    ENV_DEADLETTER_RETENTION_MS,
    ENV_CONSUMER_INSTANCE_ID,
    ENV_CONSUMER_WAIT_FOR_TOPIC_S,
    ENV_METRICS_PORT,
    ENV_PRODUCER_METRICS_PORT,
    ENV_METRICS_ADDRESS,
    ENV_LOG_FORMAT,
)
# The variables whose values are secrets: never on a command line, in a results file or a log line.
SECRET_VARIABLES = (ENV_SASL_PASSWORD, ENV_SSL_KEY_PASSWORD)
LOG_FORMATS = ("text", "json")

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

DEFAULT_BOOTSTRAP_SERVERS = "localhost:29092"
DEFAULT_DATA_PATH = PROJECT_ROOT / "data" / "WA_Fn-UseC_-Telco-Customer-Churn.csv"  # data.DATASET_FILENAME
DEFAULT_SCHEMA_PATH = PROJECT_ROOT / "schemas" / "event.schema.json"  # the Telco contract
DEFAULT_MODEL_STORE = PROJECT_ROOT / "models"
DEFAULT_CHECKPOINT_DIR = PROJECT_ROOT / ".checkpoints"

_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_INSTANCE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
# -1: keep dead letters until someone deletes them ("nothing lost" must not expire after a week).
DEFAULT_DEADLETTER_RETENTION_MS = -1
# A minute: a producer or a provisioning job started at the same time creates the topic well within
# it; a name mistyped still ends in one line (exit 7) soon enough. 0: do not wait.
DEFAULT_WAIT_FOR_TOPIC_S = 60.0
MAX_WAIT_FOR_TOPIC_S = 86_400.0
MIN_RETENTION_MS = 3_600_000
_HOST_PORT_RE = re.compile(r"^\[?[A-Za-z0-9._:-]+\]?:\d{1,5}$")
_HOST_NAME_RE = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
# Every interface, as Prometheus exporters listen by default (node_exporter's ":9100", the official
# client's start_http_server(addr="0.0.0.0")): a pod's probes and Prometheus come from outside.
EVERY_INTERFACE = ""


class Secret:
    """A value that must never be printed. ``str()`` and ``repr()`` show ``***``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    topic_raw: str = "telco-raw-customers"
    topic_predictions: str = "telco-churn-predictions"
    topic_predictions_shadow: str = "telco-churn-predictions-shadow"
    topic_deadletter: str = "telco-deadletter"
    consumer_group: str = "telco-churn-consumer-group"
    topic_partitions: int = 6
    # None: KAFKA_REPLICATION_FACTOR is not set, and topics the pipeline creates get
    # min(3, brokers in the cluster) replicas (kafka_io.replication_for): 1 on the single local
    # broker, 3 on the three-node cluster or a larger one. A number is used as it is.
    replication_factor: int | None = None
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_key_password: Secret | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True
    # Extra kafka-python options from --command-config or -X (kafka.properties says which are allowed).
    client_options: tuple[tuple[str, int | str], ...] = ()
    # Where model versions live (churnstream.ml.store.ModelStore); the consumer follows its current one.
    model_store: Path = DEFAULT_MODEL_STORE
    # A pinned model file (its card beside it, model_card.json); None: the store's current version.
    # Resolve either with churnstream.ml.store.resolve_model(settings), never by hand.
    model_path: Path | None = None
    data_path: Path = DEFAULT_DATA_PATH
    # The event schema for the producer and training; a consumer takes its model's (the card embeds it).
    schema_path: Path = DEFAULT_SCHEMA_PATH
    checkpoint_dir: Path = DEFAULT_CHECKPOINT_DIR
    # retention.ms of the dead-letter topic when the pipeline creates it (-1: no time limit)
    deadletter_retention_ms: int = DEFAULT_DEADLETTER_RETENTION_MS
    # The consumer's stable id when the operator assigns one (a pod name); else <host>-<slot>.
    consumer_instance_id: str | None = None
    # How long the consumer waits for its input topic to be created before exit 7 (0: not at all).
    consumer_wait_for_topic_s: float = DEFAULT_WAIT_FOR_TOPIC_S
    metrics_port: int | None = None
    producer_metrics_port: int | None = None
    metrics_address: str = EVERY_INTERFACE  # where both metrics ports listen (an IP address or host name)

    def describe(self) -> dict[str, str]:
        """Settings as strings, safe to print: the password is masked."""
        return {
            ENV_BOOTSTRAP_SERVERS: self.bootstrap_servers,
            ENV_TOPIC_RAW: self.topic_raw,
            ENV_TOPIC_PREDICTIONS: self.topic_predictions,
            ENV_TOPIC_PREDICTIONS_SHADOW: self.topic_predictions_shadow,
            ENV_TOPIC_DEADLETTER: self.topic_deadletter,
            ENV_CONSUMER_GROUP: self.consumer_group,
            ENV_TOPIC_PARTITIONS: str(self.topic_partitions),
            ENV_REPLICATION_FACTOR: "" if self.replication_factor is None else str(self.replication_factor),
            ENV_SECURITY_PROTOCOL: self.security_protocol,
            ENV_SASL_MECHANISM: self.sasl_mechanism or "",
            ENV_SASL_USERNAME: self.sasl_username or "",
            ENV_SASL_PASSWORD: "***" if self.sasl_password else "",
            ENV_SSL_CAFILE: str(self.ssl_cafile or ""),
            ENV_SSL_CERTFILE: str(self.ssl_certfile or ""),
            ENV_SSL_KEYFILE: str(self.ssl_keyfile or ""),
            ENV_SSL_KEY_PASSWORD: "***" if self.ssl_key_password else "",
            ENV_SSL_CHECK_HOSTNAME: "" if self.ssl_check_hostname else "false",
            ENV_MODEL_STORE: str(self.model_store),
            ENV_MODEL_PATH: "" if self.model_path is None else str(self.model_path),
            ENV_DATA_PATH: str(self.data_path),
            ENV_EVENT_SCHEMA: str(self.schema_path),
            ENV_CHECKPOINT_DIR: str(self.checkpoint_dir),
            ENV_DEADLETTER_RETENTION_MS: str(self.deadletter_retention_ms),
            ENV_CONSUMER_INSTANCE_ID: self.consumer_instance_id or "",
            ENV_CONSUMER_WAIT_FOR_TOPIC_S: f"{self.consumer_wait_for_topic_s:g}",
            ENV_METRICS_PORT: "" if self.metrics_port is None else str(self.metrics_port),
            ENV_PRODUCER_METRICS_PORT: "" if self.producer_metrics_port is None else str(self.producer_metrics_port),
            ENV_METRICS_ADDRESS: self.metrics_address,
        }

    def secrets(self) -> dict[str, Secret]:
        """The secrets that are set, by variable (one of SECRET_VARIABLES)."""
        found = {ENV_SASL_PASSWORD: self.sasl_password, ENV_SSL_KEY_PASSWORD: self.ssl_key_password}
        return {name: secret for name, secret in found.items() if secret is not None}

    def environment(self, *, reveal_secrets: bool) -> dict[str, str]:
        """The settings as environment variables for a child process (the way a secret reaches it:
        never its command line). Unlike :meth:`describe`, the password is only there when asked for
        by name: a masked one would make the child fail to log in."""
        values = self.describe()
        for name, secret in self.secrets().items():
            if reveal_secrets:
                values[name] = secret.reveal()
            else:
                del values[name]
        return {name: value for name, value in values.items() if value != ""}


def _bad(name: str, value: str, allowed: str) -> ConfigError:
    return ConfigError(f"{name}={value!r} is not valid: {allowed}")


_N = TypeVar("_N", int, float)


def _number(
    env: Mapping[str, str],
    name: str,
    default: _N,
    *,
    parse: Callable[[str], _N],
    valid: Callable[[_N], bool],
    allowed: str,
) -> _N:
    """A number parsed and checked, or ``default`` when the variable is unset or blank."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise _bad(name, raw, allowed) from None
    if not valid(value):
        raise _bad(name, raw, allowed)
    return value


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    allowed = f"expected a whole number from {low} to {high}"
    return _number(env, name, default, parse=int, valid=lambda v: low <= v <= high, allowed=allowed)


def _seconds(env: Mapping[str, str], name: str, default: float, high: float) -> float:
    allowed = f"expected a number of seconds from 0 to {high:g}"
    return _number(env, name, default, parse=float, valid=lambda v: 0 <= v <= high, allowed=allowed)


def _optional_int(env: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    """A whole number, or None when the variable is unset or blank (the caller decides then)."""
    if not env.get(name, "").strip():
        return None
    return _int(env, name, low, low, high)


def _topic(env: Mapping[str, str], name: str, default: str, what: str = "topic") -> str:
    """A topic name, or (``what="group"``) a group name held to the same rule: it is the first part
    of the transactional ids ``<group>~<instance id>``, which must read one way only (no ``~``)."""
    value = env.get(name, "").strip() or default
    if not _TOPIC_RE.match(value) or value in (".", ".."):
        raise _bad(name, value, f"a {what} name is 1-249 characters of letters, digits, '.', '_', '-'")
    return value


def _retention(env: Mapping[str, str]) -> int:
    allowed = f"-1 (no time limit) or at least {MIN_RETENTION_MS} (one hour, in milliseconds)"
    return _number(
        env,
        ENV_DEADLETTER_RETENTION_MS,
        DEFAULT_DEADLETTER_RETENTION_MS,
        parse=int,
        valid=lambda v: v == -1 or v >= MIN_RETENTION_MS,
        allowed=allowed,
    )


def _instance_id(env: Mapping[str, str]) -> str | None:
    raw = env.get(ENV_CONSUMER_INSTANCE_ID, "").strip()
    if not raw:
        return None
    if not _INSTANCE_ID_RE.match(raw) or raw in (".", ".."):
        raise _bad(ENV_CONSUMER_INSTANCE_ID, raw, "1-200 characters of A-Z a-z 0-9 . _ - (a pod name fits)")
    return raw


def listen_address(text: str, name: str = ENV_METRICS_ADDRESS) -> str:
    """An address to listen on: an IP address (IPv6 with or without brackets) or a host name; empty
    for every interface. Pure: whether it belongs to this host is known only when binding."""
    raw = text.strip()
    if not raw:
        return EVERY_INTERFACE
    value = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        if _HOST_NAME_RE.match(value):
            return value
    raise _bad(name, raw, "an IP address of this host (127.0.0.1, ::1) or a host name; empty: every interface")


def _optional_path(env: Mapping[str, str], name: str) -> Path | None:
    return _path(env, name, Path()) if env.get(name, "").strip() else None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise _bad(name, raw, "expected true or false")


def log_format_from(env: Mapping[str, str]) -> str:
    raw = env.get(ENV_LOG_FORMAT, "").strip().lower()
    if raw and raw not in LOG_FORMATS:
        raise _bad(ENV_LOG_FORMAT, raw, "expected one of " + ", ".join(LOG_FORMATS))
    return raw or "text"


def _path(env: Mapping[str, str], name: str, default: Path) -> Path:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    path = Path(raw).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def _choice(env: Mapping[str, str], name: str, default: str | None, allowed: tuple[str, ...]) -> str | None:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value = raw.upper()
    if value not in allowed:
        raise _bad(name, raw, "expected one of " + ", ".join(allowed))
    return value


def _bootstrap(env: Mapping[str, str]) -> str:
    raw = env.get(ENV_BOOTSTRAP_SERVERS, "").strip() or DEFAULT_BOOTSTRAP_SERVERS
    servers = [part.strip() for part in raw.split(",")]
    for server in servers:
        port = server.rsplit(":", 1)[-1]
        if not _HOST_PORT_RE.match(server) or not 0 < int(port) < 65536:
            raise _bad(ENV_BOOTSTRAP_SERVERS, raw, "expected host:port[,host:port...], e.g. localhost:29092")
    return ",".join(servers)


def read_environment(dotenv_path: Path | None = None) -> dict[str, str]:
    """The process environment layered over ``.env`` (the environment wins, as in python-dotenv)."""
    choice = os.environ.get(ENV_DOTENV, "")
    if dotenv_path is None and choice.lower() != "none":
        dotenv_path = Path(choice) if choice else PROJECT_ROOT / ".env"
    values: dict[str, str] = {}
    if dotenv_path is not None and dotenv_path.is_file():
        values.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    values.update(os.environ)
    return values


def settings_from(env: Mapping[str, str]) -> Settings:
    """Validate a mapping of variables into Settings. Pure: reads nothing else."""
    security_protocol = _choice(env, ENV_SECURITY_PROTOCOL, "PLAINTEXT", SECURITY_PROTOCOLS)
    assert security_protocol is not None
    sasl_mechanism = _choice(env, ENV_SASL_MECHANISM, None, SASL_MECHANISMS)
    username = env.get(ENV_SASL_USERNAME, "").strip() or None
    password_raw = env.get(ENV_SASL_PASSWORD, "")
    password = Secret(password_raw) if password_raw else None
    uses_sasl = security_protocol.startswith("SASL_")
    if uses_sasl:
        if sasl_mechanism is None:
            raise _bad(
                ENV_SASL_MECHANISM,
                "",
                f"{ENV_SECURITY_PROTOCOL}={security_protocol} needs one of " + ", ".join(SASL_MECHANISMS),
            )
        if username is None or password is None:
            raise ConfigError(
                f"{ENV_SECURITY_PROTOCOL}={security_protocol} needs {ENV_SASL_USERNAME} "
                f"and {ENV_SASL_PASSWORD} to be set"
            )
    ssl_cafile = _optional_path(env, ENV_SSL_CAFILE)
    ssl_certfile, ssl_keyfile = _optional_path(env, ENV_SSL_CERTFILE), _optional_path(env, ENV_SSL_KEYFILE)
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError(f"mutual TLS needs both {ENV_SSL_CERTFILE} and {ENV_SSL_KEYFILE}, or neither")
    key_password = env.get(ENV_SSL_KEY_PASSWORD, "")
    return Settings(
        bootstrap_servers=_bootstrap(env),
        topic_raw=_topic(env, ENV_TOPIC_RAW, Settings.topic_raw),
        topic_predictions=_topic(env, ENV_TOPIC_PREDICTIONS, Settings.topic_predictions),
        topic_predictions_shadow=_topic(env, ENV_TOPIC_PREDICTIONS_SHADOW, Settings.topic_predictions_shadow),
        topic_deadletter=_topic(env, ENV_TOPIC_DEADLETTER, Settings.topic_deadletter),
        consumer_group=_topic(env, ENV_CONSUMER_GROUP, Settings.consumer_group, what="group"),
        topic_partitions=_int(env, ENV_TOPIC_PARTITIONS, Settings.topic_partitions, 1, 1000),
        replication_factor=_optional_int(env, ENV_REPLICATION_FACTOR, 1, 7),
        security_protocol=security_protocol,
        sasl_mechanism=sasl_mechanism,
        sasl_username=username,
        sasl_password=password,
        ssl_cafile=ssl_cafile,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        ssl_key_password=Secret(key_password) if key_password else None,
        ssl_check_hostname=_flag(env, ENV_SSL_CHECK_HOSTNAME, True),
        model_store=_path(env, ENV_MODEL_STORE, DEFAULT_MODEL_STORE),
        model_path=_optional_path(env, ENV_MODEL_PATH),
        data_path=_path(env, ENV_DATA_PATH, DEFAULT_DATA_PATH),
        schema_path=_path(env, ENV_EVENT_SCHEMA, DEFAULT_SCHEMA_PATH),
        checkpoint_dir=_path(env, ENV_CHECKPOINT_DIR, DEFAULT_CHECKPOINT_DIR),
        deadletter_retention_ms=_retention(env),
        consumer_instance_id=_instance_id(env),
        consumer_wait_for_topic_s=_seconds(
            env, ENV_CONSUMER_WAIT_FOR_TOPIC_S, DEFAULT_WAIT_FOR_TOPIC_S, MAX_WAIT_FOR_TOPIC_S
        ),
        metrics_port=_optional_int(env, ENV_METRICS_PORT, 1, 65535),
        producer_metrics_port=_optional_int(env, ENV_PRODUCER_METRICS_PORT, 1, 65535),
        metrics_address=listen_address(env.get(ENV_METRICS_ADDRESS, "")),
    )


def load_settings(
    dotenv_path: Path | None = None,
    overrides: Mapping[str, str] | None = None,
    client_options: Mapping[str, int | str] | None = None,
) -> Settings:
    """Read the environment and ``.env`` once and validate them. ``overrides`` (variables from the
    command line: --bootstrap-server, --command-config, -X) win over both."""
    settings = settings_from({**read_environment(dotenv_path), **(overrides or {})})
    if client_options:
        settings = replace(settings, client_options=tuple(sorted(client_options.items())))
    return settings


def log_format() -> str:
    """LOG_FORMAT from the environment or ``.env``: read before the settings, to log their errors."""
    return log_format_from(read_environment())
