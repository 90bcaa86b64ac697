"""Which model scores the next batch: the store's current version, swapped in between batches.

At start, :func:`follow_store` loads the store's current version. When that version cannot be
loaded (anything at all goes wrong: a file missing, altered or unreadable, a malformed card,
another scikit-learn, canaries off), the consumer serves the newest earlier version of the
promotion history that loads instead (a fallback), and says so in a warning line naming both
versions and why. Only when no version loads does the start fail (ModelMissing 5,
ModelIntegrityError 6).

Then the loop asks :meth:`ModelWatcher.check` once per turn, before it polls. It costs one ``stat``
of ``models/current`` (the store switches it by an atomic rename, so a new version means a new
inode and mtime). When it changed and names another version, that version is loaded and verified
before it serves; one that fails is refused with one warning line and
``churn_model_load_failures_total``, and the serving model keeps serving (it is loaded and
verified already). While the store's current version is refused, ``churn_model_fallback`` is 1,
and each turn also ``stat``s the refused version's folder and files (three more calls): when they
change (replaced, repaired, made readable), it is loaded again. A batch is scored by one model,
whole: every output carries the version that scored it, and an aborted batch is scored again by
whichever model serves then. A pinned model (MODEL_PATH) is never swapped and has no fallback:
this module is not used for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from churnstream.consumer.scoring import Scorer
from churnstream.errors import ConfigError, ModelIntegrityError, ModelMissing, PipelineError

logger = logging.getLogger(__name__)

_UNREAD = object()


class Store(Protocol):
    """What the watcher needs of churnstream.ml.store.ModelStore."""

    def current_marker(self) -> tuple[int, int] | None: ...

    def current(self) -> str | None: ...

    def require_current(self) -> str: ...

    def paths(self, version: str) -> tuple[Path, Path]: ...

    def files_marker(self, version: str) -> tuple[object, ...]: ...

    def fallbacks(self, current: str) -> list[str]: ...


Loader = Callable[[Path, Path], Scorer]  # (model file, card file) -> a verified model
OnRefused = Callable[[str, str], None]  # (version, why)
OnFallback = Callable[[str | None], None]  # the store's current version while it is refused, else None


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"


class ModelWatcher:
    def __init__(
        self,
        store: Store,
        serving: Scorer,
        load: Loader,
        *,
        on_swap: Callable[[Scorer], None] | None = None,
        on_refused: OnRefused | None = None,
        on_fallback: OnFallback | None = None,
        marker: object = _UNREAD,
    ) -> None:
        self.store = store
        self.model = serving
        self._load = load
        self._on_swap = on_swap
        self._on_refused = on_refused
        self._on_fallback = on_fallback
        # Unread by default: the first check reads current. follow_store passes the marker it saw
        # before reading current at start, so a promotion made while loading is not missed.
        self._marker: object = marker
        self._read_failed = False
        # The store's current version while it is refused, and its files' marker when it was tried.
        self._refused: tuple[str, tuple[object, ...]] | None = None
        self.swaps: list[tuple[str, str]] = []  # (from, to), for the summary
        self.refused: list[str] = []

    @property
    def fallback_from(self) -> str | None:
        """The store's current version while it is refused and an earlier one serves, else None."""
        return self._refused[0] if self._refused is not None else None

    def check(self) -> Scorer:
        """The model for the next batch: the serving one, or the store's current one once verified."""
        try:
            marker = self.store.current_marker()
            if marker != self._marker:
                version = self.store.current()
            elif self._refused is not None and self.store.files_marker(self._refused[0]) != self._refused[1]:
                version = self._refused[0]
                logger.info("model %s changed on disk since it was refused: loading it again", version)
            else:
                return self.model
        except (OSError, ValueError) as exc:  # the store unreadable (permissions, NFS, an edited file)
            if not self._read_failed:
                logger.warning("the model store cannot be read (%s: %s); %s keeps serving", type(exc).__name__, exc,
                               self.model.version)  # fmt: skip
            self._read_failed = True
            return self.model
        self._read_failed = False
        self._marker = marker
        if version is None or version == self.model.version:
            self._serving_current()
            return self.model
        files = self.store.files_marker(version)  # before loading: a change during the load is seen next turn
        try:
            candidate = _load_version(self.store, self._load, version)
        except Exception as exc:  # anything that stops a version loading is a refusal, never the consumer's end
            why = _reason(exc)
            logger.warning("model %s refused, %s keeps serving: %s", version, self.model.version, why)
            self.refuse(version, why, files)
            return self.model
        logger.info("model %s promoted: scoring with it from this batch on (was %s)", version, self.model.version)
        old_schema, new_schema = self.model.contract.schema, candidate.contract.schema
        if old_schema.sha256 != new_schema.sha256:
            logger.warning(
                "model %s carries another event schema (%s, sha256 %s; was %s, %s): events are validated against it "
                "from this batch on, and events of the old shape become dead letters (replayable)",
                version, new_schema.title, new_schema.sha256[:12], old_schema.title, old_schema.sha256[:12],
            )  # fmt: skip
        self.swaps.append((self.model.version, version))
        self.model = candidate
        self._serving_current()
        if self._on_swap is not None:
            self._on_swap(candidate)
        return candidate

    def refuse(self, version: str, reason: str, files: tuple[object, ...] | None) -> None:
        """Count a refusal (the caller logs why); with ``files``, ``version`` is the store's current one and
        the serving model is a fallback until it loads (retried when its files' marker changes)."""
        self.refused.append(version)
        if self._on_refused is not None:
            self._on_refused(version, reason)
        if files is not None:
            self._refused = (version, files)
            if self._on_fallback is not None:
                self._on_fallback(version)

    def _serving_current(self) -> None:
        if self._refused is None:
            return
        self._refused = None
        if self._on_fallback is not None:
            self._on_fallback(None)


