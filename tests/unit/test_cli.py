"""Every command in the registry has --help and --version, and usage errors are not confused with 'broker down'.

Parametrized over churnstream.cli.registry.COMMANDS, so a new command cannot miss these checks.
Commands run in-process (``main([...])``): a usage error raises SystemExit before anything starts.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from churnstream import __version__
from churnstream.cli.common import run
from churnstream.cli.registry import COMMANDS, Command
from churnstream.errors import EXIT_INTERRUPTED, EXIT_USAGE
from tests.helpers import ROOT

IDS = [command.name for command in COMMANDS]


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_every_command_has_help(command: Command, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        command.main(["--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:")
    assert len(out.splitlines()) > 3


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_every_command_has_version(command: Command, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        command.main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip().endswith(__version__)


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_a_bad_flag_exits_64_with_one_error_line(command: Command, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        command.main(["--no-such-flag"])
    assert stopped.value.code == EXIT_USAGE
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("Error: ")  # unrecognized arguments, or a required one missing first


def test_every_console_script_is_a_registered_command() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    registered = {c.console_script: f"{c.module}:main" for c in COMMANDS if c.console_script}
    assert scripts == registered


def test_the_root_scripts_are_shims_of_the_registered_commands() -> None:
    for command in COMMANDS:
        if command.run_as.startswith("python ") and command.run_as.endswith(".py"):
            shim = (ROOT / command.run_as.split()[1]).read_text()
            assert f"from {command.module} import main" in shim, command.run_as


def test_a_usage_error_of_a_subcommand_exits_64(capsys: pytest.CaptureFixture[str]) -> None:
    launcher = next(c for c in COMMANDS if c.console_script == "churn-kafka")
    with pytest.raises(SystemExit) as stopped:
        launcher.main(["frobnicate"])
    assert stopped.value.code == EXIT_USAGE
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("Error: argument COMMAND: invalid choice")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--suite", "benchmark", "--duration", "5"], "--duration: not used by --suite"),
        (["--verify-only", "--consumers", "2"], "--consumers: not used by --verify-only"),
        (["--verify-only", "--results-json", str(ROOT / "README.md" / "x.json")], "is not a writable directory"),
        (["--verify-only", "--report", str(ROOT)], "is a directory, not a file"),
        (["--verify-only", "--run-name", "a/b"], "use 1-40 characters"),
    ],
)
def test_test_pipeline_refuses_flags_it_would_ignore_and_unwritable_outputs(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = next(c for c in COMMANDS if c.console_script == "churn-pipeline-test")
    with pytest.raises(SystemExit) as stopped:
        pipeline.main(args)
    assert stopped.value.code == EXIT_USAGE
    assert named in capsys.readouterr().err.strip().splitlines()[-1]


def test_an_interrupt_outside_the_clean_stop_exits_130_not_0() -> None:
    def body() -> int:
        raise KeyboardInterrupt

    assert run(body) == EXIT_INTERRUPTED


def test_sigterm_runs_the_finally_blocks_of_the_harness_and_a_second_signal_does_not_cut_them() -> None:
    """The harness cleans up its subprocesses in ``finally``: SIGTERM must get there, as Ctrl-C does,
    and a second signal (CI cancellations often send two) must not interrupt the clean-up."""
    code = (
        "import os, signal, sys, time\n"
        "from churnstream.cli.common import interrupt_once, run\n"
        "def body():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM); time.sleep(5); return 0\n"
        "    finally:\n"
        "        os.kill(os.getpid(), signal.SIGINT); os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.2)\n"
        "        print('cleaned up', flush=True)\n"
        "with interrupt_once():\n"
        "    sys.exit(run(body))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "cleaned up"
    assert result.returncode == EXIT_INTERRUPTED


def test_each_v_shows_more_than_the_default() -> None:
    """Before: -v meant INFO, the default already, and the client's errors were hidden below -vvv."""
    import logging  # noqa: PLC0415

    from churnstream.cli.common import setup_logging  # noqa: PLC0415

    levels = {}
    for verbose in range(4):
        setup_logging(verbose)
        levels[verbose] = (logging.getLogger().level, logging.getLogger("kafka").level)
    setup_logging(0, quiet=True)
    quiet = logging.getLogger().level
    setup_logging(0)
    assert levels[0] == (logging.INFO, logging.ERROR)  # the client's errors show by default
    assert levels[1] == (logging.DEBUG, logging.ERROR)
    assert levels[2] == (logging.DEBUG, logging.INFO)
    assert levels[3] == (logging.DEBUG, logging.DEBUG)
    assert quiet == logging.WARNING


def test_settings_given_to_a_child_process_carry_the_real_password_only_when_asked() -> None:
    """Before: the consumer benchmark gave its child the masked password ("***"), so it could not log in."""
    from churnstream.settings import settings_from  # noqa: PLC0415

    sasl = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN"}
    settings = settings_from({**sasl, "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "s3cret"})
    assert settings.environment(reveal_secrets=True)["KAFKA_SASL_PASSWORD"] == "s3cret"
    assert "KAFKA_SASL_PASSWORD" not in settings.environment(reveal_secrets=False)
    assert settings.describe()["KAFKA_SASL_PASSWORD"] == "***"
