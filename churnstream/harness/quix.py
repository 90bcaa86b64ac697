"""The Quix Streams subject (``--subject quix``, benchmarks/quix_loop.py): its virtualenv, its settings, its versions.

Quix Streams needs a confluent-kafka older than the one ``.venv`` pins, so its application runs in a
virtualenv of its own, ``.run/quix`` (``make quix``, from requirements-quix.lock). The settings it
runs with live here, so the application uses them and the report states them from one place.
"""

from __future__ import annotations

from importlib.metadata import distributions
from pathlib import Path

from churnstream.contract.outputs import Guarantee
from churnstream.errors import ConfigError
from churnstream.settings import PROJECT_ROOT

QUIX_VENV = PROJECT_ROOT / ".run" / "quix"
QUIX_LOOP = "benchmarks.quix_loop"
QUIX_HINT = "run 'make quix' (make benchmark does) to build it from requirements-quix.lock"
QUIX_PACKAGES = ("quixstreams", "confluent-kafka")

# Quix Streams' default processing guarantee: the only one the subject runs.
QUIX_GUARANTEE = Guarantee.AT_LEAST_ONCE
# What a Quix user after low latency sets: librdkafka waits 5 ms by default for more messages to batch, and
# Quix hands it one message at a time, flushing only at a commit (Confluent's latency guide: linger.ms 0).
QUIX_PRODUCER_LINGER_MS = 0
# Quix's default, set explicitly so the report can say it: every 5 s it flushes its producer, then commits.
QUIX_COMMIT_INTERVAL_S = 5.0
AUTO_OFFSET_RESET = "earliest"  # as ours and the bare loop: a new group reads the raw topic from its start


def quix_python(venv: Path = QUIX_VENV) -> Path:
    """The Quix Streams baseline's interpreter; ConfigError, with the command that makes it, if it is absent."""
    python = venv / "bin" / "python"
    if not python.is_file():
        raise ConfigError(f"the Quix Streams subject runs in a virtualenv of its own, {venv}, not there: {QUIX_HINT}")
    return python


def quix_script(*args: str, venv: Path = QUIX_VENV) -> list[str]:
    """``<.run/quix>/bin/python -m benchmarks.quix_loop ARGS``."""
    return [str(quix_python(venv)), "-m", QUIX_LOOP, *args]


def quix_options() -> dict[str, object]:
    """The settings the subject runs with, for the report (the rest are Quix Streams' defaults)."""
    return {
        "processing_guarantee": str(QUIX_GUARANTEE),
        "producer_linger_ms": QUIX_PRODUCER_LINGER_MS,
        "commit_interval_s": QUIX_COMMIT_INTERVAL_S,
        "auto_offset_reset": AUTO_OFFSET_RESET,
    }


def quix_versions(venv: Path = QUIX_VENV) -> dict[str, str] | None:
    """quixstreams' and confluent-kafka's versions in the subject's virtualenv; None when it does not exist."""
    found = sorted(venv.glob("lib/python*/site-packages"))
    if not found:
        return None
    installed = {dist.metadata["Name"].lower(): dist.version for dist in distributions(path=[str(found[0])])}
    return {name: installed.get(name, "not installed") for name in QUIX_PACKAGES}
