"""Start a consumer: check the model, the broker and the topics, claim an identity, wire the clients, loop.

Start-up checks come first and each fails as one PipelineError: the model (5/6), the broker (2),
the input topic (7). Output topics are created when missing. The loop itself is consumer.loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient

from churnstream.consumer.drift import DriftWatch
from churnstream.consumer.identity import SLOT_DIR, ConsumerIdentity, claim_identity
from churnstream.consumer.loop import StopConditions, consume_loop
from churnstream.consumer.models import ModelWatcher, follow_store
from churnstream.consumer.observe import LoopObserver
from churnstream.consumer.options import (
    CLOSE_TIMEOUT_S,
    PRODUCER_BATCH_SIZE,
    PRODUCER_LINGER_MS,
    PRODUCER_MAX_REQUEST_SIZE,
    PRODUCER_RETRY_BACKOFF_MS,
    ConsumerOptions,
)
from churnstream.consumer.scoring import Scorer
from churnstream.consumer.sinks import make_sink
from churnstream.consumer.stats import ConsumerSummary, RunStats, WindowSummary
from churnstream.contract.outputs import DEADLETTER_HEADROOM_BYTES
from churnstream.errors import ConfigError
from churnstream.kafka.clients import make_admin, make_consumer, make_producer
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.kafka.group import RebalanceLogger, group_offsets, leave_as_static_member
from churnstream.kafka.outage import watch_broker
from churnstream.kafka.reading import dating_options, first_records
from churnstream.kafka.topics import prepare_pipeline_topics, wait_for_topics
from churnstream.lifecycle import StopFlag, tune_garbage_collector
from churnstream.observability.health import Health
from churnstream.observability.lag import LagProbe
from churnstream.observability.metrics import ConsumerMetrics
from churnstream.observability.server import MetricsServer
from churnstream.settings import Settings

if TYPE_CHECKING:  # importing the model module imports scikit-learn, ~3 s: see load_model_and_admin
    from churnstream.ml.model import ChurnModel

logger = logging.getLogger(__name__)


class _BrokerCheck:
    """``make_admin`` on a background thread, so its bootstrap timeout overlaps the model load.

    Importing scikit-learn and loading the model take 2-4 s here and the bootstrap timeout is 6 s:
    in sequence, "broker down" took 11-12 s to report; overlapped, about 6.5 s.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin: KafkaAdminClient | None = None
        self._error: BaseException | None = None
        self._abandoned = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._connect, name="broker-check", daemon=True)
        self._thread.start()

    def _connect(self) -> None:
        try:
            admin = make_admin(self._settings)
        except BaseException as exc:  # handed to the main thread, which re-raises it in result()
            self._error = exc
            return
        with self._lock:
            if self._abandoned:
                admin.close()
            else:
                self._admin = admin

    def result(self) -> KafkaAdminClient:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._admin is not None
        return self._admin

    def abandon(self) -> None:
        """The model failed: its error is the one to report; close the admin whenever it arrives."""
        with self._lock:
            self._abandoned = True
            if self._admin is not None:
                self._admin.close()
                self._admin = None


def load_model_and_admin(
    settings: Settings, model: Scorer | None, observed: Observed
) -> tuple[Scorer, KafkaAdminClient, ModelWatcher | None]:
    """The model, then the broker (BrokerUnavailable 2).

    The model: given (benchmarks, tests); pinned by MODEL_PATH (never swapped, no fallback: ModelMissing 5,
    ModelIntegrityError 6 when it fails); else the store's, followed by the returned watcher (None
    otherwise), which falls back to an earlier version when the current one does not load (5/6 only
    when no version loads).
    """
    check = _BrokerCheck(settings)
    watcher = None
    if model is None:
        try:
            if settings.model_path is not None:
                from churnstream.ml.model import load_model  # noqa: PLC0415 - see _BrokerCheck: overlaps the import
                from churnstream.ml.store import resolve_model  # noqa: PLC0415

                model = load_model(*resolve_model(settings).paths)
            else:
                watcher = _watch_store(settings, observed)
                model = watcher.model
        except BaseException:
            check.abandon()
            raise
    return model, check.result(), watcher


