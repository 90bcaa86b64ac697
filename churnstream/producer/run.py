"""The producer wired to the real broker: check the data, create the topic, connect, run a loop."""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from churnstream.contract.events import load_contract
from churnstream.files import remove_stale_temp_files
from churnstream.kafka.clients import make_admin, make_producer
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.kafka.outage import watch_broker
from churnstream.kafka.topics import ensure_topics
from churnstream.lifecycle import StopFlag, tune_garbage_collector
from churnstream.observability.metrics import ProducerMetrics
from churnstream.observability.server import MetricsServer
from churnstream.producer.checkpoint import (
    Checkpoint,
    CheckpointCorrupt,
    LoadRequest,
    default_checkpoint_path,
    exclusive_lock,
    new_load_id,
    plan_load,
    read_checkpoint,
    write_checkpoint,
)
from churnstream.producer.delivery import DeliveryTracker
from churnstream.producer.loops import Progress, run_batch, run_streaming
from churnstream.producer.pacing import RateSchedule
from churnstream.producer.rows import EventClock, PreparedData, new_run_id, prepare_rows
from churnstream.producer.summary import RunSummary
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

# Producer tuning per mode (on top of make_producer's acks=all, idempotence and lz4).
# Streaming wants latency: a record waits at most 5 ms for companions, nothing next to the
# consumer's micro-batches, while at 5,000 events/s it goes out in batches of about 25, so
# the client's sender thread (which competes with the send loop for the GIL) makes 5x fewer
# requests than with no linger (a quick comparison here gave a few % more headroom than 2 ms).
STREAMING_PRODUCER_OPTIONS: dict[str, Any] = {"linger_ms": 5}
# Batch wants throughput: bigger batches compress better (lz4 works per batch) and cost fewer
# requests; 10 ms of linger is nothing next to a load of seconds.
BATCH_PRODUCER_OPTIONS: dict[str, Any] = {"linger_ms": 10, "batch_size": 128 * 1024}


@dataclass(frozen=True)
class StreamingOptions:
    events_per_sec: float
    duration_s: float | None = None
    seed: int | None = None
    data_path: Path | None = None
    schema_path: Path | None = None  # None: EVENT_SCHEMA
    skip_bad_rows: bool = False
    metrics_port: int | None = None  # None: PRODUCER_METRICS_PORT, else no metrics
    metrics_address: str | None = None  # None: METRICS_ADDRESS (empty: every interface)


@dataclass(frozen=True)
class BatchOptions:
    batch_size: int = 5000
    resume: bool = False
    restart: bool = False
    limit: int | None = None
    repeat: int | None = None  # None: 1 for a new load, the checkpoint's on --resume
    checkpoint_file: Path | None = None
    data_path: Path | None = None
    schema_path: Path | None = None  # None: EVENT_SCHEMA
    skip_bad_rows: bool = False
    progress: Progress | None = None  # a bar, drawn by the CLI
    metrics_port: int | None = None  # None: PRODUCER_METRICS_PORT, else no metrics
    metrics_address: str | None = None  # None: METRICS_ADDRESS (empty: every interface)


def connect(settings: Settings, topic: str, client_id: str, **producer_options: Any) -> KafkaProducer:
    """Create the topic when missing (an existing one is left as it is), then the producer.

    Both raise BrokerUnavailable within about 8 s when no broker answers.
    """
    admin = make_admin(settings, client_id=f"{client_id}-admin")
    try:
        ensure_topics(admin, settings, [topic])  # logs the topics it creates
    finally:
        admin.close()
    producer = make_producer(settings, client_id=client_id, **producer_options)
    try:
        with kafka_errors_translated(settings):
            # Fetch the topic's metadata now, so the first send (and the clock) does not wait for it.
            producer.partitions_for(topic)
    except BaseException:
        producer.close(timeout=0)
        raise
    return producer


@contextlib.contextmanager
def serve_metrics(settings: Settings, port: int | None, address: str | None = None) -> Iterator[ProducerMetrics | None]:
    """The producer's /metrics while the run lasts, when a port is given (bound first: a taken port
    fails the start before anything is sent)."""
    port = port if port is not None else settings.producer_metrics_port
    if port is None:
        yield None
        return
    metrics = ProducerMetrics()
    server = MetricsServer(port, metrics.registry, address=address if address is not None else settings.metrics_address)
    server.start()
    try:
        yield metrics
    finally:
        server.close()


def _close(producer: KafkaProducer) -> None:
    # After the final flush nothing is pending; the timeout only bounds a close on an error path.
    producer.close(timeout=10)


