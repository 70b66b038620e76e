"""What every experiment shares: estimates over seeds, checks, the protocol's run, the verdict.

An experiment turns one claim of the texts into a measurement::

    claim      "batch norm tolerates higher learning rates"            (the seed text that says it)
    protocol   what is trained, on what, for how long                  (protocol(size) -> dict)
    measure    the numbers, one per seed                               (measure(lab, protocol) -> dict)
    criterion  the rule in words, and as checks on the numbers         (judge(measurement) -> [Check])
    verdict    holds = every check holds                               (computed, never written in)

A measured quantity is an :class:`Estimate`: one value per seed, their mean and, with two seeds or
more, the 95% Student-t interval ``mean ± t_{0.975, n-1} s / sqrt(n)``. A check compares the
*interval* with its threshold -- ``a > x`` holds only if the interval's lower end clears x -- so a
verdict on several seeds needs the whole interval on the right side. Differences of two arms are
paired by seed (``a - b`` subtracts seed by seed), which is what makes the interval of a difference
narrow when both arms move together.

Every model is trained by the library's own trainer (``archlab.train.train`` on a ``RunSpec``,
through :meth:`Lab.train`), into an ordinary run directory under ``OUT/runs/`` that ``archlab
evaluate --checkpoint`` understands.
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Sequence

from archlab.errors import ConfigError, check

SIZES = ("tiny", "quick", "full")  # tiny: the tests' seconds; quick: `--quick`; full: the default

# Student's t quantile t_{0.975, df} for df = 1..30 (two-sided 95%); beyond 30, 1.96 + 2.5 / df
# is within 0.002 of it.
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
          2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
          2.045, 2.042)


def t_quantile(df: int) -> float:
    """t_{0.975, df}: the half-width of a 95% interval is this times the standard error."""
    check(df >= 1, f"degrees of freedom must be >= 1, got {df}")
    return _T_975[df - 1] if df <= len(_T_975) else 1.96 + 2.5 / df


# --------------------------------------------------------------------------------------------------
# Estimates and checks


@dataclass(frozen=True)
class Estimate:
    """One value per seed; the mean and, with n >= 2 seeds, the 95% interval of the mean."""

    values: tuple[float, ...]

    def __post_init__(self):
        check(len(self.values) > 0, "an estimate needs at least one value")
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def half_width(self) -> float:
        """t_{0.975, n-1} * s / sqrt(n); 0 for a single seed (no interval) and for values that are
        not all finite (a diverged run's loss: the mean is then inf or nan and decides alone)."""
        if self.n < 2 or not all(math.isfinite(v) for v in self.values):
            return 0.0
        return t_quantile(self.n - 1) * statistics.stdev(self.values) / math.sqrt(self.n)

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def __sub__(self, other: "Estimate | float") -> "Estimate":
        """Paired by seed: (a - b)_s = a_s - b_s."""
        if isinstance(other, Estimate):
            check(other.n == self.n, f"a paired difference needs as many seeds on both sides, got {self.n} "
                                     f"and {other.n}")
            return Estimate(tuple(a - b for a, b in zip(self.values, other.values)))
        return Estimate(tuple(a - other for a in self.values))

    def map(self, fn: Callable[[float], float]) -> "Estimate":
        return Estimate(tuple(fn(v) for v in self.values))

    def format(self, fmt: Callable[[float], str]) -> str:
        """``fmt(mean)``, and ``± fmt(half_width)`` with two seeds or more."""
        return fmt(self.mean) if self.n < 2 else f"{fmt(self.mean)} ± {fmt(self.half_width).lstrip('+')}"

    def to_json(self) -> dict[str, Any]:
        return {"mean": self.mean, "ci95": [self.low, self.high] if self.n >= 2 else None,
                "values": list(self.values)}


def estimate(values: Iterable[float]) -> Estimate:
    return Estimate(tuple(values))


OPS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}


