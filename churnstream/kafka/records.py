"""kafka-python 3.0.12's record parser, made to hand over what it cannot read instead of raising.

Two kinds of record made a kafka-python consumer raise out of ``poll()`` without moving its
position, so it read the same record again after every restart, and so did every member that took
the partition over: one odd producer stopped the group for good.

* A header key that is not UTF-8 (the format says it is; the broker does not check, kcat writes
  one): ``DefaultRecordBatch._read_msg`` decodes it strictly. Here the record is read again by
  :func:`_read_leniently`, and the key comes as a :class:`~churnstream.contract.wire.RawHeaderKey`,
  which keeps its bytes for the fetcher, for scoring and for the dead letter's producer.
* A compressed batch the client cannot decompress (a codec not installed, or data it cannot read):
  ``_maybe_uncompress`` raises. Here the batch becomes one record at its last offset whose value is
  an :class:`~churnstream.contract.wire.UndecodableBatch` (the compressed bytes and the offsets they
  hold), so the consumer dead-letters the batch and the position moves past it.

The fast path is kafka-python's own: one more call per record, and the lenient reader runs only
for a record that failed. :func:`install` is called by ``internals.check_client`` once it has
checked that kafka-python is the version this was written for, and :func:`self_test` then shows
that it took effect; anything else refuses to start (exit 3).
"""

from __future__ import annotations

import struct
from typing import Any

from kafka import codec as kafka_codec
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecord, DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.util import decode_varint

from churnstream.contract.wire import RawHeaderKey, UndecodableBatch, header_key

CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

_kafka_read_msg = DefaultRecordBatch._read_msg  # noqa: SLF001 - the workaround this module is
_kafka_maybe_uncompress = DefaultRecordBatch._maybe_uncompress  # noqa: SLF001


class _Unreadable(bytearray):
    """A batch's buffer once it could not be decompressed: empty (so the batch's end-of-records
    check holds), with the one record that stands for the batch."""

    def __init__(self, value: UndecodableBatch) -> None:
        super().__init__()
        self.value = value


def _maybe_uncompress(self: Any) -> None:
    if self._decompressed:
        return
    try:
        _kafka_maybe_uncompress(self)
    except Exception as exc:  # routed: a batch the client cannot read becomes one dead letter, not an outage
        payload = bytes(memoryview(self._buffer)[self._pos :])
        codec = CODECS.get(self.compression_type, f"codec {self.compression_type}")
        value = UndecodableBatch(
            payload, first_offset=self.base_offset, last_offset=self.last_offset, codec=codec, error=exc
        )
        self._buffer = _Unreadable(value)
        self._pos = 0
        self._num_records = 1
        self._decompressed = True


def _read_msg(self: Any, decode_varint: Any = decode_varint) -> Any:
    buffer = self._buffer
    if type(buffer) is _Unreadable:
        return DefaultRecord(
            len(buffer.value), self.last_offset, self.max_timestamp, self.timestamp_type, None, buffer.value, []
        )
    position = self._pos
    try:
        return _kafka_read_msg(self)
    except UnicodeDecodeError:  # a header key that is not UTF-8; anything else is as kafka-python says
        record, self._pos = _read_leniently(self, buffer, position)
        return record


def _nullable_bytes(buffer: bytearray, position: int) -> tuple[bytes | None, int]:
    length, position = decode_varint(buffer, position)
    if length < 0:
        return None, position
    return bytes(buffer[position : position + length]), position + length