def produce_streaming(settings: Settings, options: StreamingOptions, stop: StopFlag) -> RunSummary:
    """``--mode streaming``: checks the data, connects, then streams on an absolute schedule."""
    schedule = RateSchedule(options.events_per_sec, options.duration_s)
    data_path = options.data_path or settings.data_path
    contract = load_contract(options.schema_path or settings.schema_path)
    data = prepare_rows(data_path, contract, skip_bad_rows=options.skip_bad_rows)
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
    topic = settings.topic_raw
    with serve_metrics(settings, options.metrics_port, options.metrics_address) as metrics:
        producer = connect(settings, topic, "churn-producer-streaming", **STREAMING_PRODUCER_OPTIONS)
        tune_garbage_collector()  # the prepared rows and the client live for the whole run
        try:
            run_id = new_run_id()
            logger.info(
                "streaming %s events/s %s to %s from %d rows of %s (run %s, seed %d)",
                f"{schedule.events_per_sec:g}",
                f"for {schedule.duration_s:g} s" if schedule.duration_s else "until Ctrl-C",
                topic,
                len(data.valid_rows),
                data_path,
                run_id,
                seed,
            )
            with kafka_errors_translated(settings), watch_broker(settings.bootstrap_servers) as outage:
                tracker = _tracker(metrics, outage.progress)
                summary = run_streaming(
                    producer, topic, data.valid_rows, schedule, seed=seed, run_id=run_id, stop=stop, tracker=tracker
                )
        finally:
            _close(producer)
    summary.skipped_rows = len(data.skipped)
    return summary


def _tracker(metrics: ProducerMetrics | None, on_ack: Callable[[], None]) -> DeliveryTracker:
    """The delivery counters, watched by the metrics when they are served."""
    tracker = DeliveryTracker(on_ack)
    if metrics is not None:
        metrics.watch(tracker)
    return tracker


def produce_batch(settings: Settings, options: BatchOptions, stop: StopFlag) -> RunSummary:
    """``--mode batch``: plan against the checkpoint (refusing conflicts), connect, load."""
    topic = settings.topic_raw
    checkpoint_path = options.checkpoint_file or default_checkpoint_path(settings.checkpoint_dir, topic)
    data_path = options.data_path or settings.data_path
    with exclusive_lock(checkpoint_path):
        remove_stale_temp_files(checkpoint_path)
        try:
            existing = read_checkpoint(checkpoint_path)
        except CheckpointCorrupt:
            if not options.restart:
                raise
            logger.warning("replacing the unreadable checkpoint %s (--restart)", checkpoint_path)
            existing = None
        limit = options.limit
        if options.resume and existing is not None and limit is None:
            limit = existing.limit  # a resume reads the same rows the load started with
        contract = load_contract(options.schema_path or settings.schema_path)
        data = prepare_rows(data_path, contract, skip_bad_rows=options.skip_bad_rows, limit=limit)
        request = LoadRequest(
            topic=topic,
            data_path=str(data_path),
            data_sha256=data.sha256,  # of the bytes the rows came from: one read, one file
            repeat=options.repeat,
            limit=limit,
            rows_per_pass=data.rows_per_pass,
            schema_sha256=data.schema_sha256,
        )
        checkpoint = plan_load(
            existing,
            request,
            resume=options.resume,
            restart=options.restart,
            checkpoint_path=checkpoint_path,
            load_id=new_load_id(),
            now_ts=EventClock()(),
        )
        with serve_metrics(settings, options.metrics_port, options.metrics_address) as metrics:
            return _load(
                settings,
                options,
                stop,
                data=data,
                checkpoint=checkpoint,
                existing=existing,
                checkpoint_path=checkpoint_path,
                metrics=metrics,
            )


def _load(
    settings: Settings,
    options: BatchOptions,
    stop: StopFlag,
    *,
    data: PreparedData,
    checkpoint: Checkpoint,
    existing: Checkpoint | None,
    checkpoint_path: Path,
    metrics: ProducerMetrics | None,
) -> RunSummary:
    """The planned load, sent: after the plan, under the checkpoint's lock."""
    topic = settings.topic_raw
    data_path = options.data_path or settings.data_path

    def save(cp: Checkpoint) -> None:
        write_checkpoint(checkpoint_path, cp)
        if metrics is not None:
            metrics.checkpointed(cp.next_row)

    producer = connect(settings, topic, "churn-producer-batch", **BATCH_PRODUCER_OPTIONS)
    tune_garbage_collector()  # the prepared rows and the client live for the whole run
    try:
        if options.resume:
            logger.info("resuming %s from checkpoint %s", checkpoint.describe(), checkpoint_path)
        else:
            if options.restart and existing is not None and not existing.completed:
                logger.warning(
                    "starting over: abandoning the unfinished %s; its rows will be on %s twice",
                    existing.describe(),
                    topic,
                )
            write_checkpoint(checkpoint_path, checkpoint)
            logger.info(
                "loading %d rows x %d pass(es) of %s to %s (load %s, checkpoint %s)",
                checkpoint.rows_per_pass,
                checkpoint.repeat,
                data_path,
                topic,
                checkpoint.load_id,
                checkpoint_path,
            )
        with kafka_errors_translated(settings), watch_broker(settings.bootstrap_servers) as outage:
            return run_batch(
                producer,
                data,
                checkpoint,
                batch_size=options.batch_size,
                save=save,
                stop=stop,
                resumed=options.resume,
                progress=options.progress,
                tracker=_tracker(metrics, outage.progress),
            )
    finally:
        _close(producer)
