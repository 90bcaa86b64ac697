"""Files the pipeline writes: always whole or not at all, and their checksums.

Every file a run writes (the producer's checkpoint, a summary, the results JSON, the model and
its card, the data set) goes through :func:`write_bytes_atomically`, so a reader, a crash or a
power cut never sees half of one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

TEMP_SUFFIX = ".tmp"


def write_bytes_atomically(path: Path, payload: bytes) -> None:
    """Temp file in the same folder, fsync, rename over ``path``, fsync the folder.

    The rename is atomic on POSIX; the first fsync makes the new content durable before it
    becomes visible, the second makes the rename itself durable. A failure leaves the old file
    whole and no temp file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by this user only (mode 0600 from the start: never world-readable)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_bytes(data: Mapping[str, Any] | list[Any]) -> bytes:
    """Indented JSON with a final newline, as every JSON file of the project is written."""
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=_default) + b"\n"


def write_json_atomically(path: Path, data: Mapping[str, Any] | list[Any]) -> None:
    write_bytes_atomically(path, json_bytes(data))


def remove_stale_temp_files(path: Path) -> int:
    """Delete temp files a killed writer of ``path`` left behind. Call only while holding its lock."""
    removed = 0
    for stale in path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)
        removed += 1
    return removed


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
