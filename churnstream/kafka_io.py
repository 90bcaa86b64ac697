"""Kafka clients built from Settings, with the client's errors turned into ours.

Every client gets the same security options and a short bootstrap timeout, so a broker that
is down is reported in one line within seconds instead of a 30 s hang. Retries after that are
kafka-python's own (with backoff); nothing here loops around the client.
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import errors as kafka_errors
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.net.compat import KafkaNetClient

from churnstream.errors import (
    AuthenticationFailed,
    BrokerUnavailable,
    ConfigError,
    PipelineError,
    SecurityProtocolMismatch,
    TlsError,
    TopicMissing,
)
from config import ENV_BOOTSTRAP_SERVERS, ENV_REPLICATION_FACTOR, ENV_SECURITY_PROTOCOL, ENV_SSL_CAFILE, Settings

logger = logging.getLogger(__name__)

BOOTSTRAP_TIMEOUT_MS = 6_000  # "one line within 10 s" when the broker is down: start-up and model load included
# Replicas for a topic the pipeline creates when KAFKA_REPLICATION_FACTOR is not set: three copies
# survive one broker down with min.insync.replicas=2 (acks=all keeps working); more cost disk and
# produce latency without surviving more of the failures a small cluster sees.
AUTO_REPLICATION_CAP = 3
# The raw topic accepts about 1 MB per message (the broker default); a dead letter carries that
# value untouched plus its headers, so the dead-letter topic must accept more.
DEADLETTER_MAX_MESSAGE_BYTES = 2 * 1024 * 1024
# kafka-python's default is 30 s: after a 10 s outage its clients waited 12-25 s more (measured)
# before trying again, by which time a static group member's session had expired. The Java
# client's default (reconnect.backoff.max.ms) is 1 s; the backoff stays exponential with jitter.
RECONNECT_BACKOFF_MAX_MS = 1_000
# Every event is acknowledged or failed within kafka-python's delivery timeout (120 s by default),
# so a flush needs no longer. But after an outage longer than that, kafka-python 3.0.12's flush was
# seen to wait for good on events it had already expired (KAFKA_README, "What is not promised"):
# past this bound a flush gives up (KafkaTimeoutError), and what is still pending counts as failed.
FLUSH_TIMEOUT_S = 120 + 30
LOCAL_BROKER_HINT = "start the local broker with 'make kafka-up'"


class _SecretRedactor:
    """Masks known secrets in every log record, whichever logger makes it and wherever it goes.

    kafka-python logs its whole configuration, password included, at DEBUG (KafkaAdminClient), and
    SASL/PLAIN's auth bytes carry the password; ``-vvv`` prints both. A record factory rather than a
    handler filter, so handlers added later (a test's, a harness's) are covered too.
    """

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        if not secret:
            return
        # as it is, and as it appears inside a str or bytes repr (a SASL/PLAIN token is bytes)
        forms = {secret, repr(secret)[1:-1], repr(secret.encode())[2:-1]}
        with self._lock:
            if not self._secrets:
                previous = logging.getLogRecordFactory()

                def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                    record = previous(*args, **kwargs)
                    self.scrub(record)
                    return record

                logging.setLogRecordFactory(factory)
            self._secrets = tuple(sorted(set(self._secrets) | forms, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def scrub(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            return  # a malformed record: the handler reports it, as logging always does
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(text)  # the formatter uses exc_text when it is set
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)


REDACTOR = _SecretRedactor()


def _check_cafile(path: Path) -> str:
    """The CA file, once Python's ssl module has loaded it: a bad file fails here, at once.

    Without this, a file that holds no PEM certificate fails inside every connection attempt, and
    after the bootstrap timeout it looks like a broker that is down.
    """
    if not path.is_file():
        raise ConfigError(f"{ENV_SSL_CAFILE}={str(path)!r} is not valid: the CA file does not exist")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except ssl.SSLError as exc:
        raise TlsError(
            f"{ENV_SSL_CAFILE}={str(path)!r} is not usable: it holds no PEM CA certificate ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise TlsError(f"{ENV_SSL_CAFILE}={str(path)!r} is not usable: {exc.strerror or exc}") from None
    return str(path)


def security_options(settings: Settings) -> dict[str, Any]:
    """kafka-python's own security options for these settings (no hand-written TLS)."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        if settings.ssl_cafile is not None:
            options["ssl_cafile"] = _check_cafile(settings.ssl_cafile)
        options["ssl_check_hostname"] = True
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_password is not None
        password = settings.sasl_password.reveal()
        REDACTOR.add(password)  # before any client can log it
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = password
    return options


