"""How a consumer runs: its options, their defaults, and how its clients are tuned (with the why)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from churnstream.contract.events import DEFAULT_MAX_VALUE_BYTES
from churnstream.contract.outputs import DEADLETTER_HEADROOM_BYTES, Guarantee, Mode
from churnstream.kafka.clients import FLUSH_TIMEOUT_S
from churnstream.kafka.topics import DEADLETTER_MAX_MESSAGE_BYTES
from churnstream.observability.health import LIVENESS_MARGIN_S

# Per poll, so per model call and per transaction. At streaming rates a poll holds far fewer
# (what arrived during one fetch wait); the cap matters when catching up, where a larger batch
# spreads each transaction's fixed round trips over more events (benchmarks.bench_consumer
# --max-batch measures it).
DEFAULT_MAX_BATCH = 5000
DEFAULT_FETCH_MAX_WAIT_MS = 50  # kafka-python's 500 ms default puts p95 latency near 250 ms
DEFAULT_WINDOW_SIZE = 1000
DEFAULT_LOG_INTERVAL_S = 10.0  # a heartbeat line on stderr: throughput and lag
# How long the broker lets a transaction stay open before it aborts it. A batch's transaction spans
# sending, flushing and committing (scoring happens before it begins): well under a second
# normally, but a broker outage stretches the flush. Every wait inside the transaction is bounded
# below this (see the properties of ConsumerOptions), so the broker never aborts a transaction the
# consumer still thinks is alive; 60 s lets a consumer ride out an outage of tens of seconds, and
# a killed consumer's open transaction blocks read_committed readers at most this long when no
# successor takes its slot (a successor's init_transactions aborts it at once).
DEFAULT_TRANSACTION_TIMEOUT_MS = 60_000
MIN_TRANSACTION_TIMEOUT_MS = 10_000
MAX_TRANSACTION_TIMEOUT_MS = 900_000  # the broker's transaction.max.timeout.ms default
# Outside a transaction (at-least-once): kafka-python's delivery timeout, and the producers' flush bound.
AT_LEAST_ONCE_DELIVERY_TIMEOUT_MS = 120_000
AT_LEAST_ONCE_FLUSH_TIMEOUT_S = FLUSH_TIMEOUT_S
# A dead consumer's partitions move to the others after this; a restarted one (same slot, static
# membership) takes them back at once. The broker's minimum is 6 s.
DEFAULT_SESSION_TIMEOUT_MS = 15_000
POLL_TIMEOUT_MS = 200  # how often an idle loop looks at the stop flag and the clock
POSITION_TIMEOUT_MS = 5_000  # batch mode's end check; a position it cannot learn in time is "not there yet"
MAX_CONSECUTIVE_ABORTS = 5  # then something is persistently wrong: stop instead of spinning
CLOSE_TIMEOUT_S = 10

# A dead letter carries a raw value as large as the raw topic accepts, plus its headers.
PRODUCER_MAX_REQUEST_SIZE = DEADLETTER_MAX_MESSAGE_BYTES + DEADLETTER_HEADROOM_BYTES
# Larger batches than kafka-python's 16 KB: fewer produce requests per poll batch. The loop
# flushes at the end of every batch, so lingering never delays the last outputs of a batch.
# Every batch that fills during a poll batch's sends wakes kafka-python's sender thread mid-loop
# (the two then trade the GIL): on a 5,000-event backlog batch, 256 KB batches cost the exactly-once
# consumer 37 us of CPU per event against 33 us at 768 KB, and a prediction's reasons (~200 bytes more)
# 43 against 35 (/tmp experiment of 2026-12-04, interleaved runs; docs/benchmarks). 768 KB stays under
# the predictions topic's 1 MB message limit even if a batch would not compress.
PRODUCER_BATCH_SIZE = 768 * 1024
PRODUCER_LINGER_MS = 5
# kafka-python's sender sleeps retry_backoff_ms (default 100) whenever a transactional request
# is outstanding; with the default, 1 transaction in 20 took 100-250 ms instead of ~15 ms
# (measured: p95 122 ms -> 25 ms, max 262 -> 69 ms at 10). Produce retries use it too: fine.
PRODUCER_RETRY_BACKOFF_MS = 10

_INSTANCE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
INSTANCE_ID_RULE = "1-200 characters of A-Z a-z 0-9 . _ -"


def valid_instance_id(text: str) -> bool:
    return bool(_INSTANCE_ID_RE.match(text)) and text not in (".", "..")


@dataclass(frozen=True)
class ConsumerOptions:
    mode: Mode = Mode.STREAMING
    guarantee: Guarantee = Guarantee.EXACTLY_ONCE
    duration_s: float | None = None
    window_size: int = DEFAULT_WINDOW_SIZE
    num_windows: int | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS
    log_interval_s: float = DEFAULT_LOG_INTERVAL_S
    metrics_port: int | None = None
    metrics_address: str | None = None  # None: METRICS_ADDRESS (empty: every interface)
    shadow_model: str | None = None  # a store version scoring every batch too, into the shadow topic
    reasons: bool = True  # each prediction names the features that raise its risk (--reasons off: null)
    instance_id: str | None = None
    static_membership: bool = True
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS
    transaction_timeout_ms: int = DEFAULT_TRANSACTION_TIMEOUT_MS
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    wait_for_topic_s: float | None = None  # None: CONSUMER_WAIT_FOR_TOPIC_S

    def __post_init__(self) -> None:
        # Accept the plain strings too (the CLI and the tests pass values), but store the enums.
        object.__setattr__(self, "mode", Mode(self.mode))
        object.__setattr__(self, "guarantee", Guarantee(self.guarantee))
        if self.instance_id is not None and not valid_instance_id(self.instance_id):
            raise ValueError(f"instance id {self.instance_id!r}: use {INSTANCE_ID_RULE}")
        if not MIN_TRANSACTION_TIMEOUT_MS <= self.transaction_timeout_ms <= MAX_TRANSACTION_TIMEOUT_MS:
            raise ValueError(
                f"transaction timeout {self.transaction_timeout_ms} ms: use {MIN_TRANSACTION_TIMEOUT_MS}-"
                f"{MAX_TRANSACTION_TIMEOUT_MS}"
            )

    @property
    def exactly_once(self) -> bool:
        return self.guarantee is Guarantee.EXACTLY_ONCE

    # -- the bounds, nested: request < delivery < flush < transaction calls = transaction timeout

    @property
    def delivery_timeout_ms(self) -> int:
        """Every output is acknowledged or failed within this. Exactly-once: inside the transaction
        timeout with a margin (a quarter of it, at least 5 s), so an output never outlives its transaction."""
        if not self.exactly_once:
            return AT_LEAST_ONCE_DELIVERY_TIMEOUT_MS
        return self.transaction_timeout_ms - max(5_000, self.transaction_timeout_ms // 4)

    @property
    def request_timeout_ms(self) -> int:
        """kafka-python needs delivery_timeout_ms >= linger_ms + request_timeout_ms."""
        return min(30_000, self.delivery_timeout_ms - PRODUCER_LINGER_MS - 1_000)

    @property
    def flush_timeout_s(self) -> float:
        """A flush outlives every delivery it waits for by 2 s, and ends before the transaction does."""
        if not self.exactly_once:
            return AT_LEAST_ONCE_FLUSH_TIMEOUT_S
        return (self.delivery_timeout_ms + 2_000) / 1000

    @property
    def liveness_s(self) -> float:
        """/healthz fails when the loop is silent longer than its longest bounded wait, plus a margin."""
        longest = self.transaction_call_timeout_s if self.exactly_once else self.flush_timeout_s
        return max(longest, self.flush_timeout_s) + LIVENESS_MARGIN_S

    @property
    def transaction_call_timeout_s(self) -> float:
        """send_offsets_to_transaction, commit_transaction, abort_transaction: past the transaction
        timeout the broker has aborted the transaction anyway, so waiting longer helps nothing."""
        return self.transaction_timeout_ms / 1000

    @property
    def batch_mode(self) -> bool:
        return self.mode is Mode.BATCH
