"""Topic administration: create what is missing with the settings the pipeline needs, check what must exist.

One place decides a topic's settings (:func:`topic_configs`) and replication
(:func:`choose_replication_factor`), whoever creates it: the consumer, the producer, the harness,
``--verify-only`` or the launcher's provisioning.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable

from kafka import KafkaAdminClient
from kafka import errors as kafka_errors
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from churnstream.contract.outputs import DEADLETTER_HEADROOM_BYTES, LEDGER_SUFFIX
from churnstream.errors import AuthenticationFailed, ConfigError, PipelineError, TopicMissing
from churnstream.kafka.diagnosis import kafka_errors_translated, not_authorized
from churnstream.lifecycle import StopFlag
from churnstream.settings import ENV_REPLICATION_FACTOR, Settings

logger = logging.getLogger(__name__)

# Replicas for a topic the pipeline creates when KAFKA_REPLICATION_FACTOR is not set: three copies
# survive one broker down with min.insync.replicas=2 (acks=all keeps working); more cost disk and
# produce latency without surviving more of the failures a small cluster sees.
AUTO_REPLICATION_CAP = 3
# The raw topic accepts about 1 MB per message (the broker default); a dead letter carries that
# value untouched plus its headers, so the dead-letter topic must accept more.
DEADLETTER_MAX_MESSAGE_BYTES = 2 * 1024 * 1024
TOPIC_POLL_S = 2.0  # how often a consumer waiting for its input topic looks for it


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


def topic_configs(settings: Settings, name: str, replication_factor: int = 1) -> dict[str, str]:
    """The per-topic settings the pipeline needs, the same whoever creates the topic (the consumer,
    the producer, the harness, --verify-only, replay, the launcher's provisioning).

    - the dead-letter topic takes a raw value as large as the raw topic accepts, plus its headers,
      and keeps it with no time limit by default (KAFKA_DEADLETTER_RETENTION_MS);
    - replay's ledger is compacted (one entry per dead letter) and never expires by time: an entry
      that expired would let a dead letter be replayed twice;
    - with three replicas or more, a write needs two of them (min.insync.replicas=2 with acks=all),
      so an acknowledged event survives one broker lost.
    """
    configs: dict[str, str] = {}
    if name == settings.topic_deadletter:
        configs["max.message.bytes"] = str(DEADLETTER_MAX_MESSAGE_BYTES)
        configs["retention.ms"] = str(settings.deadletter_retention_ms)
    elif name == ledger_topic(settings):
        configs["cleanup.policy"] = "compact"
        configs["retention.ms"] = "-1"
    if replication_factor >= AUTO_REPLICATION_CAP:
        configs["min.insync.replicas"] = "2"
    return configs


def ledger_topic(settings: Settings) -> str:
    """Replay's record of the dead letters it sent back: ``<dead-letter topic>.replayed``."""
    return settings.topic_deadletter + LEDGER_SUFFIX


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
            NewTopic(
                name,
                partitions,
                replication_factor,
                topic_configs=topic_configs(settings, name, replication_factor) or None,
            )
            for name in missing
        ]
        try:
            # Another process may create one between list and create: that is what we wanted.
            with contextlib.suppress(kafka_errors.TopicAlreadyExistsError):
                admin.create_topics(new_topics, wait_for_metadata=True)
        except (kafka_errors.TopicAuthorizationFailedError, kafka_errors.ClusterAuthorizationFailedError) as exc:
            raise _topics_refused(admin, settings, missing, exc) from None
    for name in missing:
        configs = "".join(
            f", {key} {value}" for key, value in topic_configs(settings, name, replication_factor).items()
        )
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


def _missing(admin: KafkaAdminClient, settings: Settings, names: Iterable[str]) -> list[str]:
    """Of ``names``, those that do not exist; a topic the broker hides from us (ACLs) is refused at once."""
    with kafka_errors_translated(settings):
        existing = set(admin.list_topics())
    missing = [name for name in names if name not in existing]
    if missing:
        hidden = _hidden_topics(admin, settings, missing)
        if hidden:  # not "missing": the broker will not say, and more rights are the fix
            raise not_authorized(settings, f"access topic(s) {', '.join(hidden)}", "TopicAuthorizationFailed")
    return missing


