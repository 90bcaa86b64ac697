"""Log lines: text with the UTC date and milliseconds, or JSON objects a log pipeline parses line by line."""

from __future__ import annotations

import json
import logging
import re

import pytest

from churnstream.cli.common import setup_logging

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(autouse=True)
def _restore_root_logger() -> object:
    """The root logger as setup_logging leaves it, and the project's logger at no level of its own
    (another test, a benchmark's main run in-process, may have set one)."""
    root, ours = logging.getLogger(), logging.getLogger("churnstream")
    handlers, level, our_level = root.handlers[:], root.level, ours.level
    ours.setLevel(logging.NOTSET)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    ours.setLevel(our_level)


def test_json_lines_parse_and_carry_an_event_s_coordinates(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(log_format="json")
    log = logging.getLogger("churnstream.consumer.observe")
    log.info("heartbeat: consumed=%d", 5)
    log.warning("dead-lettered %s", "x", extra={"event_id": "e-1", "topic": "raw", "partition": 2, "offset": 41})
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("unexpected")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3  # a traceback stays inside its line
    first, second, third = (json.loads(line) for line in lines)
    assert ISO_MS.match(first["ts"])
    assert first == {"ts": first["ts"], "level": "INFO", "logger": log.name, "message": "heartbeat: consumed=5"}
    assert (second["event_id"], second["topic"], second["partition"], second["offset"]) == ("e-1", "raw", 2, 41)
    assert second["level"] == "WARNING"
    assert "ValueError: boom" in third["exc"]


def test_text_lines_carry_the_utc_date_and_milliseconds(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(log_format="text")
    logging.getLogger("churnstream.x").warning("hello")
    line = capsys.readouterr().err.strip()
    stamp, level, name, message = line.split(maxsplit=3)
    assert ISO_MS.match(stamp)
    assert (level, name, message) == ("WARNING", "churnstream.x:", "hello")


def test_a_bad_log_format_in_the_environment_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOG_FORMAT", "xml")
    monkeypatch.setenv("CHURN_DOTENV", "none")
    with pytest.raises(SystemExit) as stopped:
        setup_logging()
    assert stopped.value.code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "LOG_FORMAT" in err[0]
