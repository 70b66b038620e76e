"""What a bake-off produced: one result per seed of a cell, per cell, per row, and for the whole run
(``result.json``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from archlab.compare.plan import Row
from archlab.compare.stats import Summary, ranking, summarize


@dataclass
class SeedRun:
    """One training run of a cell, with one seed."""

    seed: int
    status: str = "pending"             # "ok" | "failed" | "pending"
    value: float | None = None          # the row's metric on the test split
    metrics: dict[str, float] = field(default_factory=dict)       # every test metric
    val_metrics: dict[str, float] = field(default_factory=dict)   # the final validation metrics
    steps: int = 0
    selected_step: int = 0              # the step whose weights were kept, chosen on the validation split
    train_seconds: float = 0.0          # wall seconds in optimiser steps
    cpu_seconds: float = 0.0            # CPU seconds of the whole run (training and evaluation)
    params: int = 0
    run_dir: str = ""
    command: str = ""                   # the equivalent `archlab train` command
    error: str = ""
    curve: list[tuple[int, float]] = field(default_factory=list)             # (step, mean train loss)
    val_curve: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # (step, validation metrics)
    samples: Any = None                 # row-kind specific predictions for the report (first seed only)


@dataclass
class CellResult:
    row: str
    arch: str
    model: str
    runs: list[SeedRun] = field(default_factory=list)
    expected_runs: int = 1
    # --ensemble: the test metrics of the seeds' models as one (their predictions averaged), or why not
    ensemble: dict[str, float] = field(default_factory=dict)
    ensemble_note: str = ""

    @property
    def status(self) -> str:
        if any(r.status == "failed" for r in self.runs):
            return "failed"
        done = [r for r in self.runs if r.status == "ok"]
        return "ok" if done and len(done) == self.expected_runs else "pending"

    @property
    def ok_runs(self) -> list[SeedRun]:
        return [r for r in self.runs if r.status == "ok" and r.value is not None and math.isfinite(r.value)]

    @property
    def values(self) -> list[float]:
        return [r.value for r in sorted(self.ok_runs, key=lambda r: r.seed)]

    @property
    def summary(self) -> Summary | None:
        return summarize(self.values) if self.status == "ok" and self.values else None

    @property
    def value(self) -> float | None:
        s = self.summary
        return None if s is None else s.mean

    @property
    def error(self) -> str:
        return "; ".join(f"seed {r.seed}: {r.error}" for r in self.runs if r.error)

    @property
    def first(self) -> SeedRun | None:
        """The run of the lowest seed: its curves, samples and command stand for the cell."""
        runs = sorted(self.runs, key=lambda r: r.seed)
        return runs[0] if runs else None

    @property
    def params(self) -> int:
        return max((r.params for r in self.runs), default=0)

    @property
    def steps(self) -> int:
        return max((r.steps for r in self.runs), default=0)

    @property
    def train_seconds(self) -> float:
        runs = self.ok_runs
        return sum(r.train_seconds for r in runs) / len(runs) if runs else 0.0

    @property
    def cpu_seconds(self) -> float:
        """Mean CPU seconds of a run (training and evaluation): what one quiet core would take."""
        runs = self.ok_runs
        return sum(r.cpu_seconds for r in runs) / len(runs) if runs else 0.0

    def metric_means(self) -> dict[str, float]:
        """Every test metric, averaged over the seeds."""
        runs = self.ok_runs
        names: list[str] = []
        for r in runs:
            names += [k for k in r.metrics if k not in names]
        return {k: sum(r.metrics[k] for r in runs) / len(runs) for k in names if all(k in r.metrics for r in runs)}


@dataclass
class RowResult:
    row: Row
    cells: list[CellResult]
    baselines: dict[str, float] = field(default_factory=dict)           # name -> the row's metric
    baseline_details: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> all it reported
    extra: dict[str, Any] = field(default_factory=dict)  # row-kind specific data for the report

    def summaries(self) -> dict[str, Summary]:
        return {c.arch: c.summary for c in self.cells if c.summary is not None}

    def ranking(self) -> tuple[list[str], str | None]:
        """(architectures best first, the clear winner or None): see ``archlab.compare.stats``."""
        return ranking(self.summaries(), self.row.higher_is_better)

    def best(self) -> CellResult | None:
        """The cell with the best mean (a clear winner or not)."""
        order, _ = self.ranking()
        return next(c for c in self.cells if c.arch == order[0]) if order else None

    def winner(self) -> CellResult | None:
        """The best cell when its interval clears the runner-up's; None for a tie or a single seed."""
        _, clear = self.ranking()
        return next(c for c in self.cells if c.arch == clear) if clear else None


@dataclass
class CompareResult:
    rows: list[RowResult]
    mode: str                           # "fixed" (the plan's steps) | "time-boxed" (equal seconds per cell)
    plan: str                           # the plan's name, or "" when time-boxed
    seeds: list[int]
    out: str
    device: str
    threads: int
    jobs: int
    started: float
    budget_seconds: float = 0.0         # time-boxed: the run's budget
    estimate_seconds: float = 0.0       # fixed: what the plan should take on a quiet 2-core CPU
    wall_seconds: float = 0.0
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        return not self.interrupted and all(c.status == "ok" for r in self.rows for c in r.cells)

    @property
    def mode_label(self) -> str:
        if self.mode == "time-boxed":
            return f"time-boxed: {self.budget_seconds:.0f} s budget, equal training time per cell"
        return f"fixed work: plan {self.plan}"

    def to_json(self) -> dict[str, Any]:
        """The machine-readable result (``--json``): per row and architecture the mean ``value``, the
        per-seed ``values``, their ``ci95`` (null with one seed), the ``steps`` and the step whose weights
        each seed kept (``selected_steps``: its best validation point); with ``--ensemble``, the
        ``ensemble`` value of the seeds' models averaged as one (or an ``ensemble_note`` saying why not)."""
        rows = []
        for r in self.rows:
            results = {}
            for c in r.cells:
                s = c.summary
                entry = {"value": c.value, "params": c.params, "train_seconds": round(c.train_seconds, 3),
                         "cpu_seconds": round(c.cpu_seconds, 1),
                         "values": c.values, "ci95": s.ci95 if s else None, "steps": c.steps,
                         "selected_steps": [x.selected_step for x in sorted(c.ok_runs, key=lambda x: x.seed)],
                         "model": c.model, "status": c.status, "seeds": [x.seed for x in c.runs],
                         "metrics": c.metric_means(), "commands": [x.command for x in c.runs if x.command]}
                if c.ensemble:
                    entry["ensemble"] = c.ensemble.get(r.row.metric)
                    entry["ensemble_metrics"] = c.ensemble
                if c.ensemble_note:
                    entry["ensemble_note"] = c.ensemble_note
                if c.error:
                    entry["error"] = c.error
                results[c.arch] = entry
            order, clear = r.ranking()
            rows.append({"dataset": r.row.dataset, "kind": r.row.kind, "task": r.row.task, "metric": r.row.metric,
                         "higher_is_better": r.row.higher_is_better, "results": results,
                         "baselines": r.baselines, "best": order[0] if order else None, "winner": clear,
                         "baseline_cpu_seconds": round(r.extra.get("baseline_cpu_seconds", 0.0), 1)})
        return {"rows": rows, "mode": self.mode, "plan": self.plan, "seeds": self.seeds,
                "budget_seconds": self.budget_seconds, "estimate_seconds": round(self.estimate_seconds, 1),
                "wall_seconds": round(self.wall_seconds, 1), "threads": self.threads, "jobs": self.jobs,
                "device": self.device, "complete": self.complete}
