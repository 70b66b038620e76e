"""Running the bake-off: every cell trained by the real trainer on one clock.

For each cell the runner

1. gives it ``budget x TRAIN_FRACTION x row.share x cell.weight / row weights`` seconds of training
   (the rest of the budget pays for loading, evaluation and the report);
2. times five real optimiser steps (the median) (``archlab.train.measure_step_seconds``) and sets ``max_steps``
   so the learning-rate schedule spans the budget, with ``max_seconds`` as a hard cap;
3. trains with ``archlab.train.train`` into ``OUT/cells/ROW-ARCH`` (a normal run directory:
   ``archlab evaluate --checkpoint`` works on it), evaluates on the held-out split, and keeps the
   metric, the parameter count, the training seconds and a few predictions for the report.

A cell that fails is recorded with its error and the run goes on; the result then says it is
incomplete, and so does every report written from it.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from archlab.compare.plan import Cell, Row
from archlab.compare.results import CellResult, CompareResult, RowResult
from archlab.errors import ConfigError, check

TRAIN_FRACTION = 0.62       # of the budget spent in optimiser steps; the rest: loading, timing, evaluation
MIN_CELL_SECONDS = 1.0      # a cell given less than this cannot show anything
MIN_STEPS = 10
TIMING_STEPS = 5


def parse_budget(text: str) -> float:
    """``"5m"``, ``"90s"``, ``"1h"``, ``"1h30m"`` or plain seconds -> seconds."""
    s = str(text).strip().lower()
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    total, number = 0.0, ""
    try:
        for ch in s:
            if ch.isdigit() or ch == ".":
                number += ch
            elif ch in units and number:
                total, number = total + float(number) * units[ch], ""
            else:
                raise ValueError(ch)
        if number:
            total += float(number)
    except ValueError:
        raise ConfigError(f"--budget takes a duration such as 5m, 90s or 1h30m, got {text!r}") from None
    check(total > 0, f"--budget must be a positive duration, got {text!r}")
    return total


def cell_budget(budget: float, row: Row, cell: Cell) -> float:
    """Training seconds of ``cell``: its share of its row's share of the run's budget."""
    weights = sum(c.weight for c in row.cells)
    return budget * TRAIN_FRACTION * row.share * cell.weight / weights


def check_budget(budget: float, rows: list[Row], cells: dict[str, list[Cell]] | None = None) -> None:
    """A clear error when the smallest chosen cell would get too little training to show anything."""
    chosen = [(r, c) for r in rows for c in (cells[r.key] if cells else r.cells)]
    seconds, row, cell = min(((cell_budget(budget, r, c), r, c) for r, c in chosen), key=lambda t: t[0])
    if seconds < MIN_CELL_SECONDS:
        need = budget * MIN_CELL_SECONDS / seconds
        raise ConfigError(f"--budget {budget:g}s is too small to train anything: {row.key}/{cell.arch} would get "
                          f"{seconds:.2f} s (at least {MIN_CELL_SECONDS:g} s needed; use --budget {math.ceil(need)}s "
                          "or more)")


def _command(row: Row, cell: Cell, settings: dict[str, Any], out: Path) -> str:
    sets = " ".join(f"--set {k}={_plain(v)}" for k, v in settings.items()
                    if k not in ("device", "seed", "log_every", "keep_last", "max_seconds"))
    return (f"archlab train --task {row.task} --model {cell.model} --data {row.dataset} {sets} "
            f"--seed {settings.get('seed', 0)} --out {out}")


def _plain(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v))
    return str(v).lower() if isinstance(v, bool) else str(v)


def _curve(run_dir: Path) -> list[tuple[float, int, float]]:
    """(cumulative training seconds, step, mean train loss) from the run's metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    points, seconds = [], 0.0
    if path.is_file():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("split") == "train":
                seconds += rec.get("elapsed_s", 0.0)
                points.append((round(seconds, 3), rec["step"], rec["loss"]))
    return points