def _watch_store(settings: Settings, observed: Observed) -> ModelWatcher:
    """The store's current version (or a fallback), then between batches its promotions (consumer.models)."""
    from churnstream.ml.model import load_model  # noqa: PLC0415 - see _BrokerCheck: overlaps the import
    from churnstream.ml.store import ModelStore  # noqa: PLC0415

    return follow_store(
        ModelStore(settings.model_store),
        load_model,
        on_swap=observed.model_swapped,
        on_refused=lambda version, reason: observed.model_refused(),
        on_fallback=observed.model_fallback,
    )


def _drift(model: Scorer, observed: Observed) -> DriftWatch | None:
    """PSI of recent events against the model card's training data (none for a model without a card)."""
    card = getattr(model, "card", None)
    if card is None:
        return None
    from churnstream.ml.drift import PSI_WARNING, DriftMonitor  # noqa: PLC0415

    return DriftWatch(DriftMonitor(card), warn_at=PSI_WARNING, sink=observed.metrics)


def load_shadow(settings: Settings, version: str) -> Scorer:
    """The challenger, from the model store: an unknown version is a bad setting (exit 3), before
    anything is consumed; one that fails its checks, exit 6 as the main model's would."""
    from churnstream.ml.model import load_model  # noqa: PLC0415 - scikit-learn: only when used
    from churnstream.ml.store import ModelStore  # noqa: PLC0415

    model = load_model(*ModelStore(settings.model_store).paths(version))
    logger.info("shadow model %s scores every batch too, into %s", version, settings.topic_predictions_shadow)
    return model


def same_contract(model: Scorer, shadow: Scorer) -> None:
    """A shadow scores the events the main model accepted: it must read the same event schema."""
    main_schema, shadow_schema = model.contract.schema, shadow.contract.schema
    if main_schema.sha256 != shadow_schema.sha256:
        raise ConfigError(
            f"the shadow model {shadow.version} was made for another event schema ({shadow_schema.title}, sha256 "
            f"{shadow_schema.sha256[:12]}) than the main model {model.version} ({main_schema.title}, "
            f"{main_schema.sha256[:12]}); a shadow must score the same events"
        )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def producer_options(
    options: ConsumerOptions, identity: ConsumerIdentity, raw_limit: int | None = None
) -> dict[str, Any]:
    """The output producer's tuning (consumer.options says why), and its transactional id. A request
    must carry a dead letter as large as the raw topic takes (``raw_limit``), with its headers."""
    room = (
        PRODUCER_MAX_REQUEST_SIZE
        if raw_limit is None
        else max(PRODUCER_MAX_REQUEST_SIZE, raw_limit + DEADLETTER_HEADROOM_BYTES)
    )
    extra: dict[str, Any] = {
        "max_request_size": room,
        "batch_size": PRODUCER_BATCH_SIZE,
        "linger_ms": PRODUCER_LINGER_MS,
        "retry_backoff_ms": PRODUCER_RETRY_BACKOFF_MS,
        "delivery_timeout_ms": options.delivery_timeout_ms,
        "request_timeout_ms": options.request_timeout_ms,
    }
    if options.exactly_once:
        extra["transactional_id"] = identity.transactional_id
        extra["transaction_timeout_ms"] = options.transaction_timeout_ms
    return extra


@contextmanager
def _closing_consumer(consumer: KafkaConsumer) -> Iterator[KafkaConsumer]:
    try:
        yield consumer
    finally:
        consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_S * 1000)


@contextmanager
def _closing_producer(producer: KafkaProducer) -> Iterator[KafkaProducer]:
    try:
        yield producer
    finally:
        producer.close(timeout=CLOSE_TIMEOUT_S)


