"""The batch producer's resume checkpoint: one small JSON file per topic, written atomically.

Why a file and not consumer offsets: the producer has no group and the topic may hold other
loads, so only the producer itself can say "rows up to here of *this* load were acknowledged".
A write is temp file + fsync + rename + fsync of the folder (files.write_bytes_atomically), so
after ``kill -9`` or a power cut the file is either the previous checkpoint or the new one, never half of each.

The decision "start a new load, resume this one, or refuse" is :func:`plan_load`, a pure
function, so every conflict and its message is unit-tested without Kafka.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from churnstream.errors import CheckpointConflict
from churnstream.files import write_json_atomically

CHECKPOINT_VERSION = 1


class CheckpointCorrupt(CheckpointConflict):
    """The checkpoint file exists but cannot be read as a checkpoint (same exit code, 10)."""


@dataclass(frozen=True)
class Checkpoint:
    """Progress of one batch load to one topic.

    ``next_row`` is the first position not yet acknowledged, counted over the whole load:
    position ``p`` is row ``p % rows_per_pass`` of pass ``p // rows_per_pass``. Everything
    before it is on the topic; nothing after it is known to be.
    """

    topic: str
    data_path: str
    data_sha256: str
    load_id: str
    repeat: int
    rows_per_pass: int
    total_rows: int
    next_row: int
    completed: bool
    updated_ts: str
    limit: int | None = None
    schema_sha256: str = ""  # the event schema the rows were typed by ("" in checkpoints written before 0.4)
    version: int = CHECKPOINT_VERSION

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        # version first, so a person reading the file sees the format before the fields
        return {"version": data.pop("version"), **data}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: Path) -> Checkpoint:
        if not isinstance(data, Mapping):
            raise _corrupt(path, "it is not a JSON object")
        if data.get("version") != CHECKPOINT_VERSION:
            raise _corrupt(path, f"its version is {data.get('version')!r}, this producer reads {CHECKPOINT_VERSION}")
        types: dict[str, tuple[type, ...]] = {
            "topic": (str,),
            "data_path": (str,),
            "data_sha256": (str,),
            "load_id": (str,),
            "repeat": (int,),
            "rows_per_pass": (int,),
            "total_rows": (int,),
            "next_row": (int,),
            "completed": (bool,),
            "updated_ts": (str,),
            "limit": (int, type(None)),
            "schema_sha256": (str,),
        }
        optional = {"limit": None, "schema_sha256": ""}
        for name, allowed in types.items():
            value = data.get(name, optional.get(name))
            if name not in data and name not in optional:
                raise _corrupt(path, f"the field {name!r} is missing")
            # bool is an int in Python; a count that is true/false is still wrong
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                raise _corrupt(path, f"the field {name!r} is {value!r}")
        checkpoint = cls(**{name: data.get(name, optional.get(name)) for name in types})
        if not 0 <= checkpoint.next_row <= checkpoint.total_rows:
            raise _corrupt(path, f"next_row {checkpoint.next_row} is outside 0..{checkpoint.total_rows}")
        if checkpoint.total_rows != checkpoint.rows_per_pass * checkpoint.repeat:
            raise _corrupt(path, "total_rows is not rows_per_pass * repeat")
        return checkpoint

    def advanced(self, next_row: int, updated_ts: str) -> Checkpoint:
        return replace(self, next_row=next_row, completed=next_row >= self.total_rows, updated_ts=updated_ts)

    def describe(self) -> str:
        return f"load {self.load_id}: {self.next_row:,} of {self.total_rows:,} rows acknowledged"


def _corrupt(path: Path, what: str) -> CheckpointCorrupt:
    return CheckpointCorrupt(
        f"checkpoint {path} is unreadable: {what}; delete it, or pass --restart to start the load over"
    )


def default_checkpoint_path(checkpoint_dir: Path, topic: str) -> Path:
    """One file per topic, so loads to different topics never share a checkpoint."""
    return checkpoint_dir / f"{topic}.json"


def new_load_id() -> str:
    """Short and unique enough to tell loads apart in event ids (12 hex digits, 48 bits)."""
    return uuid.uuid4().hex[:12]


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``, or None when there is none. Raises CheckpointCorrupt."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _corrupt(path, str(exc)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _corrupt(path, f"it is not valid JSON ({exc})") from None
    return Checkpoint.from_json(data, path)


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    write_json_atomically(path, checkpoint.to_json())


@contextlib.contextmanager
def exclusive_lock(checkpoint_path: Path) -> Iterator[None]:
    """Hold ``<checkpoint>.lock`` so two batch loads never write one checkpoint at once.

    An flock is released by the kernel when the process dies, even by ``kill -9``, so a
    crashed run never leaves a stale lock behind.
    """
    lock_path = checkpoint_path.with_name(checkpoint_path.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CheckpointConflict(
                f"another batch producer is loading with checkpoint {checkpoint_path} (lock {lock_path} is held); "
                "wait for it to finish or stop it"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@dataclass(frozen=True)
class LoadRequest:
    """What this run was asked to load, to compare with what the checkpoint recorded."""

    topic: str
    data_path: str
    data_sha256: str
    repeat: int | None  # None: not given on the command line (a resume takes the checkpoint's)
    limit: int | None
    rows_per_pass: int
    schema_sha256: str = ""


def plan_load(
    existing: Checkpoint | None,
    request: LoadRequest,
    *,
    resume: bool,
    restart: bool,
    checkpoint_path: Path,
    load_id: str,
    now_ts: str,
) -> Checkpoint:
    """Decide where this run starts. Pure: returns the checkpoint to start from, or raises.

    - no checkpoint, or a completed one: a new load (``--resume`` then is an error: nothing to resume);
    - an unfinished one: ``--resume`` continues it, ``--restart`` starts a new load, neither refuses;
    - ``--resume`` of a checkpoint for another topic, data file or load shape is refused.
    """
    if resume and restart:
        raise CheckpointConflict("--resume and --restart contradict each other; pass one of them")
    unfinished = existing is not None and not existing.completed
    if resume:
        if existing is None:
            raise CheckpointConflict(
                f"nothing to resume: there is no checkpoint {checkpoint_path} for topic {request.topic}; "
                "run without --resume to start a load"
            )
        if existing.completed:
            raise CheckpointConflict(
                f"nothing to resume: the checkpoint {checkpoint_path} says {existing.describe()} (complete); "
                "run without --resume to start a new load"
            )
        _check_resumable(existing, request, checkpoint_path)
        return existing
    if unfinished and not restart:
        assert existing is not None
        raise CheckpointConflict(
            f"an unfinished batch load to topic {existing.topic} exists ({existing.describe()}, "
            f"checkpoint {checkpoint_path}); pass --resume to continue it, "
            "or --restart to start over (rows already sent will then be sent again)"
        )
    repeat = request.repeat or 1
    return Checkpoint(
        topic=request.topic,
        data_path=request.data_path,
        data_sha256=request.data_sha256,
        load_id=load_id,
        repeat=repeat,
        rows_per_pass=request.rows_per_pass,
        total_rows=request.rows_per_pass * repeat,
        next_row=0,
        completed=False,
        updated_ts=now_ts,
        limit=request.limit,
        schema_sha256=request.schema_sha256,
    )


def _check_resumable(existing: Checkpoint, request: LoadRequest, checkpoint_path: Path) -> None:
    how = "resume with the same settings, or pass --restart to start a new load"
    if existing.topic != request.topic:
        raise CheckpointConflict(
            f"checkpoint {checkpoint_path} belongs to topic {existing.topic}, not {request.topic}; {how}"
        )
    if existing.data_sha256 != request.data_sha256:
        raise CheckpointConflict(
            f"checkpoint {checkpoint_path} was written for data file {existing.data_path} "
            f"(sha256 {existing.data_sha256[:12]}...), but {request.data_path} has sha256 "
            f"{request.data_sha256[:12]}...; {how}"
        )
    if existing.schema_sha256 and existing.schema_sha256 != request.schema_sha256:
        raise CheckpointConflict(
            f"checkpoint {checkpoint_path} was written with another event schema (sha256 "
            f"{existing.schema_sha256[:12]}...) than this run's ({request.schema_sha256[:12]}...); {how}"
        )
    if request.repeat is not None and request.repeat != existing.repeat:
        raise CheckpointConflict(
            f"checkpoint {checkpoint_path} is a load with --repeat {existing.repeat}, not {request.repeat}; "
            "resume without --repeat (or with the same value), or pass --restart"
        )
    if request.limit is not None and request.limit != existing.limit:
        raise CheckpointConflict(
            f"checkpoint {checkpoint_path} is a load with --limit {existing.limit}, not {request.limit}; "
            "resume without --limit (or with the same value), or pass --restart"
        )
    if request.rows_per_pass != existing.rows_per_pass:
        raise CheckpointConflict(
            f"checkpoint {checkpoint_path} counts {existing.rows_per_pass} rows per pass, "
            f"this run {request.rows_per_pass}; {how}"
        )
