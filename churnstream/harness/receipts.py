"""The latency reader's file: one frame per record it received, with the wall-clock time of receipt.

The reader (``churnstream.harness.latency_reader``, its own process) only takes ``time.time()``
when a poll returns and appends each record's bytes as they came, so nothing but the poll is on its
hot path. The harness decodes the frames later, here, and the outputs with ``contract.outputs``.

A file is ``MAGIC`` followed by frames; a frame is a fixed head (``_HEAD``), then the key, the value
and the headers. A length of -1 stands for None. A frame is written whole or not yet (the reader
writes whole frames; a reader of the file keeps an incomplete tail for later).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from churnstream.contract.wire import header_key

# Version 2: a header count and a header name's length take 4 bytes (a dead letter can carry
# 100,000 headers of its record, and a header name can be as long as the record).
MAGIC = b"churn-receipts/2\n"
# received (epoch seconds), topic index, partition, offset, key length, value length, header count
_HEAD = struct.Struct("<dBiqiiI")
_HEADER_HEAD = struct.Struct("<Ii")  # header name length, header value length
_NONE = -1

HeaderList = Sequence[tuple[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class Receipt:
    """One record as the latency reader received it."""

    received_s: float  # time.time() when the poll that returned it came back
    topic_index: int  # index into the topics the reader was given
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    @property
    def received_ms(self) -> float:
        return self.received_s * 1000.0

    @property
    def source(self) -> tuple[int, int]:
        return (self.partition, self.offset)


def _length(data: bytes | None) -> int:
    return _NONE if data is None else len(data)


class RecordLike(Protocol):
    """What a frame keeps of a record (kafka-python's ConsumerRecord has these)."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: HeaderList | None


def pack(received_s: float, topic_index: int, record: RecordLike) -> bytes:
    """One frame. Plain concatenation: a few microseconds, off the timestamp's path (taken before)."""
    key, value, headers = record.key, record.value, record.headers or ()
    parts = [
        _HEAD.pack(received_s, topic_index, record.partition, record.offset, _length(key), _length(value), len(headers))
    ]
    if key:
        parts.append(key)
    if value:
        parts.append(value)
    for name, header_value in headers:
        encoded = name.encode()
        parts.append(_HEADER_HEAD.pack(len(encoded), _length(header_value)))
        parts.append(encoded)
        if header_value:
            parts.append(header_value)
    return b"".join(parts)


def _take(data: bytes, position: int, length: int) -> tuple[bytes | None, int] | None:
    """``length`` bytes from ``position`` (None for -1), or None when the data ends first."""
    if length == _NONE:
        return None, position
    end = position + length
    if end > len(data):
        return None
    return data[position:end], end


def _unpack_headers(data: bytes, position: int, count: int) -> tuple[list[tuple[str, bytes | None]], int] | None:
    headers: list[tuple[str, bytes | None]] = []
    for _ in range(count):
        if position + _HEADER_HEAD.size > len(data):
            return None
        name_length, value_length = _HEADER_HEAD.unpack_from(data, position)
        position += _HEADER_HEAD.size
        name = _take(data, position, name_length)
        if name is None:
            return None
        position = name[1]
        value = _take(data, position, value_length)
        if value is None:
            return None
        position = value[1]
        headers.append((header_key(name[0] or b""), value[0]))
    return headers, position


def _unpack_one(data: bytes, position: int) -> tuple[Receipt, int] | None:
    """The frame at ``position`` and where the next starts, or None if it is not all there yet."""
    if position + _HEAD.size > len(data):
        return None
    received_s, topic_index, partition, offset, key_length, value_length, count = _HEAD.unpack_from(data, position)
    key = _take(data, position + _HEAD.size, key_length)
    if key is None:
        return None
    value = _take(data, key[1], value_length)
    if value is None:
        return None
    headers = _unpack_headers(data, value[1], count)
    if headers is None:
        return None
    receipt = Receipt(received_s, topic_index, partition, offset, key[0], value[0], tuple(headers[0]))
    return receipt, headers[1]


def unpack(data: bytes, position: int = 0) -> tuple[list[Receipt], int]:
    """Every whole frame in ``data`` from ``position``; returns them and where the incomplete tail starts."""
    receipts: list[Receipt] = []
    while True:
        taken = _unpack_one(data, position)
        if taken is None:
            return receipts, position
        receipts.append(taken[0])
        position = taken[1]


class ReceiptFile:
    """Reads a growing receipts file incrementally: each :meth:`read_new` returns the frames added since."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pending = b""
        self._offset = 0  # bytes of the file consumed so far
        self._checked_magic = False

    def read_new(self) -> list[Receipt]:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        data = self._pending + chunk
        start = 0
        if not self._checked_magic:
            if len(data) < len(MAGIC):
                self._pending = data
                return []
            if not data.startswith(MAGIC):
                raise ValueError(f"{self.path} is not a receipts file (it does not start with {MAGIC!r})")
            self._checked_magic = True
            start = len(MAGIC)
        receipts, end = unpack(data, start)
        self._pending = data[end:]
        return receipts