@dataclass
class Check:
    """One condition of a criterion: ``quantity op threshold``, judged on the quantity's interval.

    For ``>`` / ``>=`` the interval's lower end must clear the threshold, for ``<`` / ``<=`` its
    upper end; with one seed the interval is the value itself.
    """

    text: str                  # what is compared, in words: "LSTM accuracy at gap 200"
    value: Estimate
    op: str
    threshold: float
    unit: str = ""             # how to print value and threshold: "" (3 decimals), "%" or "x"

    def __post_init__(self):
        check(self.op in OPS, f"op must be one of {sorted(OPS)}, got {self.op!r}")

    @property
    def judged(self) -> float:
        """The end of the interval that must clear the threshold."""
        return self.value.low if self.op in (">", ">=") else self.value.high

    @property
    def holds(self) -> bool:
        return bool(OPS[self.op](self.judged, self.threshold))

    def _fmt(self, v: float) -> str:
        if self.unit == "%":
            return f"{100 * v:.1f}%" if abs(v) >= 0.001 or v == 0 else f"{100 * v:.2g}%"
        if self.unit == "x":
            return f"{v:.2f}x"
        return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"

    def describe(self) -> str:
        v = self.value
        shown = self._fmt(v.mean) if v.n < 2 else f"{self._fmt(v.mean)} [{self._fmt(v.low)}, {self._fmt(v.high)}]"
        return f"{self.text}: {shown} {self.op} {self._fmt(self.threshold)} -> {'yes' if self.holds else 'no'}"

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "value": self.value.to_json(), "op": self.op, "threshold": self.threshold,
                "holds": self.holds}


# --------------------------------------------------------------------------------------------------
# Tables


@dataclass(frozen=True)
class Column:
    """A table column: the row key, its header, and how a value prints ("%", "int", "x", "{:.3f}"...)."""

    key: str
    label: str
    fmt: str = "{:.3f}"

    def format(self, value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, Estimate):
            return value.format(self._number)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return self._number(value)
        return str(value)

    def _number(self, v: float) -> str:
        if isinstance(v, float) and not math.isfinite(v):
            return "diverged"
        if self.fmt == "%":
            return f"{100 * v:.1f}%"
        if self.fmt == "int":
            return f"{int(round(v)):,}"
        if self.fmt == "x":
            return f"{v:.2f}x"
        return self.fmt.format(v)