@dataclass
class Observed:
    """The operator's view of one run: health and lag always, metrics and their port when asked for."""

    health: Health
    metrics: ConsumerMetrics | None = None
    server: MetricsServer | None = None
    drift: DriftWatch | None = None

    def model_loaded(self, version: str) -> None:
        self.health.model_loaded = True
        if self.metrics is not None:
            self.metrics.model(version)

    def model_swapped(self, model: Scorer) -> None:
        self.model_loaded(model.version)
        card = getattr(model, "card", None)
        if self.drift is not None and card is not None:
            from churnstream.ml.drift import DriftMonitor  # noqa: PLC0415

            self.drift.restart(DriftMonitor(card))  # measured against the new model's training data

    def model_refused(self) -> None:
        if self.metrics is not None:
            self.metrics.model_refused()

    def model_fallback(self, refused_current: str | None) -> None:
        if self.metrics is not None:
            self.metrics.model_fallback_active(refused_current is not None)


def _observe(settings: Settings, options: ConsumerOptions, stack: ExitStack) -> Observed:
    """Binds the metrics port first of all, so a taken port fails the start before anything else."""
    observed = Observed(Health(liveness_s=options.liveness_s))
    port = options.metrics_port if options.metrics_port is not None else settings.metrics_port
    address = options.metrics_address if options.metrics_address is not None else settings.metrics_address
    if port is not None:
        observed.metrics = ConsumerMetrics(observed.health, observed.health.lag)
        observed.server = MetricsServer(port, observed.metrics.registry, observed.health, address).start()
        stack.callback(observed.server.close)
    return observed


def _wait_for_input(
    admin: KafkaAdminClient, settings: Settings, options: ConsumerOptions, health: Health, stop: StopFlag
) -> None:
    """Started before its input topic exists, wait for it a bounded time (not ready meanwhile);
    TopicMissing (exit 7) past the bound. A signal while waiting is a stop before work began (130)."""
    wait_s = options.wait_for_topic_s if options.wait_for_topic_s is not None else settings.consumer_wait_for_topic_s
    health.waiting_for = settings.topic_raw
    try:
        if not wait_for_topics(admin, settings, [settings.topic_raw], wait_s, stop):
            raise KeyboardInterrupt  # run() says "Interrupted", exit 130, as a stop before work began
    finally:
        health.waiting_for = None


def _probe_lag(settings: Settings, observed: Observed, client_id: str, stack: ExitStack) -> None:
    """With metrics served: end and committed offsets from a client of its own, so lag keeps
    growing on the gauges (and readiness sees it) even while the loop is blocked in one batch; and
    the oldest waiting record's timestamp, from a consumer of its own (no group), so the lag in
    seconds counts the time before this consumer first looked too."""
    if observed.metrics is None:
        return
    admin = make_admin(settings, client_id=f"{client_id}-lag")
    stack.callback(admin.close)
    dater = make_consumer(settings, client_id=f"{client_id}-lag", **dating_options())
    stack.callback(dater.close, autocommit=False, timeout_ms=CLOSE_TIMEOUT_S * 1000)
    group = settings.consumer_group
    probe = LagProbe(
        observed.health.lag,
        lambda partitions: group_offsets(admin, group, partitions),
        lambda offsets: first_records(dater, offsets),
    )
    stack.enter_context(closing(probe.start()))  # closed first: the clients it uses close after it


def _clients(
    settings: Settings, options: ConsumerOptions, identity: ConsumerIdentity, raw_limit: int | None, stack: ExitStack
) -> tuple[KafkaProducer, KafkaConsumer]:
    client_id = f"churn-consumer-{identity.instance_id}"
    producer = make_producer(settings, client_id=client_id, **producer_options(options, identity, raw_limit))
    stack.enter_context(_closing_producer(producer))
    if options.exactly_once:
        # Before joining the group: fences a dead predecessor with this transactional id and
        # aborts its open transaction, so its half-written batch is never seen and its
        # pending offsets do not block our offset fetch.
        with kafka_errors_translated(settings):
            producer.init_transactions()
    consumer = make_consumer(
        settings,
        client_id=client_id,
        group_id=settings.consumer_group,
        group_instance_id=identity.instance_id if options.static_membership else None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_poll_records=options.max_batch,
        fetch_max_wait_ms=options.fetch_max_wait_ms,
        session_timeout_ms=options.session_timeout_ms,
    )
    stack.enter_context(_closing_consumer(consumer))
    return producer, consumer


