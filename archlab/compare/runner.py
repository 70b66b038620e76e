"""Running the bake-off: every cell, every seed, trained by the real trainer.

Two modes:

- **fixed work** (the default): each cell trains for the steps its plan fixes, validating
  ``VAL_POINTS`` times on its validation split, then scores the test split once, with the weights
  of its best validation point on the row's metric or its loss (``Row.select_on``, the trainer's
  ``select_metric``; trees keep their best boosting round themselves). No clock decides anything,
  so the same seed, torch build and thread count give the same numbers under any load; the run
  reports its time against the plan's estimate.
- **time-boxed** (``--budget``): every cell gets the same training seconds; its steps come from
  timing five real steps on this machine (``archlab.train.measure_step_seconds``), with
  ``max_seconds`` as a hard cap. Faster machines train more: the table says so.

A *job* is one seed of one cell, trained with ``archlab.train.train`` into
``OUT/cells/ROW-ARCH-sSEED`` (a normal run directory: ``archlab evaluate --checkpoint`` and
``archlab report`` work on it), plus one job per row for its baselines. Jobs run ``jobs`` at a time
in worker processes of ``threads`` torch threads each (longest first; in row order when ``jobs`` is
1); which process runs a job changes nothing in its numbers. Each job's trainer output goes to its run
``OUT/cells/ROW-ARCH-sSEED.log``; the terminal gets one line per finished job, and every
``HEARTBEAT`` seconds one line on the running ones, with the whole run's ETA.

A job that fails is recorded with its error and the run goes on; the result then says it is
incomplete, and so does every report written from it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from archlab.compare.baselines import LABELS as BASELINE_LABELS
from archlab.compare.plan import VAL_POINTS, Cell, Plan, Row
from archlab.compare.results import CellResult, CompareResult, RowResult, SeedRun
from archlab.errors import ConfigError, check
from archlab.utils.formatting import format_duration, format_metric

TRAIN_FRACTION = 0.62       # time-boxed: share of the budget spent in optimiser steps; the rest: loading, evaluation
MIN_CELL_SECONDS = 1.0      # time-boxed: a cell given less than this cannot show anything
MIN_STEPS = 10
TIMING_STEPS = 5
QUIET_CORES = 2             # the plan's estimate is for a quiet machine with this many cores
STARTUP_SECONDS = 8.0       # per worker process: imports and data loading, in the estimate
HEARTBEAT = 30.0           # seconds between progress lines while cells run
NOT_IN_COMMAND = ("device", "seed", "log_every", "keep_last", "max_steps")


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


def cell_budget(budget: float, n_runs: int, jobs: int = 1) -> float:
    """Time-boxed: the training seconds of each of ``n_runs`` cell runs sharing ``budget`` on ``jobs`` workers."""
    return budget * TRAIN_FRACTION * jobs / max(n_runs, 1)


def check_budget(budget: float, n_runs: int, jobs: int = 1) -> None:
    """A clear error when every cell would get too little training to show anything."""
    seconds = cell_budget(budget, n_runs, jobs)
    if seconds < MIN_CELL_SECONDS:
        need = budget * MIN_CELL_SECONDS / seconds
        raise ConfigError(f"--budget {budget:g}s is too small to train anything: each of the {n_runs} cell runs "
                          f"would get {seconds:.2f} s (at least {MIN_CELL_SECONDS:g} s needed; use --budget "
                          f"{math.ceil(need)}s or more)")


# --------------------------------------------------------------------------------------------
# Jobs: what a worker process runs


@dataclass
class Job:
    row: Row
    cell: Cell | None               # None: the row's baselines
    seed: int = 0
    steps: int = 0                  # fixed work
    seconds: float = 0.0            # time-boxed: training seconds
    settings: dict[str, Any] = field(default_factory=dict)
    run_dir: str = ""
    samples: bool = False           # collect the report's predictions (the first seed of a cell)
    threads: int = 1
    device: str = "auto"
    estimate: float = 0.0           # CPU seconds it should take (fixed work), for the ETA

    @property
    def label(self) -> str:
        return f"{self.row.key}/{self.cell.arch} seed {self.seed}" if self.cell else f"{self.row.key} baselines"


def command_for(row: Row, cell: Cell, settings: dict[str, Any], steps: int, seed: int, threads: int,
                device: str, out: str) -> str:
    """The ``archlab train`` command that trains exactly this cell run again."""
    sets = " ".join(f"--set {k}={_plain(v)}" for k, v in settings.items() if k not in NOT_IN_COMMAND)
    dev = f" --device {device}" if device != "auto" else ""
    return (f"archlab train --task {row.task} --model {cell.model} --data {row.dataset} {sets} --max-steps {steps} "
            f"--seed {seed} --threads {threads}{dev} --out {out}")


def _plain(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return ",".join(map(str, v))
    return str(v).lower() if isinstance(v, bool) else str(v)


def _curves(run_dir: Path) -> tuple[list[tuple[int, float]], list[tuple[int, dict[str, float]]]]:
    """(step, train loss) and (step, validation metrics) from the run's metrics.jsonl."""
    train, val = [], []
    path = run_dir / "metrics.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("split") == "train":
                train.append((rec["step"], rec["loss"]))
            elif rec.get("split") == "val":
                val.append((rec["step"], {k: v for k, v in rec.items() if k not in ("step", "split", "time")}))
    return train, val


