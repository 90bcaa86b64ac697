"""``test_pipeline.py --verify-only``: broker, topics, model and data, each checked on its own."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kafka import KafkaAdminClient

from churnstream.errors import PipelineError
from churnstream.kafka.clients import make_admin
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.kafka.records import CODEC_PACKAGES, readable_codecs
from churnstream.kafka.topics import broker_version, ensure_topics
from churnstream.ml.dataset import DATASET_SHA256, verify_dataset
from churnstream.ml.store import resolve_model
from churnstream.settings import Settings

if TYPE_CHECKING:
    from churnstream.ml.model import ChurnModel


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def verify(settings: Settings) -> list[Check]:
    """Broker, topics, model, data and codecs: each checked on its own, so one failure hides no other.

    The model and the data are checked first, and missing topics are created only when both
    pass: a start-up fault (a missing model, an altered CSV) changes nothing on the broker.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Connect while the model loads (scikit-learn's import alone takes seconds), so a broker
        # that is down is reported within the same 10 s as from the scripts.
        connecting = pool.submit(make_admin, settings, "churn-verify")
        local = _local_checks(settings)
        return [*_broker_checks(connecting, settings, local), *local, codec_check()]


def codec_check() -> Check:
    """Which compression codecs this consumer can read: a batch in one it cannot read becomes a dead letter."""
    readable = readable_codecs()
    missing = [name for name, ok in readable.items() if not ok]
    can = ", ".join(["none", *(name for name, ok in readable.items() if ok)])
    if not missing:
        return Check("compression codecs", True, f"reads {can}")
    install = ", ".join(CODEC_PACKAGES[name] for name in missing)
    return Check(
        "compression codecs",
        False,
        f"reads {can}, not {', '.join(missing)}: batches compressed with it become dead letters (install {install}: "
        "make venv)",
    )


def load_model_deferred(settings: Settings) -> ChurnModel:
    """The model the consumer would load (MODEL_PATH, else the store's current version). Imported
    here, not at the top: scikit-learn's import takes seconds, and --verify-only connects to the
    broker meanwhile (see verify)."""
    from churnstream.ml.model import load_model  # noqa: PLC0415

    return load_model(*resolve_model(settings).paths)


def _local_checks(settings: Settings) -> list[Check]:
    local: list[Check] = []
    try:
        model = load_model_deferred(settings)
        where = "pinned by MODEL_PATH" if settings.model_path is not None else "the store's current version"
        detail = f"{model.version}, sha256 matches its card ({where})"
        local.append(Check("model integrity", True, detail))
    except PipelineError as exc:
        local.append(Check("model integrity", False, str(exc)))
    try:
        verify_dataset(settings.data_path)
        local.append(Check("data checksum", True, f"{settings.data_path.name} sha256 {DATASET_SHA256[:12]}..."))
    except PipelineError as exc:
        local.append(Check("data checksum", False, str(exc)))
    return local


def _broker_checks(connecting: Future[KafkaAdminClient], settings: Settings, local: list[Check]) -> list[Check]:
    checks: list[Check] = []
    try:
        admin = connecting.result()
    except PipelineError as exc:
        checks.append(Check("broker answers", False, str(exc)))
        checks.append(Check("topics exist", False, "skipped: no broker"))
    else:
        try:
            version = broker_version(admin)
            checks.append(Check("broker answers", True, f"{settings.bootstrap_servers}, Kafka API {version}"))
            topics = [settings.topic_raw, settings.topic_predictions, settings.topic_deadletter]
            if all(check.passed for check in local):
                created = ensure_topics(admin, settings, topics)
                detail = ", ".join(topics) + (f" (created {', '.join(created)})" if created else "")
                checks.append(Check("topics exist", True, detail))
            else:
                with kafka_errors_translated(settings):
                    missing = sorted(set(topics) - set(admin.list_topics()))
                detail = f"skipped creating {', '.join(missing)}: fix the failed checks first" if missing else ""
                checks.append(Check("topics exist", not missing, detail or ", ".join(topics)))
        except PipelineError as exc:
            checks.append(Check("topics exist", False, str(exc)))
        finally:
            admin.close()
    return checks
