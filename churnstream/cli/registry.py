"""Every command the project ships, in one list: the console scripts, the docs and the CLI tests use it.

A command added here gets ``--help``, ``--version`` and usage-error tests (tests/unit/test_cli.py) and
a section in the generated CLI reference (docs/reference/cli.md, ``make docs``) without anyone
remembering to add them.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str  # how the docs call it
    module: str  # churnstream.cli.<x>: build_parser() and main(argv)
    console_script: str | None = None  # installed by pip (pyproject.toml [project.scripts])
    run_as: str = ""  # how to run it from a checkout

    def build_parser(self) -> argparse.ArgumentParser:
        return importlib.import_module(self.module).build_parser()

    @property
    def main(self) -> Callable[[list[str] | None], int]:
        return importlib.import_module(self.module).main


COMMANDS: tuple[Command, ...] = (
    Command("producer", "churnstream.cli.producer", "churn-producer", "python producer.py"),
    Command("consumer", "churnstream.cli.consumer", "churn-consumer", "python consumer.py"),
    Command("pipeline test", "churnstream.cli.pipeline", "churn-pipeline-test", "python test_pipeline.py"),
    Command("replay", "churnstream.cli.replay", "churn-replay", "python -m churnstream.replay"),
    Command("local Kafka", "churnstream.cli.kafka", "churn-kafka", "python -m churnstream.broker"),
    Command("data set", "churnstream.cli.data", "churn-data", "python -m churnstream.data"),
    Command("training", "churnstream.cli.train", "churn-train", "python -m churnstream.train"),
    Command("model store", "churnstream.cli.model", "churn-model", "python -m churnstream.cli.model"),
    Command("event schema", "churnstream.cli.schema", "churn-schema", "python -m churnstream.cli.schema"),
    Command("monitoring", "churnstream.cli.monitor", "churn-monitor", "python -m churnstream.cli.monitor"),
    Command("settings", "churnstream.cli.settings", None, "python config.py"),
)
