"""Log lines on stderr, for a person (text) or for a log pipeline (json, one object per line).

Both carry the UTC time to the millisecond. A per-event warning (a dead letter) carries the
record's coordinates as fields: ``event_id``, ``topic``, ``partition``, ``offset`` (in json; in
text they are in the message already).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson

EVENT_FIELDS = ("event_id", "topic", "partition", "offset")


def utc_timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-12-01T15:16:27.123Z INFO    churnstream.consumer.observe: heartbeat: ...``"""

    converter = time.gmtime

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_timestamp(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the event's coordinates when given, the
    traceback of an unexpected error as ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": utc_timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EVENT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = record.exc_text or self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()
