"""The least rights the pipeline user needs on a cluster with ACLs, as Kafka ACL objects.

Producer: write (and describe) the raw topic. Consumer: read the raw topic, its group, write the
prediction and dead-letter topics, and its transactional ids (which start with the group name).
Nothing else: no create, no delete, no other topic or group. The harness, which makes its own
run topics (``<topic>-run-<id>``), gets those by prefix only.
"""

from __future__ import annotations

from collections.abc import Iterable

from kafka import KafkaAdminClient
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)

from churnstream.errors import BrokerToolingError

RUN_SUFFIX = "-run-"


def _allow(user: str, operation: ACLOperation, kind: ResourceType, name: str, prefixed: bool = False) -> ACL:
    pattern = ACLResourcePatternType.PREFIXED if prefixed else ACLResourcePatternType.LITERAL
    return ACL(f"User:{user}", "*", operation, ACLPermissionType.ALLOW, ResourcePattern(kind, name, pattern))


def pipeline_acls(
    user: str,
    raw_topic: str,
    predictions_topic: str,
    deadletter_topic: str,
    group: str,
    *,
    shadow_topic: str | None = None,
) -> list[ACL]:
    """The pipeline user's least rights; ``shadow_topic``: also where --shadow-model writes."""
    topic, grp, txn = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    acls = [
        _allow(user, ACLOperation.WRITE, topic, raw_topic),
        _allow(user, ACLOperation.READ, topic, raw_topic),
        _allow(user, ACLOperation.DESCRIBE, topic, raw_topic),
        # The consumer compares the two topics' max.message.bytes at start (kafka.topics.check_deadletter_room).
        _allow(user, ACLOperation.DESCRIBE_CONFIGS, topic, raw_topic),
        _allow(user, ACLOperation.DESCRIBE_CONFIGS, topic, deadletter_topic),
        _allow(user, ACLOperation.READ, grp, group),
        _allow(user, ACLOperation.DESCRIBE, grp, group),
        _allow(user, ACLOperation.WRITE, txn, group, prefixed=True),
        _allow(user, ACLOperation.DESCRIBE, txn, group, prefixed=True),
    ]
    outputs = [predictions_topic, deadletter_topic] + ([shadow_topic] if shadow_topic else [])
    for output in outputs:
        acls += [_allow(user, ACLOperation.WRITE, topic, output), _allow(user, ACLOperation.DESCRIBE, topic, output)]
    return acls


def replay_acls(
    user: str, raw_topic: str, deadletter_topic: str, ledger_topic: str, transactional_id: str
) -> list[ACL]:
    """Replay, as its own principal: read the dead letters, read and write its ledger, write the raw
    topic, and use its one transactional id. No group (it reads by assignment), nothing else."""
    topic = ResourceType.TOPIC
    acls = [
        _allow(user, ACLOperation.READ, topic, deadletter_topic),
        _allow(user, ACLOperation.DESCRIBE, topic, deadletter_topic),
        _allow(user, ACLOperation.WRITE, topic, raw_topic),
        _allow(user, ACLOperation.DESCRIBE, topic, raw_topic),
        _allow(user, ACLOperation.WRITE, ResourceType.TRANSACTIONAL_ID, transactional_id),
        _allow(user, ACLOperation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, transactional_id),
    ]
    acls += [
        _allow(user, operation, topic, ledger_topic)
        for operation in (ACLOperation.READ, ACLOperation.WRITE, ACLOperation.DESCRIBE)
    ]
    return acls


def harness_acls(user: str, raw_topic: str, predictions_topic: str, deadletter_topic: str, group: str) -> list[ACL]:
    """What test_pipeline.py needs on top: full rights on its own run topics and groups only."""
    acls = [
        _allow(user, ACLOperation.ALL, ResourceType.TOPIC, name + RUN_SUFFIX, prefixed=True)
        for name in (raw_topic, predictions_topic, deadletter_topic)
    ]
    acls += [
        _allow(user, ACLOperation.ALL, ResourceType.GROUP, group + RUN_SUFFIX, prefixed=True),
        _allow(user, ACLOperation.ALL, ResourceType.TRANSACTIONAL_ID, group + RUN_SUFFIX, prefixed=True),
    ]
    return acls


def grant(admin: KafkaAdminClient, acls: Iterable[ACL]) -> int:
    """Create the ACLs (idempotent: an existing identical ACL is not an error). Returns how many."""
    acls = list(acls)
    result = admin.create_acls(acls)
    failed = result.get("failed", []) if isinstance(result, dict) else []
    if failed:
        raise BrokerToolingError(f"could not create ACLs: {failed}")
    return len(acls)
