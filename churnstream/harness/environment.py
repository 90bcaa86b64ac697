"""What a run ran on, for the report: machine, Python, packages, broker; and what it ran: commit, load, options."""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson

from churnstream.consumer.options import (
    POLL_TIMEOUT_MS,
    PRODUCER_BATCH_SIZE,
    PRODUCER_LINGER_MS,
    PRODUCER_RETRY_BACKOFF_MS,
    ConsumerOptions,
)
from churnstream.errors import PipelineError
from churnstream.harness.latency_reader import DEFAULT_FETCH_MAX_WAIT_MS as READER_FETCH_MAX_WAIT_MS
from churnstream.harness.latency_reader import DEFAULT_MAX_POLL_RECORDS as READER_MAX_POLL_RECORDS
from churnstream.harness.quix import quix_options, quix_versions
from churnstream.kafka.clients import make_admin
from churnstream.kafka.topics import broker_version
from churnstream.ml.store import resolve_model
from churnstream.settings import PROJECT_ROOT, Settings


def environment(settings: Settings) -> dict[str, Any]:
    """What this run ran on, for the report: machine, Python, packages, broker."""
    packages = {}
    for name in ("kafka-python", "scikit-learn", "pandas", "numpy", "orjson", "joblib", "crc32c", "lz4"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    admin = make_admin(settings, client_id="churn-harness-admin")
    try:
        api = broker_version(admin)
        brokers = len(admin.describe_cluster()["brokers"])
    finally:
        admin.close()
    versions = quix_versions()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": packages,
        "broker": {"bootstrap_servers": settings.bootstrap_servers, "api_version": api, "brokers": brokers},
        # The Quix Streams subject's own virtualenv (.run/quix), when there is one: what its runs used.
        "quix": None if versions is None else {"packages": versions, "options": quix_options()},
    }


def git_state(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The commit the run was made from, and whether the work tree had changes (then the figures
    may come from code that no commit holds)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def model_version(card_path: Path) -> str | None:
    """The model's version from its card (read as JSON: no scikit-learn import for this)."""
    try:
        return str(orjson.loads(card_path.read_bytes())["model_version"])
    except (OSError, orjson.JSONDecodeError, KeyError):
        return None


def _model_version(settings: Settings) -> str | None:
    try:
        return model_version(resolve_model(settings).card_path)
    except PipelineError:  # no current model: the run itself will say so
        return None


def consumer_options(extra_args: Sequence[str]) -> dict[str, Any]:
    """The consumer's settings that shape latency, as the runs used them, and the latency reader's."""
    defaults = ConsumerOptions()
    return {
        "max_batch": defaults.max_batch,
        "fetch_max_wait_ms": defaults.fetch_max_wait_ms,
        "poll_timeout_ms": POLL_TIMEOUT_MS,
        "producer_linger_ms": PRODUCER_LINGER_MS,
        "producer_batch_size": PRODUCER_BATCH_SIZE,
        "producer_retry_backoff_ms": PRODUCER_RETRY_BACKOFF_MS,
        "transaction_timeout_ms": defaults.transaction_timeout_ms,
        "static_membership": defaults.static_membership,
        "extra_arguments": list(extra_args),
        "latency_reader": {
            "fetch_max_wait_ms": READER_FETCH_MAX_WAIT_MS,
            "fetch_min_bytes": 1,
            "max_poll_records": READER_MAX_POLL_RECORDS,
            "isolation_level": "read_committed",
        },
    }


def provenance(settings: Settings, extra_args: Sequence[str]) -> dict[str, Any]:
    """What a reader of the report needs to reproduce it: code, load, model, options."""
    return {
        **git_state(),
        "load_average_at_start": _load_average(),
        "model_version": _model_version(settings),
        "consumer_options": consumer_options(extra_args),
    }


def _load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None
