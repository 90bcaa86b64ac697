"""The scripts' own usage rules (in-process: a usage error stops before anything connects)."""

from __future__ import annotations

import pytest

from benchmarks import (
    bare_loop,
    bench_consumer,
    bench_model,
    bench_producer,
    bench_scaling,
    bench_scoring,
    check_instrument,
    quix_loop,
    rdkafka_reader,
    seed_consumer,
)
from churnstream.cli import consumer, pipeline
from churnstream.errors import EXIT_USAGE
from churnstream.harness import latency_reader


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "batch", "--duration", "5"], "--duration applies to --mode streaming only"),
        (["--window-size", "10"], "--window-size and --num-windows apply to --mode batch only"),
        (["--instance-id", "a b"], "use 1-200 characters"),
    ],
)
def test_the_consumer_refuses_conflicting_flags(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        consumer.main(args)
    assert stopped.value.code == EXIT_USAGE
    assert message in capsys.readouterr().err


BENCHMARKS = [bench_consumer, bench_model, bench_producer, bench_scaling, bench_scoring, bare_loop, seed_consumer,
              rdkafka_reader, check_instrument, latency_reader, quix_loop]  # fmt: skip


@pytest.mark.parametrize("bench", BENCHMARKS, ids=lambda m: m.__name__)
def test_every_benchmark_has_help(bench: object, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--help"])  # type: ignore[attr-defined]
    assert stopped.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")


def test_bench_scoring_prints_the_cost_per_event_of_the_current_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_scoring.main(["-q", "--events", "60", "--repeats", "1", "--sizes", "7,30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("model logreg-") and "60 events from" in lines[0]
    rows = [line.split() for line in lines[2:]]
    assert [row[0] for row in rows] == ["7", "30"]
    assert all(float(value) > 0 for row in rows for value in row[1:])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "quick", "--subject", "floor"], "--subject: not used by --suite"),
        (["--subject", "bare-loop", "--inject-bad", "3"], "--inject-bad: --subject bare-loop has no dead-letter path"),
        (
            ["--subject", "quix", "--guarantee", "at-least-once", "--inject-bad", "3"],
            "--inject-bad: --subject quix has no dead-letter path",
        ),
        (
            ["--subject", "quix"],
            "--subject quix runs at-least-once only (Quix's default): add --guarantee at-least-once",
        ),
        (["--subject", "floor", "--consumer-arg=--max-batch=10"], "--consumer-arg: only our consumer takes it"),
        (["--consumer-arg=-Xsasl.password=pw"], "--consumer-arg: give the connection (-X, --command-config"),
        (["--consumer-arg=--bootstrap-server=b:9092"], "in their environment, never their command lines"),
    ],
)
def test_the_harness_refuses_flags_its_subject_cannot_use(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        pipeline.main(args)
    assert stopped.value.code == EXIT_USAGE
    assert message in capsys.readouterr().err
