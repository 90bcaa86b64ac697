"""What a producer run did: printed on stdout, written by ``--summary-json``, read by the harness."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class RunSummary:
    """What a run did; printed on stdout and, with ``--summary-json``, written as JSON."""

    mode: str
    topic: str
    sent: int
    acknowledged: int
    failed: int
    elapsed_s: float
    skipped_rows: int = 0
    run_id: str | None = None
    load_id: str | None = None
    requested_rate: float | None = None
    duration_s: float | None = None
    seed: int | None = None
    max_sustainable_rate: float | None = None
    max_lag_s: float | None = None
    resumed_from_row: int | None = None
    next_row: int | None = None
    total_rows: int | None = None
    completed: bool | None = None
    stopped_by: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def achieved_rate(self) -> float:
        """Acknowledged events per second of the run (0 when nothing took any time)."""
        return self.acknowledged / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Every event sent was acknowledged."""
        return self.failed == 0 and self.acknowledged == self.sent

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["elapsed_s"] = round(self.elapsed_s, 6)
        data["achieved_rate"] = round(self.achieved_rate, 3)
        if self.max_sustainable_rate is not None:
            data["max_sustainable_rate"] = round(self.max_sustainable_rate, 1)
        if self.max_lag_s is not None:
            data["max_lag_s"] = round(self.max_lag_s, 6)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSummary:
        """Read back what :meth:`to_json` wrote (the computed ``achieved_rate`` is left out)."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})
