"""Kafka clients built from Settings, with the client's errors turned into ours.

Every client gets the same security options and a short bootstrap timeout, so a broker that
is down is reported in one line within seconds instead of a 30 s hang. Retries after that are
kafka-python's own (with backoff); nothing here loops around the client.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import errors as kafka_errors
from kafka.admin import NewTopic

from churnstream.errors import (
    AuthenticationFailed,
    BrokerUnavailable,
    ConfigError,
    PipelineError,
    SecurityProtocolMismatch,
    TlsError,
    TopicMissing,
)
from config import ENV_BOOTSTRAP_SERVERS, ENV_SECURITY_PROTOCOL, ENV_SSL_CAFILE, Settings

logger = logging.getLogger(__name__)

BOOTSTRAP_TIMEOUT_MS = 7_000  # "one line within 10 s" when the broker is down, start-up included
LOCAL_BROKER_HINT = "start the local broker with 'make kafka-up'"


def security_options(settings: Settings) -> dict[str, Any]:
    """kafka-python's own security options for these settings (no hand-written TLS)."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        if settings.ssl_cafile is not None:
            if not settings.ssl_cafile.is_file():
                raise ConfigError(
                    f"{ENV_SSL_CAFILE}={str(settings.ssl_cafile)!r} is not valid: the CA file does not exist"
                )
            options["ssl_cafile"] = str(settings.ssl_cafile)
        options["ssl_check_hostname"] = True
    if settings.security_protocol.startswith("SASL_"):
        assert settings.sasl_password is not None
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.reveal()
    return options


def _base_options(settings: Settings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": client_id,
        "bootstrap_timeout_ms": BOOTSTRAP_TIMEOUT_MS,
        **security_options(settings),
    }


def broker_unavailable(settings: Settings) -> BrokerUnavailable:
    return BrokerUnavailable(
        f"no Kafka broker answers at {settings.bootstrap_servers} ({ENV_BOOTSTRAP_SERVERS}); "
        f"{LOCAL_BROKER_HINT}, or point {ENV_BOOTSTRAP_SERVERS} at your cluster"
    )


def translate(exc: Exception, settings: Settings) -> PipelineError:
    """A kafka-python exception -> one of ours, with a message a user can act on."""
    text = str(exc)
    if settings.sasl_password is not None:
        text = text.replace(settings.sasl_password.reveal(), "***")
    if isinstance(exc, kafka_errors.KafkaConfigurationError):
        return ConfigError(f"Kafka client configuration rejected: {text}")
    if isinstance(exc, kafka_errors.AuthorizationError):
        return AuthenticationFailed(f"the broker denied access ({type(exc).__name__}): {text}")
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


class _KafkaLogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def diagnose_bootstrap(exc: Exception, client_log: list[str], settings: Settings) -> PipelineError:
    """Why bootstrap failed, from what kafka-python logged while it tried.

    kafka-python reports every bootstrap failure as the same timeout; the reason (bad
    credentials, an untrusted certificate, a TLS listener spoken to in plaintext) is only in its
    log. The broker gives the same answer for a wrong password and an unknown user, on purpose.
    """
    text = "\n".join(client_log)
    servers = settings.bootstrap_servers
    if "SaslAuthenticationFailed" in text:
        return AuthenticationFailed(
            f"the broker at {servers} rejected user {settings.sasl_username!r} ({settings.sasl_mechanism}): "
            "invalid credentials (a wrong password or an unknown user); check KAFKA_SASL_USERNAME and "
            "KAFKA_SASL_PASSWORD"
        )
    if "UnsupportedSaslMechanism" in text:
        return AuthenticationFailed(
            f"the broker at {servers} does not accept SASL mechanism {settings.sasl_mechanism}; "
            "set KAFKA_SASL_MECHANISM to one the cluster enables"
        )
    if "CERTIFICATE_VERIFY_FAILED" in text:
        detail = text.split("certificate verify failed:", 1)[-1].split("(_ssl", 1)[0].strip()
        return TlsError(
            f"the TLS certificate of {servers} is not trusted ({detail}); set {ENV_SSL_CAFILE} to the CA that signed it"
        )
    if settings.security_protocol in ("SSL", "SASL_SSL") and ("Handshake failed" in text or "SSL" in text):
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
    capture = _KafkaLogCapture()
    level, propagate = kafka_logger.level, kafka_logger.propagate
    quiet = kafka_logger.getEffectiveLevel() > logging.WARNING
    kafka_logger.addHandler(capture)
    if quiet:  # capture the client's warnings without printing them
        kafka_logger.setLevel(logging.WARNING)
        kafka_logger.propagate = False
    try:
        yield
    except kafka_errors.KafkaError as exc:
        raise diagnose_bootstrap(exc, capture.messages, settings) from None
    finally:
        kafka_logger.removeHandler(capture)
        kafka_logger.setLevel(level)
        kafka_logger.propagate = propagate


def make_admin(settings: Settings, client_id: str = "churn-admin") -> KafkaAdminClient:
    with bootstrap_diagnosed(settings):
        return KafkaAdminClient(**_base_options(settings, client_id))


def make_producer(settings: Settings, client_id: str = "churn-producer", **overrides: Any) -> KafkaProducer:
    options = {
        **_base_options(settings, client_id),
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": "lz4",
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
        new_topics = [
            NewTopic(
                name,
                partitions or settings.topic_partitions,
                replication_factor or settings.replication_factor,
            )
            for name in missing
        ]
        # Another process may create one between list and create: that is what we wanted.
        with contextlib.suppress(kafka_errors.TopicAlreadyExistsError):
            admin.create_topics(new_topics, wait_for_metadata=True)
    for name in missing:
        logger.info(
            "created topic %s (%d partitions, replication %d)",
            name,
            partitions or settings.topic_partitions,
            replication_factor or settings.replication_factor,
        )
    return missing


def require_topics(admin: KafkaAdminClient, settings: Settings, names: Iterable[str]) -> None:
    with kafka_errors_translated(settings):
        existing = set(admin.list_topics())
    missing = [name for name in names if name not in existing]
    if missing:
        raise TopicMissing(
            f"topic(s) {', '.join(missing)} do not exist on {settings.bootstrap_servers}; "
            "create them with 'python test_pipeline.py --verify-only' or run producer.py first"
        )


def broker_version(admin: KafkaAdminClient) -> str:
    """The broker's protocol version as kafka-python infers it, e.g. '4.3'."""
    version = admin._client.check_version()  # noqa: SLF001 - the public way kafka-python exposes it
    return ".".join(str(part) for part in version)