def run_consumer(
    settings: Settings,
    options: ConsumerOptions,
    stop: StopFlag | None = None,
    *,
    model: ChurnModel | Scorer | None = None,
    on_window: Callable[[WindowSummary], None] | None = None,
    slot_dir: Path = SLOT_DIR,
    shadow: Scorer | None = None,
) -> ConsumerSummary:
    """Run the consumer until it is stopped or (batch mode) caught up; return the summary.

    ``model``/``shadow``: already loaded (benchmarks, tests); else from the settings and options.
    """
    stop = stop or StopFlag()
    with ExitStack() as stack:
        observed = _observe(settings, options, stack)
        model, admin, watcher = load_model_and_admin(settings, model, observed)
        observed.model_loaded(model.version)
        observed.drift = _drift(model, observed)
        tune_garbage_collector()
        stack.callback(admin.close)
        if shadow is None and options.shadow_model is not None:
            shadow = load_shadow(settings, options.shadow_model)
            same_contract(model, shadow)
        _wait_for_input(admin, settings, options, observed.health, stop)
        raw_limit = prepare_pipeline_topics(admin, settings, shadow=shadow is not None)
        identity = claim_identity(
            settings.consumer_group, options.instance_id or settings.consumer_instance_id, slot_dir
        )
        stack.callback(identity.release)  # after the clients close: no successor takes the slot before
        logger.info(
            "consumer %s (group %s, %s%s) starting",
            identity.instance_id,
            settings.consumer_group,
            options.guarantee,
            f", transactional id {identity.transactional_id}" if options.exactly_once else "",
        )
        producer, consumer = _clients(settings, options, identity, raw_limit, stack)
        _probe_lag(settings, observed, f"churn-consumer-{identity.instance_id}", stack)
        stats = RunStats(options, on_window)
        observer = LoopObserver(
            stats, observed.health, observed.metrics, log_interval_s=options.log_interval_s, drift=observed.drift
        )
        consumer.subscribe([settings.topic_raw], listener=RebalanceLogger(observer.assigned, observer.revoked))
        # Learn the input's partitions before the first join. Otherwise kafka-python 3.0.12 joins
        # first, assigns nothing ("No partition metadata"), and rejoins when the metadata arrives;
        # if a poll times out during that second join, its assignment is dropped and the consumer
        # idles with no partitions and no heartbeat (seen in the fault suite: 3 min, 1 in ~9).
        with kafka_errors_translated(settings):
            consumer.partitions_for_topic(settings.topic_raw)
        until = StopConditions(options, stop, stats)
        sink = make_sink(options, producer, consumer, settings)
        with kafka_errors_translated(settings), watch_broker(settings.bootstrap_servers) as outage:
            consume_loop(
                consumer, sink, model, stats, until, outage=outage, observer=observer, models=watcher, shadow=shadow
            )
        observer.finished()
        serving = watcher.model if watcher is not None else model
        summary = stats.summary(
            sink.times.as_dict(),
            model_version=serving.version,
            group=settings.consumer_group,
            instance_id=identity.instance_id,
            transactional_id=identity.transactional_id if options.exactly_once else None,
            stopped_by=until.stopped_by,
        )
        summary = replace(
            summary,
            models_refused=watcher.refused if watcher is not None else [],
            shadow_model_version=shadow.version if shadow is not None else None,
            feature_psi={k: round(v, 6) for k, v in observed.drift.refresh().items()} if observed.drift else {},
            window_mean_churn_probability=_round(observed.drift.last_mean) if observed.drift else None,
        )
        # A clean stop: every batch is committed. Leave the group so the others take over now.
        consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_S * 1000)
        if options.static_membership:
            leave_as_static_member(admin, settings.consumer_group, identity.instance_id)
    logger.info(
        "stopped (%s) after %d events: %d scored, %d dead-lettered",
        summary.stopped_by,
        summary.consumed,
        summary.scored,
        summary.dead_lettered,
    )
    return summary
