"""The consumer's loop: poll a batch, score it, deliver it, commit it, repeat until told to stop.

One poll batch is one unit of work: one model call (consumer.scoring), one flush and one commit
(consumer.sinks). Commits happen at the end of each batch, inside the loop, so when a rebalance
revokes partitions (which kafka-python does inside ``poll()``) there is nothing pending to commit.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from kafka import KafkaConsumer
from kafka.structs import MemberState, OffsetAndMetadata, TopicPartition

from churnstream.consumer.options import MAX_CONSECUTIVE_ABORTS, POLL_TIMEOUT_MS, POSITION_TIMEOUT_MS, ConsumerOptions
from churnstream.consumer.scoring import Scorer, StageTimes, score_batch
from churnstream.consumer.sinks import Batch, BatchAborted, OutputFailed, SinkTimes
from churnstream.consumer.stats import RunStats
from churnstream.kafka.outage import OutageMonitor
from churnstream.lifecycle import StopFlag

if TYPE_CHECKING:  # observe imports sinks and stats, as this module does: no cycle at run time
    from churnstream.consumer.models import ModelWatcher
    from churnstream.consumer.observe import LoopObserver

logger = logging.getLogger(__name__)

Offsets = dict[TopicPartition, OffsetAndMetadata]


class Sink(Protocol):
    times: SinkTimes

    def deliver(self, batch: Batch) -> None: ...


class StopConditions:
    """When the loop ends: a signal, ``--duration``, and in batch mode ``--num-windows`` or caught up."""

    def __init__(self, options: ConsumerOptions, stop: StopFlag, stats: RunStats) -> None:
        self.options = options
        self.stop = stop
        self.stats = stats
        self.end_offsets: dict[TopicPartition, int] = {}
        self.stopped_by = "caught-up"

    def poll_limit(self) -> int:
        """Batch mode never lets a poll cross a window's edge, so each window has exactly its size."""
        if not self.options.batch_mode:
            return self.options.max_batch
        return max(1, min(self.options.max_batch, self.options.window_size - self.stats.in_window))

    def caught_up(self, consumer: KafkaConsumer) -> bool:
        """True once every assigned partition has reached the end offset seen when it was assigned."""
        if consumer.group_metadata().state != MemberState.STABLE:
            return False
        assigned = consumer.assignment()
        unseen = [tp for tp in assigned if tp not in self.end_offsets]
        if unseen:
            self.end_offsets.update(consumer.end_offsets(unseen))
            logger.info(
                "batch mode: will stop at end offsets %s",
                ", ".join(f"[{tp.partition}]={self.end_offsets[tp]}" for tp in sorted(unseen)),
            )
        for tp in assigned:
            # Bounded: position() may fetch offsets from the broker, and answers None when it cannot in time.
            position = consumer.position(tp, timeout_ms=POSITION_TIMEOUT_MS)
            if position is None or position < self.end_offsets[tp]:
                return False
        return True

    def reached(self, consumer: KafkaConsumer) -> bool:
        options = self.options
        if self.stop.is_set():
            self.stopped_by = self.stop.signal_name or "signal"
            logger.warning("%s received: the last batch is committed; stopping", self.stopped_by)
            return True
        if options.duration_s is not None and time.monotonic() - self.stats.started >= options.duration_s:
            self.stopped_by = "duration"
            return True
        if options.batch_mode:
            if options.num_windows is not None and len(self.stats.windows) >= options.num_windows:
                self.stopped_by = "num-windows"
                return True
            if self.caught_up(consumer):
                self.stopped_by = "caught-up"
                return True
        return False


def batch_offsets(
    polled: dict[TopicPartition, list[Any]],
) -> tuple[list[Any], Offsets, dict[TopicPartition, int]]:
    """A poll's records in one list, the offsets that commit them, and where to rewind on abort."""
    records: list[Any] = []
    offsets: Offsets = {}
    rewind: dict[TopicPartition, int] = {}
    for tp, batch in polled.items():
        if not batch:
            continue
        records.extend(batch)
        last = batch[-1]
        offsets[tp] = OffsetAndMetadata(last.offset + 1, "", last.leader_epoch)
        rewind[tp] = batch[0].offset
    return records, offsets, rewind


def consume_loop(
    consumer: KafkaConsumer,
    sink: Sink,
    model: Scorer,
    stats: RunStats,
    until: StopConditions,
    *,
    outage: OutageMonitor | None = None,
    observer: LoopObserver | None = None,
    models: ModelWatcher | None = None,
    shadow: Scorer | None = None,
) -> None:
    """Poll, score, deliver, commit, until stopped. Never per-message predict, flush or commit.

    ``models``: the store's current version, swapped in between batches (a batch is scored by one
    model, whole). ``shadow``: a challenger scoring the same events into its own topic.
    """
    consecutive_aborts = 0
    max_value_bytes = stats.options.max_value_bytes
    with_reasons = stats.options.reasons
    while not until.reached(consumer):
        if models is not None:
            model = models.check()  # between batches, idle or not: a promoted, verified version serves from here
        started = time.perf_counter()
        polled = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=until.poll_limit())
        poll_s = time.perf_counter() - started
        stats.poll_s += poll_s
        if observer is not None:
            observer.turned(consumer, idle=not polled)
        if not polled:
            continue
        records, offsets, rewind = batch_offsets(polled)
        if not records:
            continue
        # The membership these records were polled under, before scoring: if the group moves on
        # while this batch is scored, its offsets are refused instead of committed by a zombie.
        membership = consumer.group_metadata()
        if stats.first_record_at is None:
            stats.first_records()
        times = StageTimes()
        result = score_batch(
            records, model, max_value_bytes=max_value_bytes, times=times, shadow=shadow, with_reasons=with_reasons
        )
        stats.stage_times.add(times)
        batch = Batch(result, offsets, rewind, membership)
        sent_before = sink.times.as_dict()
        try:
            sink.deliver(batch)
        except BatchAborted:
            stats.aborted += 1
            if observer is not None:
                observer.aborted()
            consecutive_aborts += 1
            if consecutive_aborts >= MAX_CONSECUTIVE_ABORTS:
                raise OutputFailed(
                    f"{consecutive_aborts} transactions in a row were aborted; stopping without committing "
                    "(see the warnings above for why)"
                ) from None
            continue
        consecutive_aborts = 0
        stats.record(result)
        if observer is not None:
            sent = {stage: seconds - sent_before[stage] for stage, seconds in sink.times.as_dict().items()}
            observer.delivered(batch, {"poll": poll_s, **times.as_dict(), **sent})
        if outage is not None:
            outage.progress()  # a committed batch: the broker is there
