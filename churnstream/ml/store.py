"""The model store: every trained version on disk, and which one is in use.

Layout (``MODEL_STORE``, default ``models/``)::

    models/<version>/model.pkl          the joblib pickle
    models/<version>/model_card.json    its card: sha256, library versions, threshold, metrics, ...
    models/<version>/holdout.json       its test rows: keys, labels, probabilities (report, compare)
    models/current                      one line: the version in use
    models/history                      one version per line, each promotion appended (for rollback)

A version folder is written whole or not at all (a hidden temp folder renamed into place) and never
changed afterwards; folders are FOLDER_MODE and files FILE_MODE whatever the umask, so a consumer
running as another user reads them and none can change them. ``current`` is replaced atomically
(temp file + ``os.replace``), so a consumer that reads it between batches sees the old name or the
new one, never half of one. Writers (promote, rollback, add, migrate) hold an flock on
``<store>/.lock``, so two of them never interleave their writes (promote and rollback also run
their check of the version under it); readers take no lock.

This module reads files and JSON only: no scikit-learn import, so checking ``current_marker()``
between batches costs one ``stat``. Loading and verifying a version is churnstream.ml.model's job.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from churnstream.errors import ConfigError, ModelIntegrityError, ModelMissing
from churnstream.files import json_bytes, sha256_file
from churnstream.settings import ENV_MODEL_PATH, ENV_MODEL_STORE, Settings

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pkl"
CARD_FILE = "model_card.json"
HOLDOUT_FILE = "holdout.json"  # the test rows' keys, labels and probabilities (churn-model report and compare)
CURRENT_FILE = "current"
HISTORY_FILE = "history"
LOCK_FILE = ".lock"
# The store's folders and files, whatever the writer's umask: written by the trainer, read by consumers
# (maybe another user), writable by no one else (a model file runs code when it is loaded).
FILE_MODE = 0o644
FOLDER_MODE = 0o755
# The single-file layout of 0.2 and early 0.3.0: moved into a version folder by migrate_legacy.
LEGACY_MODEL_FILE = "sklearn_pipeline.pkl"
LEGACY_CARD_FILE = CARD_FILE

STORE_HINT = "run 'make model' (or: python -m churnstream.train --promote) to train one"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def valid_version_name(name: str) -> bool:
    """A folder name that cannot escape the store: letters, digits, '.', '_', '-', not hidden."""
    return bool(_VERSION_RE.match(name))


@dataclass(frozen=True)
class ModelRef:
    """Which model files to load, and whether they follow the store (pinned=False) or MODEL_PATH."""

    version: str
    model_path: Path
    card_path: Path
    pinned: bool

    @property
    def paths(self) -> tuple[Path, Path]:
        """(model file, card file), as ModelStore.paths returns them: ``load_model(*ref.paths)``."""
        return (self.model_path, self.card_path)


@dataclass(frozen=True)
class ModelStore:
    root: Path

    # ------------------------------------------------------------------ reading

    def versions(self) -> list[str]:
        """Every version folder, oldest first (by the card's ``trained_at``; a card without one, such as
        a migrated legacy card, counts as oldest; ties by name)."""
        if not self.root.is_dir():
            return []
        names = [p.name for p in self.root.iterdir() if p.is_dir() and valid_version_name(p.name)]
        return sorted(names, key=lambda name: (str(self._card_or_empty(name).get("trained_at") or ""), name))

    def paths(self, version: str) -> tuple[Path, Path]:
        """(model file, card file) of ``version``; ConfigError when the store has no such version.

        The files themselves may still be missing or altered: verify_model says so when loading.
        """
        folder = self.root / version
        if not valid_version_name(version) or not folder.is_dir():
            known = self.versions()
            listed = ", ".join(known) if known else f"none; {STORE_HINT}"
            raise ConfigError(f"model version {version!r} is not in the store {self.root} (known: {listed})")
        return folder / MODEL_FILE, folder / CARD_FILE

    def ref(self, version: str) -> ModelRef:
        """A version of the store as a ModelRef (ConfigError when unknown)."""
        model_path, card_path = self.paths(version)
        return ModelRef(version=version, model_path=model_path, card_path=card_path, pinned=False)

    def card(self, version: str) -> dict[str, Any]:
        """The version's card as JSON, unchecked (listing, sorting). ModelMissing/ModelIntegrityError
        when it is absent or not a JSON object; load_model does the real checks."""
        _, card_path = self.paths(version)
        return read_card_json(card_path)

    def current(self) -> str | None:
        """The version named by ``<store>/current``; None when there is no such file (or it is empty)."""
        try:
            text = (self.root / CURRENT_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return text.strip() or None

    def current_marker(self) -> tuple[int, int] | None:
        """(st_mtime_ns, st_ino) of ``<store>/current``, None when absent: one ``stat`` tells a consumer
        between batches whether a promotion happened. Each promotion writes a new file while the old
        one still exists, so its inode differs from the one it replaces; only two promotions within
        one filesystem timestamp tick (milliseconds) could bring back a marker seen before, by
        reusing its freed inode."""
        try:
            stat = (self.root / CURRENT_FILE).stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_ino)

    def require_current(self) -> str:
        """The current version; ModelMissing (one line, with the command that makes one) when there is none."""
        current = self.current()
        if current is None:
            raise ModelMissing(
                f"the model store {self.root} has no current version ({ENV_MODEL_STORE}; no {CURRENT_FILE} file); "
                f"{STORE_HINT}"
            )
        return current

    def files_marker(self, version: str) -> tuple[object, ...]:
        """What ``stat`` says of the version's folder, model file and card (inode, size, mtime, ctime, mode,
        owner), or the error's name. A consumer that refused the version loads it again only when this
        changes (files replaced, repaired, made readable): three ``stat`` calls, no read. Never raises."""
        if not valid_version_name(version):
            return ("not a version name",)
        folder = self.root / version
        marks: list[object] = []
        for path in (folder, folder / MODEL_FILE, folder / CARD_FILE):
            try:
                stat = path.stat()
            except OSError as exc:
                marks.append(type(exc).__name__)
            else:
                fields = (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_mode)
                marks.append((*fields, stat.st_uid, stat.st_gid))
        return tuple(marks)

    def history(self) -> list[str]:
        """The promotions, oldest first (the last one is normally the current version)."""
        try:
            text = (self.root / HISTORY_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [line.strip() for line in text.splitlines() if valid_version_name(line.strip())]

    def fallbacks(self, current: str) -> list[str]:
        """The versions to serve when ``current`` cannot be loaded: the earlier promotions of the history,
        newest first, each once (a rollback pops what it leaves, so these are the versions that led here)."""
        seen = {current}
        order: list[str] = []
        for version in reversed(self.history()):
            if version not in seen:
                seen.add(version)
                order.append(version)
        return order

    def previous(self) -> str | None:
        """The version ``rollback()`` would make current, or None when there is none."""
        stack = self._rollback_stack()
        return stack[-1] if stack else None

    # ------------------------------------------------------------------ writing

    def promote(self, version: str, check: Callable[[str], object] | None = None) -> str | None:
        """Make ``version`` current (atomically); returns the version current before (None if none).

        ConfigError when the store has no such version. Promoting the current version changes nothing
        (it is checked all the same). ``check(version)`` (load and verify it; raise to refuse) runs
        under the store's lock, so no other writer changes the store between the check and the promotion.
        ``current`` is written before ``history``: a crash in between leaves a history whose last
        entry is the previous version, which is what rollback then returns to.
        """
        self.paths(version)
        with self._locked():
            if check is not None:
                check(version)
            previous = self.current()
            if previous == version:
                return previous
            _write_atomically(self.root / CURRENT_FILE, f"{version}\n".encode())
            history = self.history()
            if previous is not None and (not history or history[-1] != previous):
                history.append(previous)  # current had been set by hand: keep it reachable by rollback
            self._write_history([*history, version])
        logger.info("promoted model %s (was %s)", version, previous or "none")
        return previous

    def rollback(self, check: Callable[[str], object] | None = None) -> str:
        """Make current the version that was current before the current one; returns it.

        Each rollback steps one promotion further back (the history is a stack: rolling back pops
        the current version off it). ConfigError when there is no earlier version, or when that
        version's folder is gone. ``check(target)`` runs under the store's lock, after the target
        is chosen: the version made current is the one checked, whatever other writers do.
        ``history`` is written before ``current``: a crash in between leaves the stack ending with
        the target, and a second rollback returns to it.
        """
        with self._locked():
            stack = self._rollback_stack()
            if not stack:
                raise ConfigError(
                    f"no earlier model version to roll back to in {self.root} "
                    f"(current: {self.current() or 'none'}; history: {', '.join(self.history()) or 'empty'})"
                )
            target = stack[-1]
            self.paths(target)
            if check is not None:
                check(target)
            current = self.current()
            self._write_history(stack)
            _write_atomically(self.root / CURRENT_FILE, f"{target}\n".encode())
        logger.info("rolled back model %s -> %s", current, target)
        return target

    def add(self, model_bytes: bytes, card: dict[str, Any], holdout: dict[str, Any] | None = None) -> str:
        """Write ``<store>/<version>/`` (model.pkl, model_card.json, and holdout.json when given) whole, and
        return the version
        (the card's ``model_version``). A version that exists is left alone: a version names the fitted
        model, its options and threshold (churnstream.ml.train.version_name), so the same version is
        the same model.

        ModelIntegrityError when the card's sha256 is not the bytes'; ConfigError for a version name
        that is not a plain folder name.
        """
        version = str(card.get("model_version", ""))
        if not valid_version_name(version):
            raise ConfigError(f"model_version {version!r} is not valid: 1-128 characters of A-Z a-z 0-9 . _ -")
        digest = hashlib.sha256(model_bytes).hexdigest()
        if card.get("model_sha256") != digest:
            raise ModelIntegrityError(
                f"the card of {version} says sha256 {str(card.get('model_sha256'))[:16]}..., the model bytes "
                f"are {digest[:16]}...; not adding it"
            )
        card = {**card, "model_file": MODEL_FILE}
        target = self.root / version
        with self._locked():
            if target.exists():
                logger.info("model %s is already in the store %s; left as it is", version, self.root)
                return version
            files = {MODEL_FILE: model_bytes, CARD_FILE: json_bytes(card)}
            if holdout is not None:
                files[HOLDOUT_FILE] = json_bytes(holdout)
            self._write_version_folder(version, files)
        logger.info("added model %s to %s", version, self.root)
        return version

    def migrate_legacy(self) -> str | None:
        """Move the single-file layout (``<store>/sklearn_pipeline.pkl`` and ``<store>/model_card.json``)
        into a version folder; make it current when nothing is. Returns its version, or None when
        there is no legacy model file.

        The version is the card's ``model_version`` (``legacy-<sha12>`` when the card is missing or
        unreadable, or when a different model already has that name: the card then says so, its
        ``model_version`` the folder's and ``migrated_from_version`` the old name, since a consumer
        refuses a card that names another version than its folder). The files are copied into place
        first and removed after, so a crash leaves them where they were or both in place (the next
        run then only removes the old ones). The model is not verified here: a legacy model that
        fails its checks is moved all the same, and loading it says why.
        """
        legacy_model, legacy_card = self.root / LEGACY_MODEL_FILE, self.root / LEGACY_CARD_FILE
        if not legacy_model.is_file():
            return None
        with self._locked():
            digest = sha256_file(legacy_model)
            try:
                card: dict[str, Any] | None = read_card_json(legacy_card)
            except (ModelMissing, ModelIntegrityError) as exc:
                logger.warning("legacy model card unusable (%s); migrating the model without it", exc)
                card = None
            named = str(card.get("model_version", "")) if card else ""
            candidates = [named] if valid_version_name(named) else []
            candidates.append(f"legacy-{digest[:12]}")
            version = next((v for v in candidates if not (self.root / v).exists() or self._holds(v, digest)), None)
            if version is None:
                raise ConfigError(
                    f"cannot migrate {legacy_model}: versions {', '.join(candidates)} exist with other models"
                )
            if not (self.root / version).exists():
                files = {MODEL_FILE: legacy_model.read_bytes()}
                if card is not None:
                    files[CARD_FILE] = json_bytes(_migrated_card(card, version))
                self._write_version_folder(version, files)
            legacy_model.unlink()
            if card is not None:
                legacy_card.unlink(missing_ok=True)
        logger.info("migrated %s into the store as %s", legacy_model, version)
        if self.current() is None:
            self.promote(version)
        return version

    # ------------------------------------------------------------------ internals

    def _card_or_empty(self, version: str) -> dict[str, Any]:
        try:
            return read_card_json(self.root / version / CARD_FILE)
        except (ModelMissing, ModelIntegrityError):
            return {}

    def _holds(self, version: str, digest: str) -> bool:
        model = self.root / version / MODEL_FILE
        return model.is_file() and sha256_file(model) == digest

    def _rollback_stack(self) -> list[str]:
        """The history with the current version popped off: its last entry is the rollback target."""
        stack = self.history()
        current = self.current()
        if current is None:
            return stack
        if not stack or stack[-1] != current:
            stack.append(current)  # current set by hand (or a crash mid-promote): roll back from it
        while stack and stack[-1] == current:
            stack.pop()
        return stack

    def _write_history(self, versions: list[str]) -> None:
        _write_atomically(self.root / HISTORY_FILE, "".join(f"{v}\n" for v in versions).encode())

    def _write_version_folder(self, version: str, files: dict[str, bytes]) -> None:
        """A hidden temp folder (FOLDER_MODE), each file (FILE_MODE) fsynced, the temp folder fsynced (its
        entries durable before it appears), renamed into place, the store folder fsynced."""
        for stale in self.root.glob(f".{version}.*.tmp"):  # a writer killed mid-add (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        temp = self.root / f".{version}.{uuid.uuid4().hex[:8]}.tmp"
        temp.mkdir()
        try:
            temp.chmod(FOLDER_MODE)  # mkdir's mode is cut by the umask: 0700 under 077, 0775 under 002
            for name, payload in files.items():
                _write_synced(os.open(temp / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), payload)
            _fsync_folder(temp)
            temp.rename(self.root / version)
        except BaseException:
            shutil.rmtree(temp, ignore_errors=True)
            raise
        _fsync_folder(self.root)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive flock on ``<store>/.lock`` (released by the kernel if the process dies)."""
        try:
            self.root.mkdir(parents=True)
        except FileExistsError:
            pass  # an existing store keeps the mode its owner gave it
        else:
            self.root.chmod(FOLDER_MODE)  # readable by consumers whatever this process's umask
        with (self.root / LOCK_FILE).open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_synced(fd: int, payload: bytes) -> None:
    """Write, fsync and close ``fd``, made FILE_MODE first (os.open's and mkstemp's modes obey the umask)."""
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), FILE_MODE)
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, payload: bytes) -> None:
    """As files.write_bytes_atomically (temp file, fsync, os.replace, fsync the folder), but readable by
    all (FILE_MODE) like the version folders: a consumer may run as another user than the trainer."""
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        _write_synced(fd, payload)
        Path(temp_name).replace(path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _migrated_card(card: dict[str, Any], version: str) -> dict[str, Any]:
    """A legacy card as its version folder holds it: its model file's new name, and the folder's version."""
    migrated = {**card, "model_file": MODEL_FILE, "model_version": version}
    if card.get("model_version") not in (None, version):
        migrated["migrated_from_version"] = card["model_version"]
    return migrated


def read_card_json(card_path: Path) -> dict[str, Any]:
    """A card file as a dict: ModelMissing when absent, ModelIntegrityError when not a JSON object."""
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelMissing(f"model card {card_path} is missing") from None
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(f"model card {card_path} is unreadable ({exc})") from None
    if not isinstance(card, dict):
        raise ModelIntegrityError(f"model card {card_path} is not a JSON object")
    return card


def resolve_model(settings: Settings) -> ModelRef:
    """The model to load: the file MODEL_PATH pins (its card beside it), else the store's current version.

    ModelMissing (one line, with the command that fixes it) when the store has no current version
    or its current version's folder is gone. The files are not checked here: load_model does that.
    The consumer resolves only a pinned model with it: it follows the store with
    churnstream.consumer.models.follow_store, which falls back to an earlier version.
    """
    if settings.model_path is not None:
        model_path = settings.model_path
        card_path = model_path.parent / CARD_FILE
        if not model_path.is_file() and model_path.name == LEGACY_MODEL_FILE:
            raise ModelMissing(
                f"{ENV_MODEL_PATH}={model_path} pins a model file that does not exist; models now live in the "
                f"store ({settings.model_store}/<version>/): leave {ENV_MODEL_PATH} empty to follow its current "
                f"version ('make model' migrates and trains), or pin <store>/<version>/{MODEL_FILE}"
            )
        try:
            version = str(read_card_json(card_path).get("model_version") or model_path.parent.name)
        except (ModelMissing, ModelIntegrityError):
            version = model_path.parent.name  # load_model will refuse it and say why
        return ModelRef(version=version, model_path=model_path, card_path=card_path, pinned=True)
    store = ModelStore(settings.model_store)
    current = store.require_current()
    try:
        return store.ref(current)
    except ConfigError as exc:
        raise ModelMissing(f"{store.root / CURRENT_FILE} names a version that is gone: {exc}") from None
