"""The Quix Streams baseline's plumbing, without quixstreams: its scoring, summary, environment and harness subject.

quixstreams lives only in .run/quix (make quix): these tests run in .venv and never import it; the
integration test tests/integration/test_quix_subject.py runs the application itself.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from benchmarks import quix_loop
from churnstream.cli import pipeline
from churnstream.consumer.scoring import RawRecord, score_batch
from churnstream.contract.events import encode_event
from churnstream.contract.outputs import Prediction, decode_prediction
from churnstream.errors import EXIT_CONFIG, ConfigError, InvalidEvent
from churnstream.harness.judge import judge
from churnstream.harness.plan import RunPlan, Subject
from churnstream.harness.quix import QUIX_GUARANTEE, QUIX_LOOP, quix_python, quix_script, quix_versions
from churnstream.ml.dataset import load_rows
from churnstream.ml.model import ChurnModel, load_model
from churnstream.settings import Settings
from tests.helpers import ROOT, current_model_path, lock_pins, telco_event

TS = "2026-11-27T08:00:00.000Z"


@pytest.fixture(scope="module")
def model() -> ChurnModel:
    return load_model(current_model_path())


@pytest.fixture(scope="module")
def records(real_data_path: Path) -> list[RawRecord]:
    """Twenty real rows as the producer sends them, spread over partitions and offsets."""
    rows = load_rows(real_data_path)[:20]
    values = [encode_event(telco_event(row, event_id=f"e-{i}", event_ts=TS)) for i, row in enumerate(rows)]
    pairs = enumerate(zip(rows, values, strict=True))
    return [RawRecord("raw", i % 3, 100 + i, row["customerID"].encode(), value) for i, (row, value) in pairs]


def without_figures(prediction: Prediction) -> Prediction:
    """Everything but the computed figures (compared to a tolerance) and processed_ts (a clock)."""
    return replace(prediction, churn_probability=0.0, confidence_score=0.0, processed_ts="", reasons=None)


def test_it_publishes_what_our_consumer_publishes_one_event_at_a_time(
    model: ChurnModel, records: list[RawRecord]
) -> None:
    """The same fields, in the same order, of the same size, with the same figures: only the batching differs."""
    ours = score_batch(records, model).predictions
    scorer = quix_loop.Scorer(model)
    theirs = [scorer(r.value, r.partition, r.offset) for r in records]
    assert len(ours) == len(theirs) == len(records)
    for our, their in zip(ours, theirs, strict=True):
        assert list(orjson.loads(their)) == list(orjson.loads(our.value))
        # processed_ts has one width; a float's shortest repr may gain or lose a digit (five floats).
        assert abs(len(their) - len(our.value)) <= 5
        mine, yours = decode_prediction(their), decode_prediction(our.value)
        # One row per call instead of a batch changes the sum order of the matrix product: ~1e-16.
        assert mine.churn_probability == pytest.approx(yours.churn_probability, abs=1e-12)
        assert mine.confidence_score == pytest.approx(yours.confidence_score, abs=1e-12)
        assert mine.reasons is not None and yours.reasons is not None
        for reason_mine, reason_yours in zip(mine.reasons, yours.reasons, strict=True):
            assert (reason_mine["feature"], reason_mine["value"]) == (reason_yours["feature"], reason_yours["value"])
            assert reason_mine["contribution"] == pytest.approx(reason_yours["contribution"], abs=1e-9)
        assert without_figures(mine) == without_figures(yours)
        assert mine.risk_band is not None and mine.model_version == model.version


def test_a_record_that_is_not_a_valid_event_stops_it(model: ChurnModel) -> None:
    """It has no dead-letter path: the error reaches Quix, which stops the application (exit non-zero)."""
    scorer = quix_loop.Scorer(model)
    for value in (b"not json", orjson.dumps({"customerID": "x"})):
        with pytest.raises(InvalidEvent):
            scorer(value, 0, 0)


def test_it_refuses_a_listener_other_than_plaintext() -> None:
    assert quix_loop.broker_address(Settings(bootstrap_servers="h:1")) == "h:1"
    with pytest.raises(ConfigError, match=r"PLAINTEXT listener only .* not SASL_SSL"):
        quix_loop.broker_address(Settings(security_protocol="SASL_SSL"))


def test_its_summary_counts_from_the_first_message_to_the_last(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([10.0, 12.0, 14.0])
    monkeypatch.setattr(quix_loop.time, "monotonic", lambda: next(clock))
    tally = quix_loop.Tally()
    assert tally.summary()["events_per_sec"] == 0.0  # nothing processed: no rate, no division by zero
    for offset in range(3):
        tally("raw", 0, offset)
    summary = tally.summary()
    assert (summary["consumed"], summary["scored"], summary["processing_s"]) == (3, 3, 4.0)
    assert summary["events_per_sec"] == 0.8 and summary["guarantee"] == QUIX_GUARANTEE
    # The harness reads the same summary keys from every consume->produce process it runs.
    assert set(summary) >= {"consumed", "scored", "dead_lettered", "events_per_sec", "transactions_aborted"}


def test_the_harness_runs_it_in_its_own_virtualenv(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"virtualenv of its own, .*absent-venv, not there: run 'make quix'"):
        quix_python(tmp_path / "absent-venv")
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    assert quix_script("--summary-json", "s.json", venv=tmp_path / "venv") == [
        str(python), "-m", QUIX_LOOP, "--summary-json", "s.json"]  # fmt: skip
    assert quix_loop.__name__ == QUIX_LOOP


def test_the_report_names_the_versions_its_virtualenv_holds(tmp_path: Path) -> None:
    assert quix_versions(tmp_path / "absent-venv") is None
    metadata = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "quixstreams-9.9.dist-info" / "METADATA"
    metadata.parent.mkdir(parents=True)
    metadata.write_text("Metadata-Version: 2.1\nName: quixstreams\nVersion: 9.9\n")
    assert quix_versions(tmp_path / "venv") == {"quixstreams": "9.9", "confluent-kafka": "not installed"}


def test_its_runs_are_judged_on_scoring_but_not_on_dead_letters() -> None:
    results = {"producer": {"exit_code": 0, "sent": 10, "acknowledged": 10}, "consumers": [{"exit_code": 0}],
               "lost": 0, "raw_records": 10, "duplicated": 0, "duplicate_event_ids": 0, "scored": 10,
               "malformed_outputs": 0,
               "sample_check": {"checked": 10, "mismatches": 0, "max_abs_diff": 0.0}}  # fmt: skip
    plan = RunPlan(subject=Subject.QUIX, guarantee=QUIX_GUARANTEE)
    criteria = judge(results, plan, [])
    assert [c.name for c in criteria] == [
        "harness ran cleanly",
        "producer acknowledged every event",
        "no consumer crashed",
        "lost = 0",
        "duplicated = 0",
        "every valid event scored",
        "published probabilities equal offline predict_proba",
        "outputs well-formed",
    ]
    assert all(c.passed for c in criteria)
    assert not all(c.passed for c in judge({**results, "sample_check": {**results["sample_check"], "mismatches": 1}},
                                           plan, []))  # fmt: skip
    assert Subject.QUIX.scores and Subject.CONSUMER.scores and not Subject.BARE_LOOP.scores
    assert "1 Quix Streams application(s), at-least-once" in replace(plan, consumers=1).describe()


def test_its_environment_has_ours_packages_at_the_same_versions() -> None:
    """The Quix loop loads the very model ours serves: every package both locks hold at one version (scikit-learn,
    numpy, joblib, ...), except confluent-kafka, which quixstreams holds below 2.13. Fails when requirements.lock
    moves and requirements-quix.lock does not: run make lock-quix."""
    ours, theirs = lock_pins(ROOT / "requirements.lock"), lock_pins(ROOT / "requirements-quix.lock")
    shared = set(ours) & set(theirs)
    assert {"scikit-learn", "numpy", "scipy", "joblib", "msgspec", "orjson", "kafka-python"} <= shared
    assert {name: (ours[name], theirs[name]) for name in shared if ours[name] != theirs[name]} == {
        "confluent-kafka": (ours["confluent-kafka"], theirs["confluent-kafka"])
    }
    wanted = lock_pins(ROOT / "requirements-quix.in")
    assert wanted["quixstreams"] == theirs["quixstreams"] and wanted["confluent-kafka"] == theirs["confluent-kafka"]
    runtime = lock_pins(ROOT / "requirements-kafka.txt")
    assert {name: theirs.get(name) for name in runtime} == runtime  # everything the project imports


@pytest.mark.parametrize("args", [["--suite", "quix"], ["--subject", "quix", "--guarantee", "at-least-once"]])
def test_the_harness_stops_before_any_run_when_the_virtualenv_is_missing(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One line naming the command that makes it, exit 3, and no broker touched (the settings name none)."""
    monkeypatch.setattr(pipeline, "quix_python", lambda: quix_python(tmp_path / "absent-venv"))
    monkeypatch.setenv("CHURN_DOTENV", "none")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "unreachable.invalid:9")
    code = pipeline.main([*args, "--results-json", str(tmp_path / "results.json")])
    assert code == EXIT_CONFIG
    assert "Error: the Quix Streams subject runs in a virtualenv of its own" in capsys.readouterr().err
    assert not (tmp_path / "results.json").exists()
