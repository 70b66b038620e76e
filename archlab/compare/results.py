"""What a bake-off produced: one result per cell, per row, and for the whole run (``result.json``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from archlab.compare.plan import Row


@dataclass
class CellResult:
    row: str
    arch: str
    model: str
    status: str = "pending"             # "ok" | "failed" | "pending" (not reached)
    value: float | None = None          # the row's metric on the held-out split
    metrics: dict[str, float] = field(default_factory=dict)
    params: int = 0
    train_seconds: float = 0.0
    budget_seconds: float = 0.0
    steps: int = 0
    run_dir: str = ""
    error: str = ""
    curve: list[tuple[float, int, float]] = field(default_factory=list)  # (train seconds, step, loss)
    samples: Any = None                 # row-kind specific predictions for the report
    command: str = ""                   # the equivalent `archlab train` command


@dataclass
class RowResult:
    row: Row
    cells: list[CellResult]
    baselines: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # row-kind specific data for the report

    def best(self) -> CellResult | None:
        done = [c for c in self.cells if c.status == "ok" and c.value is not None and math.isfinite(c.value)]
        if not done:
            return None
        pick = max if self.row.higher_is_better else min
        return pick(done, key=lambda c: c.value)


@dataclass
class CompareResult:
    rows: list[RowResult]
    budget_seconds: float
    out: str
    seed: int
    device: str
    started: float
    wall_seconds: float = 0.0
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        return not self.interrupted and all(c.status == "ok" for r in self.rows for c in r.cells)

    def to_json(self) -> dict[str, Any]:
        """The machine-readable result (``--json``)."""
        rows = []
        for r in self.rows:
            rows.append({
                "dataset": r.row.dataset, "kind": r.row.kind, "task": r.row.task, "metric": r.row.metric,
                "higher_is_better": r.row.higher_is_better,
                "results": {c.arch: {"value": c.value, "params": c.params, "train_seconds": round(c.train_seconds, 3),
                                     "model": c.model, "steps": c.steps, "status": c.status,
                                     **({"error": c.error} if c.error else {})}
                            for c in r.cells},
                "baselines": r.baselines,
            })
        return {"rows": rows, "budget_seconds": self.budget_seconds, "wall_seconds": round(self.wall_seconds, 1),
                "seed": self.seed, "device": self.device, "complete": self.complete}