def _base_options(settings: Settings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": client_id,
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
        "reconnect_backoff_max_ms": RECONNECT_BACKOFF_MAX_MS,
        **security_options(settings),
    }


def broker_unavailable(settings: Settings) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"no Kafka broker answers at {settings.bootstrap_servers} ({ENV_BOOTSTRAP_SERVERS}); "
        f"{LOCAL_BROKER_HINT}, or point {ENV_BOOTSTRAP_SERVERS} at your cluster"
    )


def not_authorized(settings: Settings, action: str, error: str) -> AuthenticationFailed:
    """The broker knows who we are and refuses ``action`` (its ACLs), as one line."""
    who = f"user {settings.sasl_username!r}" if settings.sasl_username else "this client (no SASL user)"
    return AuthenticationFailed(
        f"{who} is not authorized to {action} on {settings.bootstrap_servers} ({error}); the cluster's "
        "administrator must grant it ACLs (KAFKA_README.md, 'Connecting to a secure cluster', lists the "
        "ones the pipeline needs)"
    )


def _denied_action(exc: kafka_errors.AuthorizationError, settings: Settings) -> str:
    if isinstance(exc, kafka_errors.GroupAuthorizationFailedError):
        return f"use consumer group {settings.consumer_group}"
    if isinstance(exc, kafka_errors.TransactionalIdAuthorizationFailedError):
        return f"use transactional ids starting with {settings.consumer_group}"
    if isinstance(exc, kafka_errors.TopicAuthorizationFailedError):
        return "use a topic it needs"
    if isinstance(exc, kafka_errors.ClusterAuthorizationFailedError):
        return "perform a cluster-wide operation"
    return "perform this operation"


def translate(exc: Exception, settings: Settings) -> PipelineError:
    """A kafka-python exception -> one of ours, with a message a user can act on."""
    text = str(exc)
    if settings.sasl_password is not None:
        text = text.replace(settings.sasl_password.reveal(), "***")
    if isinstance(exc, kafka_errors.KafkaConfigurationError):
        return ConfigError(f"Kafka client configuration rejected: {text}")
    if isinstance(exc, kafka_errors.AuthorizationError):
        # kafka-python's text can hold the whole request and response; the error's name says it
        return not_authorized(settings, _denied_action(exc, settings), type(exc).__name__.removesuffix("Error"))
    lowered = text.lower()
    if "sasl" in lowered or "authentication" in lowered or "scram" in lowered:
        return AuthenticationFailed(
            f"authentication to {settings.bootstrap_servers} failed: {text}; check "
            "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
        )
    if "ssl" in lowered or "certificate" in lowered or "tls" in lowered:
        return TlsError(f"TLS to {settings.bootstrap_servers} failed: {text}; check KAFKA_SSL_CAFILE")
    if isinstance(exc, kafka_errors.KafkaTimeoutError | kafka_errors.KafkaConnectionError):
        return broker_unavailable(settings)
    return PipelineError(f"Kafka error ({type(exc).__name__}): {text}")


@contextmanager
def kafka_errors_translated(settings: Settings) -> Iterator[None]:
    try:
        yield
    except kafka_errors.KafkaError as exc:
        raise translate(exc, settings) from None


CONNECTION_LOGGER = "kafka.net.connection"  # logs each request it sends, at DEBUG
_SASL_REQUEST = re.compile(r"Request \d+: (Sasl\w+Request)")