def run_cell(row: Row, cell: Cell, budget: float, out: Path, *, seed: int, device: str,
             log: Callable[[str], None]) -> CellResult:
    from archlab.checkpoint import from_pretrained
    from archlab.train import RunSpec, measure_step_seconds, train
    from archlab.utils.runtime import count_parameters

    run_dir = out / "cells" / f"{row.key}-{cell.arch.lower()}"
    result = CellResult(row.key, cell.arch, cell.model, run_dir=str(run_dir))
    seconds = cell_budget(budget, row, cell)
    result.budget_seconds = seconds
    settings = {**row.settings, **cell.settings, "seed": seed, "device": device, "keep_last": 1}
    spec = RunSpec(task=row.task, model=cell.model, data=row.dataset, out=run_dir, settings=dict(settings))
    per_step = measure_step_seconds(spec, steps=TIMING_STEPS)
    steps = max(MIN_STEPS, int(seconds / per_step))
    settings.update(max_steps=steps, max_seconds=round(1.5 * seconds, 3), log_every=max(1, steps // 60),
                    warmup_steps=min(int(settings.get("warmup_steps", 0)), steps // 10))
    spec.settings = settings
    result.command = _command(row, cell, settings, run_dir)
    log(f"  {cell.arch:<11} {cell.model} · {seconds:.0f} s of training ≈ {steps} steps ({1000 * per_step:.0f} ms/step)")
    trained = train(spec)
    model = from_pretrained(run_dir)
    result.metrics = {k: float(v) for k, v in trained["metrics"].items()}
    result.value = result.metrics.get(row.metric)
    result.params = count_parameters(model)
    result.train_seconds = trained["train_seconds"]
    result.steps = trained["step"]
    result.curve = _curve(run_dir)
    result.status = "ok"
    return result


def run_compare(rows: list[Row], cells: dict[str, list[Cell]], budget: float, out: Path, *, seed: int = 0,
                device: str = "auto", log: Callable[[str], None] = print,
                on_row: Callable[[CompareResult], None] | None = None) -> CompareResult:
    """Train every selected cell; ``on_row`` is called with the result so far after each row."""
    from archlab.compare import samples
    from archlab.train import Stopped  # a signal during training: its checkpoint is written, then this

    check_budget(budget, rows, cells)
    result = CompareResult([], budget, str(out), seed, device, time.time())
    start = time.perf_counter()
    try:
        for i, row in enumerate(rows, 1):
            row_result = RowResult(row, [CellResult(row.key, c.arch, c.model) for c in cells[row.key]])
            result.rows.append(row_result)
            log(f"[{i}/{len(rows)}] {row.kind}: {row.dataset} ({row.task}, {row.metric}"
                f"{', higher is better' if row.higher_is_better else ', lower is better'})")
            for j, cell in enumerate(cells[row.key]):
                try:
                    done = run_cell(row, cell, budget, out, seed=seed, device=device, log=log)
                except (KeyboardInterrupt, SystemExit, Stopped):
                    raise
                except Exception as e:  # noqa: BLE001 -- one broken cell must not lose the others
                    failed = row_result.cells[j]
                    failed.status, failed.error = "failed", f"{type(e).__name__}: {e}"
                    failed.run_dir = str(out / "cells" / f"{row.key}-{cell.arch.lower()}")
                    log(f"  {cell.arch:<11} FAILED: {failed.error}")
                    if not isinstance(e, ConfigError):
                        log("".join(traceback.format_exception(e)[-3:]).rstrip())
                    continue
                row_result.cells[j] = done
                log(f"  {'':<11} {row.metric} {done.value:.4f} · {done.params:,} parameters · "
                    f"{done.train_seconds:.1f} s · {done.steps} steps")
            samples.collect(row_result)
            result.wall_seconds = time.perf_counter() - start
            if on_row is not None:
                on_row(result)
    except (KeyboardInterrupt, Stopped):
        result.interrupted = True
        log("interrupted: the report covers the cells finished so far and says it is incomplete")
    finally:
        result.wall_seconds = time.perf_counter() - start
    return result