def log_path(run_dir: str | Path) -> Path:
    """Where a cell run's trainer output goes: ``OUT/cells/ROW-ARCH-sSEED.log``, beside its run directory."""
    return Path(f"{run_dir}.log")


def run_job(job: Job) -> SeedRun | dict[str, Any]:
    """Train one seed of one cell (or compute a row's baselines); the trainer's output goes to
    ``log_path(run_dir)``."""
    import torch

    torch.set_num_threads(job.threads)
    if job.cell is None:
        return _baselines(job.row)
    run_dir = Path(job.run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    run = SeedRun(job.seed, run_dir=str(run_dir))
    cpu_start = time.process_time()
    with open(log_path(run_dir), "a", encoding="utf-8") as log, contextlib.redirect_stderr(log):
        try:
            _train_cell(job, run)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:  # noqa: BLE001 -- one broken cell must not lose the others
            from archlab.train import Stopped

            if isinstance(e, Stopped):
                raise
            run.status, run.error = "failed", f"{type(e).__name__}: {e}"
            if not isinstance(e, ConfigError):
                traceback.print_exc(file=log)
    run.cpu_seconds = time.process_time() - cpu_start
    return run


def select_metric(row: Row) -> str:
    """The validation metric a cell of ``row`` keeps its weights on: the row's ``select_on``, else its
    own metric, which must be one of its task's metrics, better in the same direction (the trainer
    reads the direction from the task)."""
    from archlab.tasks import get_task

    modes = get_task(row.task).metric_modes
    check(row.metric in modes, f"row {row.key!r}: metric {row.metric!r} is not one of task {row.task!r}'s "
                               f"metrics ({', '.join(modes)})")
    check((modes[row.metric] == "max") == row.higher_is_better,
          f"row {row.key!r}: higher_is_better={row.higher_is_better} for {row.metric}, but task {row.task!r} "
          f"counts a {'higher' if modes[row.metric] == 'max' else 'lower'} {row.metric} as better")
    if row.select_on:
        check(row.select_on in modes, f"row {row.key!r}: select_on {row.select_on!r} is not one of task "
                                      f"{row.task!r}'s metrics ({', '.join(modes)})")
    return row.select_on or row.metric


def _train_cell(job: Job, run: SeedRun) -> None:
    from archlab.checkpoint import from_pretrained
    from archlab.registry import model_info
    from archlab.train import RunSpec, measure_step_seconds, train
    row, cell = job.row, job.cell
    settings = {**job.settings, "seed": job.seed, "device": job.device, "keep_last": 1}
    spec = RunSpec(task=row.task, model=cell.model, data=row.dataset, out=Path(job.run_dir), settings=dict(settings))
    if job.seconds:  # time-boxed: as many steps as this machine does in the cell's seconds
        per_step = measure_step_seconds(spec, steps=TIMING_STEPS)
        steps = max(MIN_STEPS, int(job.seconds / per_step))
        settings["max_seconds"] = round(1.5 * job.seconds, 3)
        print(f"time-boxed: {job.seconds:.1f} s of training at {1000 * per_step:.1f} ms/step -> {steps} steps",
              file=sys.stderr)
    else:
        steps = job.steps
    val_points = int(settings.pop("val_points", VAL_POINTS))
    settings.update(max_steps=steps, log_every=max(1, steps // 50),
                    eval_every=max(1, steps // val_points) if val_points else 0)
    if val_points and not model_info(cell.model).fitted:  # trees keep their best round themselves
        settings.setdefault("select_metric", select_metric(row))
    if "warmup_steps" in settings:  # optimiser cells only: trees are fitted and take no schedule
        settings["warmup_steps"] = min(int(settings["warmup_steps"]), steps // 10)
    spec.settings = settings
    run.command = command_for(row, cell, settings, steps, job.seed, job.threads, job.device, job.run_dir)
    print(f"$ {run.command}", file=sys.stderr)
    trained = train(spec)
    run.metrics = {k: float(v) for k, v in trained["metrics"].items()}
    run.val_metrics = {k: float(v) for k, v in trained["val_metrics"].items()}
    run.value = run.metrics.get(row.metric)
    run.params = from_pretrained(job.run_dir).num_parameters()  # trees count their split thresholds and leaves
    run.train_seconds = trained["train_seconds"]
    run.steps = trained["step"]
    run.selected_step = trained.get("selected_step", trained["step"])
    run.curve, run.val_curve = _curves(Path(job.run_dir))
    if job.samples:
        from archlab.compare import samples

        try:
            run.samples = samples.cell_samples(job.run_dir)
        except Exception as e:  # noqa: BLE001 -- a report without pictures is still a report
            run.samples = {"error": f"{type(e).__name__}: {e}"}
    run.status = "ok" if run.value is not None and math.isfinite(run.value) else "failed"
    if run.status == "failed":
        run.error = f"{row.metric} is {run.value} after {run.steps} steps"


def _baselines(row: Row) -> dict[str, Any]:
    """The row's baselines and shared report data, from a task built on the row's data."""
    from archlab.compare import baselines, samples
    from archlab.tasks import get_task
    from archlab.train.config import TrainConfig, route_settings

    task_cls = get_task(row.task)
    routed = route_settings({k: v for k, v in row.settings.items() if k != "val_points"},
                            {"trainer": TrainConfig, "task": task_cls.Config})
    start = time.process_time()
    task = task_cls(task_cls.Config(**routed.groups["task"]), row.dataset)
    details = baselines.compute(row.baselines, task)
    return {"baselines": {k: float(v[row.metric]) for k, v in details.items() if row.metric in v},
            "details": details, "extra": samples.row_extra(task), "cpu_seconds": time.process_time() - start}


# --------------------------------------------------------------------------------------------
# The run


def plan_estimate(jobs: list[Job], workers: int) -> float:
    """Wall seconds the jobs should take on a quiet machine: their CPU estimates scheduled longest first
    on ``workers`` single-threaded processes, plus each process's start-up."""
    loads = [STARTUP_SECONDS] * max(1, workers)
    for job in sorted(jobs, key=lambda j: -j.estimate):
        i = loads.index(min(loads))
        loads[i] += job.estimate
    return max(loads)


def build_jobs(rows: list[Row], cells: dict[str, list[Cell]], out: Path, *, plan: Plan | None, seeds: list[int],
               budget: float = 0.0, workers: int = 1, threads: int = 1, device: str = "auto") -> list[Job]:
    """Every seed of every chosen cell, and each row's baselines."""
    jobs: list[Job] = []
    n_runs = sum(len(cells[r.key]) for r in rows) * len(seeds)
    per_run = cell_budget(budget, n_runs, workers) if budget else 0.0
    for row in rows:
        if row.baselines:
            jobs.append(Job(row, None, threads=threads, device=device, estimate=row.baseline_seconds))
        for cell in cells[row.key]:
            cell = plan.cell(row, cell) if plan else cell
            settings = plan.settings(row, cell) if plan else {**row.settings, **cell.settings}
            settings.pop("max_steps", None)
            steps = plan.steps(row, cell) if plan else 0
            estimate = plan.estimate(row, cell) if plan else per_run
            for i, seed in enumerate(seeds):
                run_dir = out / "cells" / f"{row.key}-{cell.arch.lower()}-s{seed}"
                jobs.append(Job(row, cell, seed, steps, per_run, dict(settings), str(run_dir), samples=i == 0,
                                threads=threads, device=device, estimate=estimate))
    return jobs


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_compare(rows: list[Row], cells: dict[str, list[Cell]], out: Path, *, plan: Plan | None = None,
                budget: float = 0.0, seeds: list[int] | None = None, jobs: int = 1, threads: int = 1,
                device: str = "auto", log: Callable[[str], None] = print,
                on_row: Callable[[CompareResult], None] | None = None, ensemble: bool = False) -> CompareResult:
    """Train every selected cell with every seed: the plan's fixed steps, or (``budget`` > 0) equal
    time per cell. ``on_row`` is called with the result so far whenever a row is complete. With
    ``ensemble``, each cell's seeds are then also scored as one model (``evaluate_ensembles``)."""
    check(plan is not None or budget > 0, "run_compare needs a plan (fixed work) or a budget (time-boxed)")
    plan = None if budget > 0 else plan
    seeds = seeds or [0]
    check(jobs >= 1 and threads >= 1, f"jobs and threads must be >= 1, got {jobs} and {threads}")
    n_runs = sum(len(cells[r.key]) for r in rows) * len(seeds)
    if budget:
        check_budget(budget, n_runs, jobs)
    out = Path(out)
    if plan is not None:  # a plan may train its own cell in a column (the long plan's ResNet on digits)
        cells = {r.key: [plan.cell(r, c) for c in cells[r.key]] for r in rows}
    todo = build_jobs(rows, cells, out, plan=plan, seeds=seeds, budget=budget, workers=jobs, threads=threads,
                      device=device)
    estimate = plan_estimate(todo, jobs) if plan else budget
    result = CompareResult([], "time-boxed" if budget else "fixed", "" if budget else plan.name, seeds, str(out),
                           device, threads, jobs, time.time(), budget_seconds=budget,
                           estimate_seconds=estimate if plan else 0.0)
    for row in rows:
        result.rows.append(RowResult(row, [CellResult(row.key, c.arch, c.model, expected_runs=len(seeds))
                                           for c in cells[row.key]]))
    by_row = {r.row.key: r for r in result.rows}
    remaining = {row.key: sum(1 for j in todo if j.row.key == row.key) for row in rows}
    total_estimate = sum(j.estimate for j in todo)
    done_estimate, done_jobs = 0.0, 0
    start = time.perf_counter()

    def finished(job: Job, outcome) -> None:
        nonlocal done_estimate, done_jobs
        row_result = by_row[job.row.key]
        done_estimate += job.estimate
        done_jobs += 1
        elapsed = time.perf_counter() - start
        if job.cell is None:
            if isinstance(outcome, BaseException):
                row_result.extra["baselines_error"] = f"{type(outcome).__name__}: {outcome}"
                line = f"  {job.label}: FAILED {row_result.extra['baselines_error']}"
            else:
                row_result.baselines, row_result.baseline_details = outcome["baselines"], outcome["details"]
                row_result.extra.update(outcome["extra"])
                row_result.extra["baseline_cpu_seconds"] = outcome["cpu_seconds"]
                line = f"  {job.label}: " + ", ".join(f"{BASELINE_LABELS.get(k, k)} {format_metric(job.row.metric, v)}"
                                                       for k, v in outcome["baselines"].items())
        else:
            cell = next(c for c in row_result.cells if c.arch == job.cell.arch)
            if isinstance(outcome, BaseException):
                outcome = SeedRun(job.seed, "failed", run_dir=job.run_dir, error=f"{type(outcome).__name__}: {outcome}")
            cell.runs.append(outcome)
            if outcome.status == "ok":
                line = (f"  {job.label}: {job.row.metric} {format_metric(job.row.metric, outcome.value)} · "
                        f"{outcome.steps:,} steps · {outcome.train_seconds:.1f} s training")
            else:
                line = f"  {job.label}: FAILED {outcome.error} (log: {log_path(job.run_dir)})"
        # ETA: the plan's remaining work at the pace seen so far.
        pace = elapsed / done_estimate if done_estimate > 0 else 0.0
        left = (total_estimate - done_estimate) * pace if pace else float("nan")
        eta = format_duration(left) if math.isfinite(left) else "?"
        log(f"{line}   [{done_jobs}/{len(todo)} done · {format_duration(elapsed)} elapsed · ETA {eta}]")
        remaining[job.row.key] -= 1
        if remaining[job.row.key] == 0:
            result.wall_seconds = time.perf_counter() - start
            if on_row is not None:
                on_row(result)

    label = result.mode_label + (f", {len(seeds)} seeds" if len(seeds) > 1 else "")
    log(f"archlab compare: {n_runs} cell runs in {len(rows)} row(s) · {label} · {jobs} process(es) x {threads} "
        f"thread(s) · " + (f"plan estimate {format_duration(estimate)} on a quiet {QUIET_CORES}-core CPU"
                           if plan else f"budget {format_duration(budget)}"))
    def heartbeat(running: list[Job]) -> None:
        elapsed = time.perf_counter() - start
        partial = sum(j.estimate * _fraction_done(j) for j in running)
        seen = done_estimate + partial
        left = (total_estimate - seen) * elapsed / seen if seen > 0 else float("nan")
        labels = ", ".join(f"{j.label} {100 * _fraction_done(j):.0f}%" for j in running)
        log(f"  ... {labels}   [{done_jobs}/{len(todo)} done · {format_duration(elapsed)} elapsed · ETA "
            f"{format_duration(left) if math.isfinite(left) else '?'}]")

    try:
        _run_parallel(todo, jobs, threads, finished, heartbeat, ordered=jobs == 1)
    except KeyboardInterrupt:
        result.interrupted = True
        log("interrupted: the report covers the cells finished so far and says it is incomplete")
    except Exception as e:  # Stopped by a signal
        from archlab.train import Stopped

        if not isinstance(e, Stopped):
            raise
        result.interrupted = True
        log("interrupted: the report covers the cells finished so far and says it is incomplete")
    finally:
        result.wall_seconds = time.perf_counter() - start
    if ensemble and not result.interrupted:
        try:
            evaluate_ensembles(result, todo, device=device, threads=threads, log=log)
        except KeyboardInterrupt:
            result.interrupted = True
            log("interrupted while scoring the seed ensembles: the report has the cells and the ensembles "
                "scored so far, and says it is incomplete")
        result.wall_seconds = time.perf_counter() - start
    return result


def evaluate_ensembles(result: CompareResult, jobs: list[Job], *, device: str = "auto", threads: int = 1,
                       log: Callable[[str], None] = print) -> None:
    """Each finished cell's seeds as one model, their predictions averaged (``archlab.models.ensemble``,
    as ``archlab evaluate`` with several ``--checkpoint``), scored on the test split: the cell's
    ``ensemble`` metrics. A cell whose seeds cannot be averaged gets an ``ensemble_note`` saying why
    instead, and keeps its seeds' results. Run with the cells' thread count, so the numbers are as
    repeatable as theirs; with the evaluation batch of their ``jobs`` (the plan's settings)."""
    import torch

    from archlab.train import evaluate

    settings_of = {(j.row.key, j.cell.arch): j.settings for j in jobs if j.cell is not None}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for r in result.rows:
            for c in r.cells:
                runs = sorted(c.ok_runs, key=lambda x: x.seed)
                if c.status != "ok" or len(runs) < 2:
                    continue
                settings = settings_of[(r.row.key, c.arch)]
                batch = int(settings.get("eval_batch_size") or settings.get("batch_size") or 64)
                label, start = f"{r.row.key} / {c.arch}, its {len(runs)} seeds as one ensemble", time.perf_counter()
                c.ensemble, c.ensemble_note = {}, ""
                try:
                    c.ensemble = evaluate([x.run_dir for x in runs], batch_size=batch, device=device)
                except Exception as e:  # noqa: BLE001 -- a cell that cannot be averaged keeps its seeds' results
                    c.ensemble_note = str(e) if isinstance(e, ConfigError) else f"{type(e).__name__}: {e}"
                    log(f"  {label}: not averaged ({c.ensemble_note})")
                    continue
                log(f"  {label}: {r.row.metric} {format_metric(r.row.metric, c.ensemble.get(r.row.metric))} "
                    f"({time.perf_counter() - start:.1f} s)")
    finally:
        torch.set_num_threads(previous)


def _fraction_done(job: Job) -> float:
    """How far a running cell is: the last step its metrics.jsonl logged over its steps (0 when unknown)."""
    path = Path(job.run_dir) / "metrics.jsonl"
    if job.cell is None or not job.steps or not path.is_file():
        return 0.0
    try:
        last = path.read_text().splitlines()[-1]
        return min(1.0, json.loads(last)["step"] / job.steps)
    except (IndexError, ValueError, KeyError, OSError):
        return 0.0


def _run_parallel(todo: list[Job], workers: int, threads: int, finished: Callable[[Job, Any], None],
                  heartbeat: Callable[[list[Job]], None], ordered: bool = False) -> None:
    """Run the jobs on ``workers`` processes (longest first, or in their order when ``ordered``);
    ``finished`` gets each outcome as it comes, ``heartbeat`` the running jobs every ``HEARTBEAT`` seconds."""
    import multiprocessing

    order = list(todo) if ordered else sorted(todo, key=lambda j: -j.estimate)
    context = multiprocessing.get_context("spawn")  # no forked OpenMP state; each worker imports torch afresh
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
        pending: dict[Future, Job] = {}
        try:
            queue = list(order)
            while queue or pending:
                while queue and len(pending) < workers:  # submit as workers free up: "running" is then true
                    job = queue.pop(0)
                    pending[pool.submit(run_job, job)] = job
                done, _ = wait(pending, timeout=HEARTBEAT, return_when=FIRST_COMPLETED)
                if not done:
                    heartbeat(list(pending.values()))
                for future in done:
                    job = pending.pop(future)
                    error = future.exception()
                    finished(job, error if error is not None else future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def default_jobs() -> int:
    """Worker processes by default: one per core, at most two (the plan's quiet machine)."""
    return max(1, min(QUIET_CORES, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                      else os.cpu_count() or 1))