def require_topics(admin: KafkaAdminClient, settings: Settings, names: Iterable[str]) -> None:
    missing = _missing(admin, settings, names)
    if missing:
        raise TopicMissing(
            f"topic(s) {', '.join(missing)} do not exist on {settings.bootstrap_servers}; "
            "create them with 'python test_pipeline.py --verify-only' or run producer.py first"
        )


def wait_for_topics(
    admin: KafkaAdminClient, settings: Settings, names: list[str], wait_s: float, stop: StopFlag
) -> bool:
    """Wait up to ``wait_s`` for topics another service creates (the producer, a provisioning job), so
    services can start in any order: one line says so, then the topics are looked for every
    TOPIC_POLL_S. TopicMissing (exit 7) when they are not there by then; False when ``stop`` is set
    meanwhile (a signal: stop waiting now, not at the bound)."""
    missing = _missing(admin, settings, names)
    if missing and wait_s > 0:
        logger.info(
            "topic(s) %s do not exist yet on %s; waiting up to %.0f s for them to be created",
            ", ".join(missing),
            settings.bootstrap_servers,
            wait_s,
        )
        deadline = time.monotonic() + wait_s
        while missing and (left := deadline - time.monotonic()) > 0:
            if stop.wait(min(TOPIC_POLL_S, left)):
                return False
            missing = _missing(admin, settings, missing)
    require_topics(admin, settings, names)
    return True


def broker_version(admin: KafkaAdminClient) -> str:
    """The broker's protocol version as kafka-python infers it, e.g. '4.3'."""
    version = admin._client.check_version()  # noqa: SLF001 - the public way kafka-python exposes it
    return ".".join(str(part) for part in version)


def prepare_pipeline_topics(admin: KafkaAdminClient, settings: Settings, *, shadow: bool = False) -> int | None:
    """The consumer's topics: the input must exist (TopicMissing, exit 7); outputs are created when missing.

    The dead-letter topic must take any record the raw topic takes, plus the dead letter's headers:
    one that cannot would stall the consumer for good on the first such record (its batch aborted,
    again and again, and again after every restart). So a topic too small is refused here, with
    the command that fixes it. Returns the raw topic's ``max.message.bytes`` (None when the broker
    will not say), which sizes the consumer's produce requests.
    """
    require_topics(admin, settings, [settings.topic_raw])
    outputs = [settings.topic_predictions, settings.topic_deadletter]
    ensure_topics(admin, settings, [*outputs, settings.topic_predictions_shadow] if shadow else outputs)
    # Always checked, even just after creating it: another process may have created it first.
    return check_deadletter_room(admin, settings)


def check_deadletter_room(admin: KafkaAdminClient, settings: Settings) -> int | None:
    try:
        raw_limit = topic_max_message_bytes(admin, settings.topic_raw)
        dead_limit = topic_max_message_bytes(admin, settings.topic_deadletter)
    except kafka_errors.KafkaError as exc:
        logger.warning(
            "could not read max.message.bytes of %s and %s (%s); make sure the dead-letter topic takes every raw "
            "record plus %d bytes of headers",
            settings.topic_raw,
            settings.topic_deadletter,
            type(exc).__name__,
            DEADLETTER_HEADROOM_BYTES,
        )
        return None
    if raw_limit is not None and dead_limit is not None and dead_limit < raw_limit + DEADLETTER_HEADROOM_BYTES:
        needed = raw_limit + DEADLETTER_HEADROOM_BYTES
        raise ConfigError(
            f"dead-letter topic {settings.topic_deadletter} takes records up to {dead_limit} bytes, but "
            f"{settings.topic_raw} takes {raw_limit}: a raw record that large could not be dead-lettered, and the "
            f'consumer would stop on it for good. Raise it to at least {needed}: make kafka-tool ARGS="kafka-configs '
            f"--alter --entity-type topics --entity-name {settings.topic_deadletter} --add-config "
            f"max.message.bytes={needed}\" (or your cluster's admin tool)"
        )
    return raw_limit


def delete_topics(admin: KafkaAdminClient, settings: Settings, topics: list[str]) -> None:
    """Delete topics, logging (not raising) when the broker refuses: a clean-up, not a step that matters."""
    try:
        with kafka_errors_translated(settings):
            admin.delete_topics(topics, raise_errors=False)
    except PipelineError as exc:
        logger.warning("could not delete topics %s: %s", ", ".join(topics), exc)
