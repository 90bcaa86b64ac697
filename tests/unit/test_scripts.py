"""The scripts' own usage rules (in-process: a usage error stops before anything connects)."""

from __future__ import annotations

import pytest

from benchmarks import bench_consumer, bench_model, bench_producer, bench_scaling
from churnstream.cli import consumer
from churnstream.errors import EXIT_USAGE


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


@pytest.mark.parametrize(
    "bench", [bench_consumer, bench_model, bench_producer, bench_scaling], ids=lambda m: m.__name__
)
def test_every_benchmark_has_help(bench: object, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench.main(["--help"])  # type: ignore[attr-defined]
    assert stopped.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")
