"""The consumer group: what is logged on a rebalance, and leaving the group on a clean stop."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from kafka import KafkaConsumer
from kafka import errors as kafka_errors
from kafka.admin import KafkaAdminClient, MemberToRemove, OffsetSpec
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.protocol.consumer.offsets import IsolationLevel
from kafka.structs import TopicPartition

logger = logging.getLogger(__name__)


def describe_partitions(partitions: Iterable[TopicPartition]) -> str:
    """``topic[0], topic[3]``: partitions as an operator reads them in logs."""
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions))


class RebalanceLogger(ConsumerRebalanceListener):
    """Logs assignments. Nothing to commit on revocation: every batch commits before the next poll."""

    def __init__(
        self,
        on_assigned: Callable[[list[TopicPartition]], None] | None = None,
        on_revoked: Callable[[list[TopicPartition]], None] | None = None,
    ) -> None:
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked:
            logger.info("partitions revoked: %s", describe_partitions(revoked))
        if self._on_revoked is not None:
            self._on_revoked(list(revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        logger.info("partitions assigned: %s", describe_partitions(assigned) or "none")
        if self._on_assigned is not None:
            self._on_assigned(list(assigned))


def leave_as_static_member(admin: KafkaAdminClient, group: str, instance_id: str) -> None:
    """Remove our static membership so the group rebalances now, not after the session timeout.

    A static member (kafka-python, like Java) sends no LeaveGroup when it closes: that is what
    lets a crashed consumer restart and take its partitions straight back. On a *clean* stop we
    want the opposite, so we leave explicitly. Never after a fatal error: if we were fenced, the
    instance id now belongs to our successor and removing it would evict that one.
    """
    member = MemberToRemove(group_instance_id=instance_id, reason="consumer stopped cleanly")
    try:
        results = admin.remove_group_members(group, [member])
    except kafka_errors.KafkaError as exc:
        logger.warning("could not leave group %s (%s); it rebalances after the session timeout", group, exc)
        return
    errors = [error for error in results.values() if error is not kafka_errors.NoError]
    if errors:
        logger.warning("leaving group %s: %s; it rebalances after the session timeout", group, errors[0].__name__)
    else:
        logger.info("left group %s", group)


def group_offsets(
    admin: KafkaAdminClient, group: str, partitions: list[TopicPartition], timeout_ms: int = 10_000
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The partitions' end offsets (read_committed: the last stable offset) and the group's
    committed offsets, as kafka-consumer-groups reads them (where the group has none: the first
    offset, where it will start). Two or three requests; for the lag probe."""
    ends = admin.list_partition_offsets(
        {tp: OffsetSpec.LATEST for tp in partitions},
        isolation_level=IsolationLevel.READ_COMMITTED,
        timeout_ms=timeout_ms,
    )
    found = admin.list_group_offsets({group: partitions}).get(group, {})
    committed = {tp: offset.offset for tp, offset in found.items() if offset.offset >= 0}
    never = [tp for tp in partitions if tp not in committed]
    if never:  # the group starts these from the beginning (auto_offset_reset=earliest)
        earliest = {tp: OffsetSpec.EARLIEST for tp in never}
        committed |= {tp: o.offset for tp, o in admin.list_partition_offsets(earliest, timeout_ms=timeout_ms).items()}
    return {tp: offset.offset for tp, offset in ends.items()}, committed


def fetch_position(consumer: KafkaConsumer, tp: TopicPartition) -> int | None:
    """Where the consumer will fetch next in ``tp``, as it stands (no request, unlike ``position()``,
    which may refresh committed offsets). Past transaction markers the fetcher skipped, so an idle
    consumer's position is the end of what it has to process (kafka.internals checks the attribute)."""
    try:
        position = consumer._subscription.position(tp)  # noqa: SLF001 - the public position() may block
    except KeyError:  # no longer assigned
        return None
    return None if position is None else int(position.offset)
