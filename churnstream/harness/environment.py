"""What a run ran on, for the report: machine, Python, packages, broker."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from churnstream.kafka.clients import make_admin
from churnstream.kafka.topics import broker_version
from churnstream.settings import Settings


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
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": packages,
        "broker": {"bootstrap_servers": settings.bootstrap_servers, "api_version": api, "brokers": brokers},
    }