def follow_store(
    store: Store,
    load: Loader,
    *,
    on_swap: Callable[[Scorer], None] | None = None,
    on_refused: OnRefused | None = None,
    on_fallback: OnFallback | None = None,
) -> ModelWatcher:
    """Start-up: a watcher serving the store's current version, else the newest earlier version of the
    history that loads (a fallback, said in one warning line and ``on_fallback``, retried by ``check``).

    ModelMissing when the store has no current version; when no version loads, the current version's
    error (ModelMissing 5 for files or a folder that are gone, else ModelIntegrityError 6) naming the
    versions tried.
    """
    marker = store.current_marker()  # before current: a promotion from here on is seen by the first check
    current = store.require_current()
    files = store.files_marker(current)
    refusals: list[tuple[str, str]] = []
    serving: Scorer | None = None
    current_failed: Exception | None = None
    for version in [current, *store.fallbacks(current)]:
        try:
            serving = _load_version(store, load, version)
            break
        except Exception as exc:  # any failure is a refusal; the next earlier version is tried
            refusals.append((version, _reason(exc)))
            if version == current:
                current_failed = exc
            else:
                logger.warning("model %s (an earlier version of the history) refused too: %s", version, _reason(exc))
    if serving is None:
        tried = ", ".join(version for version, _ in refusals)
        message = f"no version of the model store loads (tried {tried}); the current one: {refusals[0][1]}"
        missing = isinstance(current_failed, ModelMissing | ConfigError)  # ConfigError: its folder is gone
        raise (ModelMissing if missing else ModelIntegrityError)(message)
    watcher = ModelWatcher(store, serving, load, on_swap=on_swap, on_refused=on_refused, on_fallback=on_fallback,
                           marker=marker)  # fmt: skip
    for version, why in refusals:
        watcher.refuse(version, why, files if version == current else None)
    if refusals:
        logger.warning(
            "model %s (the store's current version) refused, serving %s instead (the newest earlier version of its "
            "history that loads) until %s loads or another version is promoted: %s",
            current, serving.version, current, refusals[0][1],
        )  # fmt: skip
    return watcher


def _load_version(store: Store, load: Loader, version: str) -> Scorer:
    """The version loaded and verified, its card naming the version its folder does."""
    candidate = load(*store.paths(version))
    if candidate.version != version:
        raise ModelIntegrityError(f"its card names version {candidate.version}")
    return candidate