def _read_leniently(batch: Any, buffer: bytearray, position: int) -> tuple[DefaultRecord, int]:
    """One record of format v2 at ``position`` and where the next starts, header keys kept as bytes
    where they are not UTF-8; CorruptRecordError when the record does not hold together."""
    length, position = decode_varint(buffer, position)
    start = position
    position += 1  # attributes: one byte, unused
    timestamp_delta, position = decode_varint(buffer, position)
    offset_delta, position = decode_varint(buffer, position)
    key, position = _nullable_bytes(buffer, position)
    value, position = _nullable_bytes(buffer, position)
    count, position = decode_varint(buffer, position)
    if count < 0:
        raise CorruptRecordError(f"Found invalid number of record headers {count}")
    headers: list[tuple[str, bytes | None]] = []
    for _ in range(count):
        name_length, position = decode_varint(buffer, position)
        if name_length < 0:
            raise CorruptRecordError(f"Invalid negative header key size {name_length}")
        name = header_key(bytes(buffer[position : position + name_length]))
        header_value, position = _nullable_bytes(buffer, position + name_length)
        headers.append((name, header_value))
    if position - start != length:
        raise CorruptRecordError(f"Invalid record size: expected {length} bytes, read {position - start}")
    if batch.timestamp_type == batch.LOG_APPEND_TIME:
        timestamp = batch.max_timestamp
    else:
        timestamp = batch.first_timestamp + timestamp_delta
    offset = batch.base_offset + offset_delta
    return DefaultRecord(length, offset, timestamp, batch.timestamp_type, key, value, headers), position


# What kafka-python needs to read each codec (its extras), for a line that says what to install.
CODEC_PACKAGES = {"gzip": "the standard library", "snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}


def readable_codecs() -> dict[str, bool]:
    """Whether this process's kafka-python can decompress each codec a producer may use."""
    checks = {
        "gzip": kafka_codec.has_gzip,
        "snappy": kafka_codec.has_snappy,
        "lz4": kafka_codec.has_lz4,
        "zstd": kafka_codec.has_zstd,
    }
    return {name: bool(check()) for name, check in checks.items()}


def install() -> None:
    """Put the lenient reading in place (idempotent)."""
    DefaultRecordBatch._read_msg = _read_msg  # noqa: SLF001
    DefaultRecordBatch._maybe_uncompress = _maybe_uncompress  # noqa: SLF001


_ATTRIBUTES = struct.Struct(">h")
_ODD_KEY = b"\xff\xfe"
_UNKNOWN_CODEC = 0x07  # no codec has this number: the client cannot decompress it


def _batch(headers: list[tuple[str, bytes]], codec_bits: int = 0) -> DefaultRecordBatch:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False, producer_id=-1, producer_epoch=-1, base_sequence=-1,
        batch_size=1 << 16,
    )  # fmt: skip
    builder.append(0, timestamp=1, key=b"k", value=b"v", headers=headers)
    builder.append(1, timestamp=1, key=b"k", value=b"v", headers=[])
    buffer = builder.build()
    if codec_bits:
        attributes = _ATTRIBUTES.unpack_from(buffer, DefaultRecordBatch.ATTRIBUTES_OFFSET)[0]
        _ATTRIBUTES.pack_into(buffer, DefaultRecordBatch.ATTRIBUTES_OFFSET, attributes | codec_bits)
    return DefaultRecordBatch(bytes(buffer))


def self_test() -> list[str]:
    """What does not work as the workaround expects, read back from batches built here; empty when all does."""
    found: list[str] = []
    try:
        records = list(_batch([("plain", b"1"), (RawHeaderKey(_ODD_KEY), b"2")]))
        name = records[0].headers[1][0]
        if len(records) != 2 or type(name) is not RawHeaderKey or name.encode() != _ODD_KEY:
            found.append(f"a header key that is not UTF-8 is read as {name!r}")
    except Exception as exc:  # reported: the check's answer is this list
        found.append(f"a header key that is not UTF-8 fails ({type(exc).__name__}: {exc})")
    try:
        records = list(_batch([], codec_bits=_UNKNOWN_CODEC))
        value = records[0].value if len(records) == 1 else None
        if not isinstance(value, UndecodableBatch) or (value.first_offset, value.last_offset) != (0, 1):
            found.append(f"a batch that cannot be decompressed is read as {records!r}")
    except Exception as exc:  # reported: the check's answer is this list
        found.append(f"a batch that cannot be decompressed fails ({type(exc).__name__}: {exc})")
    return found
