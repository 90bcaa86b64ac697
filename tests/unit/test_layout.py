"""The package's layering holds: each rule below is one the code review asked for, checked on the source.

- no module of the package imports the root scripts (``config.py`` and friends);
- the runtime path (producer, consumer, replay) loads nothing of the launcher, the harness or the pictures;
- the library never prints: only ``churnstream/cli`` writes to a terminal;
- the output formats have one home: no module outside the contract (and the test that pins the
  wire format) types a prediction field, a dead-letter or replay header, a mode or a guarantee.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from churnstream.contract import outputs
from tests.helpers import ROOT

PACKAGE = ROOT / "churnstream"
ROOT_SCRIPTS = {"config", "producer", "consumer", "test_pipeline"}
PREDICTION_ONLY_FIELDS = {"churn_probability", "confidence_score", "processed_ts", "source_partition", "source_offset"}
HEADER_NAMES = {
    *outputs.DEADLETTER_HEADERS,
    outputs.HEADER_KEY_ABSENT,
    outputs.REPLAY_HEADER_OF,
    outputs.REPLAY_HEADER_REASON,
}
MODE_NAMES = {member.value for enum in (outputs.Mode, outputs.Guarantee) for member in enum}
WIRE_FORMAT_PIN = ROOT / "tests" / "unit" / "test_contract.py"  # the one test that spells the format out


def python_files(*folders: Path) -> list[Path]:
    return sorted(path for folder in folders for path in folder.rglob("*.py"))


def imported_modules(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def string_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants that are not docstrings."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    ]


@pytest.mark.parametrize("path", python_files(PACKAGE), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_package_never_imports_a_root_script(path: Path) -> None:
    imported = {name.split(".")[0] for name in imported_modules(ast.parse(path.read_text()))}
    assert not imported & ROOT_SCRIPTS


def test_the_runtime_path_loads_nothing_of_the_launcher_the_harness_or_the_pictures() -> None:
    """Import each runtime command in a fresh interpreter and list what came with it."""
    code = (
        "import json, sys\n"
        "import churnstream.cli.producer, churnstream.cli.consumer, churnstream.cli.replay\n"
        "import churnstream.consumer.run, churnstream.producer.run, churnstream.replay\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('churnstream', 'matplotlib')))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout)
    assert "churnstream.consumer.loop" in loaded  # the probe loaded what it meant to
    off_the_path = ("churnstream.harness", "churnstream.localkafka", "churnstream.ml.report", "churnstream.plotting")
    assert [m for m in loaded if m.startswith((*off_the_path, "matplotlib"))] == []


@pytest.mark.parametrize(
    "path",
    [p for p in python_files(PACKAGE) if "cli" not in p.relative_to(PACKAGE).parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_library_never_prints(path: Path) -> None:
    calls = [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print"
    ]
    assert calls == []


def _outside_the_contract() -> list[Path]:
    contract = PACKAGE / "contract"
    files = python_files(PACKAGE, ROOT / "benchmarks", ROOT / "tests") + [ROOT / f"{name}.py" for name in ROOT_SCRIPTS]
    return [p for p in files if contract not in p.parents and p != WIRE_FORMAT_PIN and p != Path(__file__)]


@pytest.mark.parametrize("path", _outside_the_contract(), ids=lambda p: str(p.relative_to(ROOT)))
def test_output_field_and_header_names_have_one_home(path: Path) -> None:
    literals = string_literals(ast.parse(path.read_text()))
    typed = [(line, text) for line, text in literals if text in PREDICTION_ONLY_FIELDS | HEADER_NAMES]
    if "tests" not in path.relative_to(ROOT).parts:  # tests pass modes on command lines, as users do
        typed += [(line, text) for line, text in literals if text in MODE_NAMES]
    assert typed == [], "import these from churnstream.contract.outputs"
