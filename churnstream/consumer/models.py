"""Which model scores the next batch: the store's current version, swapped in between batches.

The loop asks :meth:`ModelWatcher.check` once per turn, before it polls. It costs one ``stat`` of
``models/current`` (the store switches it by an atomic rename, so a new version means a new
inode and mtime). When it changed and names another version, that version is loaded and verified
(file hash against its card, scikit-learn version, canary rows scored as recorded) before it
serves; one that fails is refused with one warning line and ``churn_model_load_failures_total``,
and the current model keeps serving. A batch is scored by one model, whole: every output carries
the version that scored it, and an aborted batch is scored again by whichever model is current.
A pinned model (MODEL_PATH) is never swapped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from churnstream.consumer.scoring import Scorer
from churnstream.errors import PipelineError

logger = logging.getLogger(__name__)

_UNREAD = object()


class Store(Protocol):
    """What the watcher needs of churnstream.ml.store.ModelStore."""

    def current_marker(self) -> tuple[int, int] | None: ...

    def current(self) -> str | None: ...

    def paths(self, version: str) -> tuple[Path, Path]: ...


Loader = Callable[[Path, Path], Scorer]  # (model file, card file) -> a verified model


class ModelWatcher:
    def __init__(
        self,
        store: Store,
        serving: Scorer,
        load: Loader,
        *,
        on_swap: Callable[[Scorer], None] | None = None,
        on_refused: Callable[[str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.model = serving
        self._load = load
        self._on_swap = on_swap
        self._on_refused = on_refused
        # Unknown at first: the first check reads current, so a promotion made while this consumer
        # was loading its model is not mistaken for the state it loaded.
        self._marker: object = _UNREAD
        self._read_failed = False
        self.swaps: list[tuple[str, str]] = []  # (from, to), for the summary
        self.refused: list[str] = []

    def check(self) -> Scorer:
        """The model for the next batch: the serving one, or the newly promoted one once verified."""
        try:
            marker = self.store.current_marker()
            if marker == self._marker:
                return self.model
            version = self.store.current()
        except (OSError, ValueError) as exc:  # the store unreadable (permissions, NFS, an edited file)
            if not self._read_failed:
                logger.warning("the model store cannot be read (%s: %s); %s keeps serving", type(exc).__name__, exc,
                               self.model.version)  # fmt: skip
            self._read_failed = True
            return self.model
        self._read_failed = False
        self._marker = marker
        if version is None or version == self.model.version:
            return self.model
        try:
            candidate = self._load(*self.store.paths(version))
        except PipelineError as exc:  # missing, altered, another scikit-learn, canaries off: refused
            self._refuse(version, str(exc))
            return self.model
        if candidate.version != version:
            self._refuse(version, f"its card names version {candidate.version}")
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
        if self._on_swap is not None:
            self._on_swap(candidate)
        return candidate

    def _refuse(self, version: str, reason: str) -> None:
        logger.warning("model %s refused, %s keeps serving: %s", version, self.model.version, reason)
        self.refused.append(version)
        if self._on_refused is not None:
            self._on_refused(version, reason)
