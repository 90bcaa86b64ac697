"""A Kafka record as it is on the wire (record format v2), without Kafka: its size, and the two
things a client may hand us that are not what the format promises.

* :class:`RawHeaderKey`: a header key that is not UTF-8. Kafka's format says a header key is a
  UTF-8 string, but the broker does not check it (Java clients decode it leniently, librdkafka
  hands over bytes). Such a key reaches us as a ``str`` that keeps its original bytes: its
  ``encode()`` returns them, so kafka-python's fetcher and producer, which only ever call
  ``key.encode("utf-8")``, measure and write the bytes that came in.
* :class:`UndecodableBatch`: the records of a compressed batch the client could not decompress
  (a codec it lacks), handed over as one value: the compressed bytes, and the offsets they hold.

The size functions follow the format's definition (a varint per length, zig-zag encoded); a test
checks them against kafka-python's own builder.
"""

from __future__ import annotations

from collections.abc import Sequence

# A record batch's fixed header (61 bytes in format v2) plus the most a record's own framing can take
# (length, attributes, timestamp and offset deltas: kafka-python's MAX_RECORD_OVERHEAD, 21 bytes): what a
# client adds to a record's key, value and headers when it checks a record against a size limit.
BATCH_OVERHEAD_BYTES = 61 + 21


def varint_size(value: int) -> int:
    """Bytes of ``value`` as a zig-zag varint (Kafka's varint and varlong)."""
    encoded = (value << 1) ^ (value >> 63)
    size = 1
    while encoded > 0x7F:
        encoded >>= 7
        size += 1
    return size


def bytes_size(data: bytes | None) -> int:
    """A nullable byte field: its length as a varint (-1 for null), then the bytes."""
    return 1 if data is None else varint_size(len(data)) + len(data)


def header_size(name: str, value: bytes | None) -> int:
    """One header: its key (a string) and its value (nullable bytes)."""
    return bytes_size(header_key_bytes(name)) + bytes_size(value)


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> int:
    """A record's key, value and headers as the format writes them (kafka-python's ``size_of``)."""
    return (
        bytes_size(key)
        + bytes_size(value)
        + varint_size(len(headers))
        + sum(header_size(name, header_value) for name, header_value in headers)
    )


class RawHeaderKey(str):
    """A header key whose bytes are not UTF-8: shown with the odd bytes escaped (``\\xff``), and
    written back as the bytes it came with."""

    raw: bytes

    def __new__(cls, raw: bytes) -> RawHeaderKey:
        key = super().__new__(cls, raw.decode("utf-8", "backslashreplace"))
        key.raw = bytes(raw)
        return key

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw

    def __reduce__(self) -> tuple[type[RawHeaderKey], tuple[bytes]]:
        return (RawHeaderKey, (self.raw,))


def header_key(raw: bytes) -> str:
    """A header key from its bytes: a plain ``str`` when they are UTF-8, else a :class:`RawHeaderKey`."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return RawHeaderKey(raw)


def header_key_bytes(name: str) -> bytes:
    """The bytes a header key is written as (a RawHeaderKey's own bytes)."""
    return name.encode("utf-8")


def odd_header_keys(headers: Sequence[tuple[str, bytes | None]] | None) -> list[RawHeaderKey]:
    """The header keys that are not UTF-8."""
    return [name for name, _ in headers or () if type(name) is RawHeaderKey]


class UndecodableBatch(bytes):
    """A compressed batch's records the client could not read: the compressed bytes as they came,
    the offsets they hold, the codec and why it failed."""

    first_offset: int
    last_offset: int
    codec: str
    error: BaseException

    def __new__(
        cls, payload: bytes, *, first_offset: int, last_offset: int, codec: str, error: BaseException
    ) -> UndecodableBatch:
        batch = super().__new__(cls, payload)
        batch.first_offset = first_offset
        batch.last_offset = last_offset
        batch.codec = codec
        batch.error = error
        return batch
