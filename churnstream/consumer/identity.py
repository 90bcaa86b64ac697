"""Who a consumer process is to the broker: its static member id and its transactional id."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from churnstream.errors import PipelineError
from churnstream.settings import PROJECT_ROOT

SLOT_DIR = PROJECT_ROOT / ".run" / "consumer-slots"
MAX_SLOTS = 256
# Between the group and the instance id in a transactional id. Neither may contain it (both are
# [A-Za-z0-9._-]), so "<group>~<instance>" never reads two ways: with "-", group "a-b" on host "c"
# and group "a" on host "b-c" both gave "a-b-c-0", and fenced each other in a loop.
TRANSACTIONAL_ID_SEPARATOR = "~"
HOST_PART_MAX = 40


def transactional_id(group: str, instance_id: str) -> str:
    return f"{group}{TRANSACTIONAL_ID_SEPARATOR}{instance_id}"


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


def host_part(hostname: str | None = None) -> str:
    """The host's name as an id: kept as it is when it is short and plain, else shortened or cleaned
    and followed by a hash of the full name, so two hosts that differ only past the cut (or only in
    a character replaced) never get one id."""
    name = socket.gethostname() if hostname is None else hostname
    plain = re.sub(r"[^A-Za-z0-9._-]", "-", name) or "host"
    if plain == name and len(name) <= HOST_PART_MAX:
        return name
    return f"{plain[:HOST_PART_MAX]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def claim_identity(group: str, instance_id: str | None = None, slot_dir: Path = SLOT_DIR) -> ConsumerIdentity:
    """The lowest free slot on this host for ``group`` (an flock held for the process's life).

    With an explicit ``instance_id`` (``--instance-id`` or CONSUMER_INSTANCE_ID) no slot is taken:
    whoever assigns ids owns their uniqueness (two processes with one id fence each other, and the
    older one stops with an error). Containers need one: each has its own filesystem, so the slot
    locks cannot see each other, and replicas often share a host name; a pod name is the usual id.
    """
    if instance_id is not None:
        return ConsumerIdentity(instance_id, transactional_id(group, instance_id), slot=None)
    slot_dir.mkdir(parents=True, exist_ok=True)
    host = host_part()
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
        return ConsumerIdentity(instance, transactional_id(group, instance), slot=slot, lock_path=path, _lock_fd=fd)
    raise PipelineError(f"all {MAX_SLOTS} consumer slots for group {group} on this host are taken (see {slot_dir})")