class _KafkaLogCapture(logging.Handler):
    """The client's warnings and errors, and which SASL requests it sent (see diagnose_bootstrap)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())
        elif record.name == CONNECTION_LOGGER and (sent := _SASL_REQUEST.search(record.getMessage())):
            self.messages.append(f"sent {sent.group(1)}")  # its name only: a token may hold a secret


# The broker had answered ApiVersions on this connection (so TLS and the Kafka protocol worked) and
# then closed it: for a SASL client, the broker refused the SASL handshake or authentication. Kafka
# answers with an error and closes the connection right after, and kafka-python 3.0.12 drops a
# response that arrives in the same read as the close (net/transport.py: _read_from_sock aborts on
# EOF without passing the bytes on), so on some attempts, or all of them, only the close is logged.
# Which request it closed after tells which step failed.
_CLOSED_AFTER_API_VERSIONS = re.compile(
    r"broker_version=\(\d[\d, ]*\) \(disconnected\)>: Connection lost: KafkaConnectionError: socket disconnected"
)


def diagnose_bootstrap(exc: Exception, client_log: list[str], settings: Settings) -> PipelineError:
    """Why bootstrap failed, from what kafka-python logged while it tried.

    kafka-python reports every bootstrap failure as the same timeout; the reason (bad
    credentials, an untrusted certificate, a TLS listener spoken to in plaintext) is only in its
    log. The broker gives the same answer for a wrong password and an unknown user, on purpose.
    """
    text = "\n".join(client_log)
    servers = settings.bootstrap_servers
    user, mechanism = settings.sasl_username, settings.sasl_mechanism
    closed_in_sasl = settings.security_protocol.startswith("SASL_") and _CLOSED_AFTER_API_VERSIONS.search(text)
    bad_credentials = AuthenticationFailed(
        f"the broker at {servers} rejected user {user!r} ({mechanism}): invalid credentials (a wrong password "
        "or an unknown user); check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
    )
    bad_mechanism = AuthenticationFailed(
        f"the broker at {servers} does not accept SASL mechanism {mechanism}; "
        "set KAFKA_SASL_MECHANISM to one the cluster enables"
    )
    if "SaslAuthenticationFailed" in text:
        return bad_credentials
    if "UnsupportedSaslMechanism" in text:
        return bad_mechanism
    if "SaslHandshake failed: IllegalSaslState" in text:
        return SecurityProtocolMismatch(
            f"the listener at {servers} does not use SASL, and {ENV_SECURITY_PROTOCOL}={settings.security_protocol} "
            "does; point KAFKA_BOOTSTRAP_SERVERS at the cluster's SASL listener"
        )
    if closed_in_sasl:
        if "SaslAuthenticateRequest" in text:  # the handshake accepted the mechanism
            return bad_credentials
        if "SaslHandshakeRequest" in text:
            return bad_mechanism
        return AuthenticationFailed(  # the client's request log was not captured (see bootstrap_diagnosed)
            f"the broker at {servers} closed the connection while authenticating user {user!r} ({mechanism}): "
            "invalid credentials, or a mechanism it does not enable; check KAFKA_SASL_USERNAME, "
            "KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
        )
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip()
        return TlsError(
            f"the TLS certificate of {servers} is not trusted ({detail}); set {ENV_SSL_CAFILE} to the CA that signed it"
        )
    # "[SSL" is the ssl module's error text; a bare "SSL" would match every KafkaSSLTransport line
    if settings.security_protocol in ("SSL", "SASL_SSL") and ("Handshake failed" in text or "[SSL" in text):
        return TlsError(
            f"the TLS handshake with {servers} failed; is it a TLS listener? ({ENV_SECURITY_PROTOCOL}="
            f"{settings.security_protocol})"
        )
    if "socket disconnected" in text and "ECONNREFUSED" not in text:
        return SecurityProtocolMismatch(
            f"the broker at {servers} accepted the connection but closed it without a Kafka answer: it "
            f"expects another security protocol than {ENV_SECURITY_PROTOCOL}={settings.security_protocol} "
            "(a TLS listener needs SSL or SASL_SSL)"
        )
    return translate(exc, settings)


@contextmanager
def bootstrap_diagnosed(settings: Settings) -> Iterator[None]:
    """Create a client; if it cannot bootstrap, raise one error that says why."""
    kafka_logger = logging.getLogger("kafka")
    connection_logger = logging.getLogger(CONNECTION_LOGGER)
    capture = _KafkaLogCapture()
    level, propagate, connection_level = kafka_logger.level, kafka_logger.propagate, connection_logger.level
    quiet = kafka_logger.getEffectiveLevel() > logging.WARNING
    kafka_logger.addHandler(capture)
    if quiet:  # capture the client's warnings, and its SASL requests, without printing them
        kafka_logger.setLevel(logging.WARNING)
        kafka_logger.propagate = False
        connection_logger.setLevel(logging.DEBUG)
    try:
        yield
    except kafka_errors.KafkaError as exc:
        raise diagnose_bootstrap(exc, capture.messages, settings) from None
    finally:
        kafka_logger.removeHandler(capture)
        kafka_logger.setLevel(level)
        kafka_logger.propagate = propagate
        connection_logger.setLevel(connection_level)


def make_admin(settings: Settings, client_id: str = "churn-admin") -> KafkaAdminClient:
    with bootstrap_diagnosed(settings):
        return KafkaAdminClient(**_base_options(settings, client_id))


class CoordinatorFailoverNetClient(KafkaNetClient):
    """kafka-python's network client, except that a node it cannot reach is "not ready", not an error.

    Works around a kafka-python 3.0.12 bug that hangs a transactional producer for good when the
    broker coordinating its transaction or its consumer group dies: the sender asks
    ``await_ready(coordinator)``, which raises instead of returning False; the sender's exception
    path then looks the coordinator up again but, because it still holds the dead node's id, never
    re-queues the request it was sending (``Sender._maybe_send_pending_request``). That request's
    result never completes, so ``send_offsets_to_transaction()`` or ``commit_transaction()``,
    which wait without a timeout, block forever (seen with ``TxnOffsetCommit`` when the group
    coordinator was SIGKILLed, tests/test_cluster.py). Answering False takes the sender's other
    path, which re-queues the request behind a fresh coordinator lookup, as the Java client does.
    Passed through KafkaProducer's own ``kafka_client`` option; the sender is its only caller.
    """

    def await_ready(self, node_id: Any, timeout_ms: int = 30000) -> bool:
        try:
            return super().await_ready(node_id, timeout_ms=timeout_ms)
        except kafka_errors.KafkaConnectionError:
            return False


def make_producer(settings: Settings, client_id: str = "churn-producer", **overrides: Any) -> KafkaProducer:
    options = {
        **_base_options(settings, client_id),
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": "lz4",
        "kafka_client": CoordinatorFailoverNetClient,
        **overrides,
    }
    with bootstrap_diagnosed(settings):
        return KafkaProducer(**options)


def make_consumer(
    settings: Settings, *topics: str, client_id: str = "churn-consumer", **overrides: Any
) -> KafkaConsumer:
    options = {**_base_options(settings, client_id), **overrides}
    with bootstrap_diagnosed(settings):
        return KafkaConsumer(*topics, **options)


def choose_replication_factor(configured: int | None, brokers: int, bootstrap_servers: str = "") -> int:
    """The replication factor for a new topic: the configured one, else min(3, brokers).

    So the same settings create topics with 1 replica on the single local broker and 3 on the
    three-node cluster (or a managed one), without anyone editing KAFKA_REPLICATION_FACTOR. A
    configured value larger than the cluster is an error naming the variable, not the broker's
    INVALID_REPLICATION_FACTOR.
    """
    if configured is None:
        return max(1, min(AUTO_REPLICATION_CAP, brokers))
    if configured > brokers:
        where = f" at {bootstrap_servers}" if bootstrap_servers else ""
        raise ConfigError(
            f"{ENV_REPLICATION_FACTOR}={str(configured)!r} is not valid: the cluster{where} has {brokers} "
            f"broker(s); use at most {brokers}, or leave it unset for min(3, brokers)"
        )
    return configured


def replication_for(admin: KafkaAdminClient, settings: Settings) -> int:
    """:func:`choose_replication_factor` for the cluster ``admin`` talks to."""
    with kafka_errors_translated(settings):
        brokers = len(admin.describe_cluster()["brokers"])
    return choose_replication_factor(settings.replication_factor, brokers, settings.bootstrap_servers)


def topic_configs(settings: Settings, name: str) -> dict[str, str]:
    """The per-topic settings the pipeline needs, the same whoever creates the topic (the consumer,
    the producer, the harness, --verify-only, the launcher's provisioning)."""
    if name == settings.topic_deadletter:
        return {"max.message.bytes": str(DEADLETTER_MAX_MESSAGE_BYTES)}
    return {}


def topic_max_message_bytes(admin: KafkaAdminClient, topic: str) -> int | None:
    """A topic's max.message.bytes as the broker reports it (its own or the broker default)."""
    resource = ConfigResource(ConfigResourceType.TOPIC, topic, ["max.message.bytes"])
    described = admin.describe_configs([resource], config_filter="all")
    for per_name in described.values():
        entry = per_name.get(topic, {}).get("max.message.bytes")
        if isinstance(entry, dict) and entry.get("value") is not None:
            return int(entry["value"])
    return None


def ensure_topics(
    admin: KafkaAdminClient,
    settings: Settings,
    names: Iterable[str],
    partitions: int | None = None,
    replication_factor: int | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; leave existing ones as they are. Returns created."""
    with kafka_errors_translated(settings):
        existing = set(admin.list_topics())
    missing = [name for name in dict.fromkeys(names) if name not in existing]
    if not missing:
        return []
    partitions = partitions or settings.topic_partitions
    replication_factor = replication_factor or replication_for(admin, settings)
    with kafka_errors_translated(settings):
        new_topics = [
            NewTopic(name, partitions, replication_factor, topic_configs=topic_configs(settings, name) or None)
            for name in missing
        ]
        try:
            # Another process may create one between list and create: that is what we wanted.
            with contextlib.suppress(kafka_errors.TopicAlreadyExistsError):
                admin.create_topics(new_topics, wait_for_metadata=True)
        except (kafka_errors.TopicAuthorizationFailedError, kafka_errors.ClusterAuthorizationFailedError) as exc:
            raise _topics_refused(admin, settings, missing, exc) from None
    for name in missing:
        configs = "".join(f", {key} {value}" for key, value in topic_configs(settings, name).items())
        logger.info("created topic %s (%d partitions, replication %d%s)", name, partitions, replication_factor, configs)
    return missing


def _hidden_topics(admin: KafkaAdminClient, settings: Settings, names: list[str]) -> list[str]:
    """Of topics list_topics did not show, those the broker refuses to describe to us.

    With ACLs, list_topics shows only the topics we may describe; asked by name, the broker answers
    TOPIC_AUTHORIZATION_FAILED for the others, whether they exist or not (it does not say which).
    """
    with kafka_errors_translated(settings):
        described = admin.describe_topics(names)
    denied = kafka_errors.TopicAuthorizationFailedError.errno
    return [topic["name"] for topic in described if topic.get("error_code") == denied]


def _topics_refused(
    admin: KafkaAdminClient, settings: Settings, missing: list[str], exc: kafka_errors.KafkaError
) -> AuthenticationFailed:
    error = type(exc).__name__.removesuffix("Error")
    hidden = _hidden_topics(admin, settings, missing)
    if hidden:
        return not_authorized(settings, f"access topic(s) {', '.join(hidden)}", error)
    return not_authorized(settings, f"create topic(s) {', '.join(missing)}, which do not exist", error)


def require_topics(admin: KafkaAdminClient, settings: Settings, names: Iterable[str]) -> None:
    with kafka_errors_translated(settings):
        existing = set(admin.list_topics())
    missing = [name for name in names if name not in existing]
    if missing:
        hidden = _hidden_topics(admin, settings, missing)
        if hidden:  # not "missing": the broker will not say, and more rights are the fix
            raise not_authorized(settings, f"access topic(s) {', '.join(hidden)}", "TopicAuthorizationFailed")
        raise TopicMissing(
            f"topic(s) {', '.join(missing)} do not exist on {settings.bootstrap_servers}; "
            "create them with 'python test_pipeline.py --verify-only' or run producer.py first"
        )


def broker_version(admin: KafkaAdminClient) -> str:
    """The broker's protocol version as kafka-python infers it, e.g. '4.3'."""
    version = admin._client.check_version()  # noqa: SLF001 - the public way kafka-python exposes it
    return ".".join(str(part) for part in version)
