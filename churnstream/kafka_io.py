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
    TlsError,
    TopicMissing,
)
from config import ENV_BOOTSTRAP_SERVERS, Settings

logger = logging.getLogger(__name__)

BOOTSTRAP_TIMEOUT_MS = 8_000  # "one line within 10 s" when the broker is down
LOCAL_BROKER_HINT = "start the local broker with 'make kafka-up'"


def security_options(settings: Settings) -> dict[str, Any]:
    """kafka-python's own security options for these settings (no hand-written TLS)."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        if settings.ssl_cafile is not None:
            if not settings.ssl_cafile.is_file():
                raise TlsError(f"CA file {settings.ssl_cafile} (KAFKA_SSL_CAFILE) does not exist")
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


def make_admin(settings: Settings, client_id: str = "churn-admin") -> KafkaAdminClient:
    with kafka_errors_translated(settings):
        return KafkaAdminClient(**_base_options(settings, client_id))


def make_producer(settings: Settings, client_id: str = "churn-producer", **overrides: Any) -> KafkaProducer:
    options = {
        **_base_options(settings, client_id),
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": "lz4",
        **overrides,
    }
    with kafka_errors_translated(settings):
        return KafkaProducer(**options)


def make_consumer(
    settings: Settings, *topics: str, client_id: str = "churn-consumer", **overrides: Any
) -> KafkaConsumer:
    options = {**_base_options(settings, client_id), **overrides}
    with kafka_errors_translated(settings):
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