def table_text(columns: Sequence[Column], rows: Sequence[dict[str, Any]]) -> str:
    """Rows as aligned plain text, a header and a rule first."""
    cells = [[c.label for c in columns]] + [[c.format(r.get(c.key)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON: estimates as dicts, NaN / infinities (a diverged run) as the strings
    "nan", "inf", "-inf", which JSON can hold and ``restore`` turns back into floats."""
    if isinstance(value, Estimate):
        return value.to_json()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def restore(value: Any) -> Any:
    """The inverse of ``jsonable`` for a saved measurement: "nan" / "inf" / "-inf" back to floats."""
    if isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    if isinstance(value, dict):
        return {k: restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [restore(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------------
# Training runs


@dataclass
class Run:
    """A finished training run: its directory, final evaluation and training curve."""

    label: str
    dir: Path
    metrics: dict[str, float]
    steps: int
    train_seconds: float
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, mean training loss of the window)

    def load_model(self):
        from archlab.checkpoint import from_pretrained

        return from_pretrained(self.dir)


def read_curve(run_dir: Path) -> list[tuple[int, float]]:
    path = Path(run_dir) / "metrics.jsonl"
    points = []
    if path.is_file():
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("split") == "train":
                points.append((int(rec["step"]), float(rec["loss"])))
    return points


# Task settings for an experiment's runs: the whole training split trains. An experiment selects no
# model on a validation split (its protocol is fixed before the run), so none is held out.
NO_VALIDATION = {"val_fraction": 0.0}


class Lab:
    """Where an experiment trains and measures: the output directory, the seeds, the device, progress.

    ``train`` runs ``archlab.train.train`` into ``OUT/runs/LABEL`` with the trainer's own log in
    ``train.log`` there, and prints one line per run. ``evaluate`` reloads a run for the task's
    evaluation with other task settings (another split, shifted images).
    """

    def __init__(self, out: Path, seeds: Sequence[int], *, device: str = "cpu", threads: int | None = None,
                 log: Callable[[str], None] | None = None):
        self.out = Path(out)
        self.seeds = list(seeds)
        self.device = device
        self.threads = threads  # the caller's choice of CPU threads, None when it made none
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.runs_done = 0
        self.runs_expected = 0

    def expect(self, runs: int) -> None:
        """How many training runs the protocol will make (for the progress count)."""
        self.runs_expected = runs

    def tick(self) -> str:
        """Count one more run: "[3/12]"."""
        self.runs_done += 1
        return f"[{self.runs_done}/{self.runs_expected}]" if self.runs_expected else f"[{self.runs_done}]"

    def train(self, label: str, *, task: str, model: str, data: str | None = None,
              trainer: dict[str, Any] | None = None, task_settings: dict[str, Any] | None = None,
              model_settings: dict[str, Any] | None = None, seed: int = 0) -> Run:
        """Train registered ``model`` on registered ``task`` with the library's trainer.

        ``trainer``, ``task_settings`` and ``model_settings`` are the fields of ``TrainConfig``, the
        task's config and the model's config; each goes to its owner by name (``trainer.lr``,
        ``task.gap``, ``model.cell``), so a field that two of them share can never be misrouted."""
        from archlab.train import RunSpec, train

        run_dir = self.out / "runs" / label
        trainer = {"log_every": 10, "keep_last": 1, **(trainer or {})}
        settings = {f"{owner}.{key}": value
                    for owner, group in (("trainer", trainer), ("task", task_settings or {}),
                                         ("model", model_settings or {}))
                    for key, value in group.items()}
        # seed and device unqualified: the trainer reads them before it routes the other settings
        settings.update(seed=seed, device=self.device)
        spec = RunSpec(task=task, model=model, data=data, out=run_dir, settings=settings, overwrite=True)
        start = time.perf_counter()
        prefix = f"  {self.tick()} {label}"
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "train.log", "w") as logfile, contextlib.redirect_stderr(logfile):
            result = train(spec)
        seconds = time.perf_counter() - start
        run = Run(label, run_dir, {k: float(v) for k, v in result["metrics"].items()}, int(result["step"]),
                  float(result["train_seconds"]), read_curve(run_dir))
        shown = ", ".join(f"{k} {v:.4g}" for k, v in run.metrics.items() if k in ("accuracy", "loss"))
        self.log(f"{prefix}: {run.steps} steps, {shown} ({seconds:.1f} s)")
        return run

    def evaluate(self, run: Run, split: str = "test", **task_settings) -> dict[str, float]:
        """The task's metrics of ``run``'s final model on ``split`` ("test", "val", or "train" for a task
        that evaluates its training examples), its task rebuilt with ``task_settings``."""
        from archlab.train import evaluate_model, load_for_evaluation
        from archlab.utils.runtime import resolve_device

        model, task = load_for_evaluation(run.dir, task_settings=task_settings)
        device = resolve_device(self.device)
        return evaluate_model(model.to(device), task, device, "fp32", 256, split=split)


# --------------------------------------------------------------------------------------------------
# Experiments and their results


@dataclass
class Result:
    """What one experiment found; ``to_json`` is the machine-readable record."""

    name: str
    title: str
    claim: str
    source: str
    reference: str
    criterion: str
    size: str
    seeds: int
    protocol: dict[str, Any]
    columns: list[Column]
    table: list[dict[str, Any]]
    checks: list[Check]
    seconds: float
    notes: list[str] = field(default_factory=list)
    figure: bytes | None = None          # the plot as PNG

    @property
    def holds(self) -> bool:
        """The verdict: every check of the criterion holds on the measurement."""
        return bool(self.checks) and all(c.holds for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return jsonable({"name": self.name, "claim": self.claim, "source": self.source, "criterion": self.criterion,
                         "holds": self.holds, "table": self.table, "seeds": self.seeds,
                         "checks": [c.to_json() for c in self.checks], "reference": self.reference, "size": self.size,
                         "protocol": self.protocol, "notes": self.notes, "seconds": round(self.seconds, 1),
                         "title": self.title})


class Experiment:
    """Base of the experiments; one subclass per claim, registered with ``@register_experiment``.

    Subclasses set the class attributes and implement ``protocol``, ``measure``, ``judge`` and
    ``table``; ``plot`` and ``notes`` are optional. ``measure`` returns plain numbers (lists over
    seeds); ``judge`` and ``table`` read only that measurement, so a verdict can always be
    recomputed from what was recorded.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    claim: ClassVar[str]
    texts: ClassVar[tuple[str, ...]] = ()  # the seed texts that make the claim ("000".."003")
    source: ClassVar[str]       # what they say, in their words
    reference: ClassVar[str]    # the published result it echoes
    criterion: ClassVar[str]    # the rule, in words; may name protocol fields as {field}
    # Expected seconds (quick, full) for one seed: CPU time measured on 2 cores, one thread -- the wall
    # time of an otherwise idle machine; a busy one takes longer.
    seconds: ClassVar[tuple[float, float]] = (30.0, 600.0)
    # torch CPU threads unless the caller chooses: 1 for small models, whose kernels gain nothing from a
    # second thread and, on a busy machine, stall waiting for it; None = torch's default (every core).
    threads: ClassVar[int | None] = 1

    def protocol(self, size: str) -> dict[str, Any]:
        raise NotImplementedError

    def measure(self, lab: Lab, p: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def judge(self, m: dict[str, Any], p: dict[str, Any]) -> list[Check]:
        raise NotImplementedError

    def table(self, m: dict[str, Any], p: dict[str, Any]) -> tuple[list[Column], list[dict[str, Any]]]:
        raise NotImplementedError

    def plot(self, m: dict[str, Any], p: dict[str, Any], plt) -> Any:
        """A matplotlib figure of the measurement, or None."""
        return None

    def notes(self, m: dict[str, Any], p: dict[str, Any]) -> list[str]:
        return []

    def criterion_text(self, p: dict[str, Any]) -> str:
        return self.criterion.format(**p)

    def conclude(self, m: dict[str, Any], p: dict[str, Any], *, size: str, seeds: int, seconds: float) -> Result:
        """The result of a measurement: table, checks and verdict, plot, all computed from ``m``."""
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt

        from archlab.experiments.report import png

        columns, rows = self.table(m, p)
        fig = self.plot(m, p, plt)
        figure = png(fig) if fig is not None else None
        return Result(self.name, self.title, self.claim, self.source, self.reference, self.criterion_text(p),
                      size, seeds, p, columns, rows, self.judge(m, p), seconds, self.notes(m, p), figure)


_EXPERIMENTS: dict[str, type[Experiment]] = {}


def register_experiment(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator: make ``cls`` available as ``archlab experiment cls.name``."""
    if cls.name in _EXPERIMENTS and _EXPERIMENTS[cls.name] is not cls:
        raise ConfigError(f"experiment name {cls.name!r} is registered twice")
    _EXPERIMENTS[cls.name] = cls
    return cls


ORDER = ("long_memory", "parallelism", "weight_sharing", "residual_depth", "batchnorm_lr", "dropout",
         "positional_encoding", "causal_mask")


def _discover() -> None:
    import importlib
    import pkgutil

    import archlab.experiments as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in ("core", "report"):
            importlib.import_module(f"{pkg.__name__}.{info.name}")


def list_experiments() -> list[str]:
    """Every experiment's name, in the order of the texts' claims."""
    _discover()
    return sorted(_EXPERIMENTS, key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))


def get_experiment(name: str) -> Experiment:
    _discover()
    if name not in _EXPERIMENTS:
        import difflib

        close = difflib.get_close_matches(name, _EXPERIMENTS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown experiment {name!r}; experiments: {', '.join(list_experiments())}{hint}")
    return _EXPERIMENTS[name]()


def conclude_saved(out: str | Path) -> Result:
    """The result of the measurement saved in ``out/result.json``, judged again by the current code:
    table, checks, verdict, plot; ``result.json`` and ``report.html`` are rewritten. No training."""
    from archlab.experiments.report import write_result

    path = Path(out) / "result.json"
    check(path.is_file(), f"{str(path)!r} does not exist: no saved result to judge")
    record = json.loads(path.read_text())
    check("measurement" in record and "protocol" in record,
          f"{str(path)!r} holds no measurement (written by an older archlab?)")
    experiment = get_experiment(record["name"])
    measurement = restore(record["measurement"])
    result = experiment.conclude(measurement, restore(record["protocol"]), size=record["size"],
                                 seeds=record["seeds"], seconds=record.get("seconds", 0.0))
    write_result(result, Path(out), measurement)
    return result


def run_experiment(name: str, out: str | Path, *, size: str = "full", seeds: int = 1, device: str = "cpu",
                   threads: int | None = None, log: Callable[[str], None] | None = None) -> Result:
    """Run experiment ``name`` at ``size`` over ``seeds`` seeds (0..seeds-1) into ``out``; write
    ``result.json`` and ``report.html`` there and return the result.

    ``threads``: torch CPU threads while it runs (default: the experiment's own choice)."""
    import torch

    from archlab.experiments.report import write_result

    check(size in SIZES, f"size must be one of {SIZES}, got {size!r}")
    check(isinstance(seeds, int) and seeds >= 1, f"seeds must be a positive integer, got {seeds!r}")
    check(threads is None or threads >= 1, f"threads must be >= 1, got {threads}")
    experiment = get_experiment(name)
    p = experiment.protocol(size)
    lab = Lab(Path(out), range(seeds), device=device, threads=threads, log=log)
    before = torch.get_num_threads()
    start = time.perf_counter()
    try:
        if threads or experiment.threads:
            torch.set_num_threads(threads or experiment.threads)
        measurement = experiment.measure(lab, p)
    finally:
        torch.set_num_threads(before)
    result = experiment.conclude(measurement, p, size=size, seeds=seeds, seconds=time.perf_counter() - start)
    write_result(result, Path(out), measurement)
    return result
