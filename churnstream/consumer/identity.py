"""Who a consumer process is to the broker: its static member id and its transactional id."""

from __future__ import annotations

import fcntl
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from churnstream.errors import PipelineError
from churnstream.settings import PROJECT_ROOT

SLOT_DIR = PROJECT_ROOT / ".run" / "consumer-slots"
MAX_SLOTS = 256


@dataclass
class ConsumerIdentity:
    """Who this process is to the broker: stable per slot, so a restart fences its dead predecessor.

    The transactional id is reused by whichever process next takes the slot; its
    ``init_transactions()`` aborts the transaction a killed predecessor left open, instead of
    read_committed readers waiting for the transaction timeout.
    """

    instance_id: str
    transactional_id: str
    slot: int | None
    lock_path: Path | None = None
    _lock_fd: int | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock; the kernel does it on kill -9 too
            self._lock_fd = None


def _host_name() -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:80] or "host"


def claim_identity(group: str, instance_id: str | None = None, slot_dir: Path = SLOT_DIR) -> ConsumerIdentity:
    """The lowest free slot on this host for ``group`` (an flock held for the process's life).

    With an explicit ``instance_id`` no slot is taken: whoever assigns ids owns their uniqueness
    (two processes with one id fence each other, and the older one stops with an error).
    """
    if instance_id is not None:
        return ConsumerIdentity(instance_id, f"{group}-{instance_id}", slot=None)
    slot_dir.mkdir(parents=True, exist_ok=True)
    host = _host_name()
    for slot in range(MAX_SLOTS):
        path = slot_dir / f"{group}-{slot}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        instance = f"{host}-{slot}"
        return ConsumerIdentity(instance, f"{group}-{instance}", slot=slot, lock_path=path, _lock_fd=fd)
    raise PipelineError(f"all {MAX_SLOTS} consumer slots for group {group} on this host are taken (see {slot_dir})")
