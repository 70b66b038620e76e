"""Rolling-origin backtest: choose a forecaster's settings without touching the test part.

A single 24-month test window says little about which settings forecast better: one calm or
turbulent stretch of the series decides it. A backtest (Tashman 2000) moves the forecast origin
back in steps and asks each candidate the same question at every origin:

    origin k = 1..K     the series as it stood k * every values earlier (``drop_last``), its own
                        test part (the last n_test values left) forecast from the values before it
    fit                 on every value before the origin (``val_size`` 0: no validation, no
                        choice of weights, the last ones kept), one run per seed
    score               RMSE_{s,k} of seed s's forecast of origin k's test part, and RMSE_k of the
                        seeds' forecasts averaged (their ensemble, what ``archlab evaluate`` with
                        several --checkpoint scores)
    rank                by the mean over origins of RMSE_k (of the single seed's with one seed)

Origins step back by the test part's length, so the K windows tile the values just before the
real test part and never reach into it. Only the setting ranked first is then trained on the
whole history and scored on the real test part (``test=True``): the test is touched once.

Every run is an ordinary run directory (``OUT/<setting>/o<k>/s<seed>``) that ``archlab evaluate``
reads; a run whose forecast is saved is not trained again, so an interrupted backtest goes on
where it stopped.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from archlab.errors import ConfigError, check
from archlab.utils.formatting import format_duration
from archlab.utils.io import write_text_atomic

FORECAST_FILE = "backtest_forecast.json"
RESULT_FILE = "backtest.json"
# Settings a backtest run sets itself: each fits on everything before its origin, keeps its last weights.
OWN_KEYS = ("val_size", "drop_last", "seed", "eval_every", "select_metric", "early_stop_metric",
            "early_stop_patience")


@dataclass
class Setting:
    """One candidate: the recipe, or the recipe with a variant's overrides."""

    label: str
    overrides: dict[str, str]
    per_origin: list[dict[str, Any]] = field(default_factory=list)  # {"ensemble": x, "seeds": [...]} per origin

    @property
    def directory(self) -> str:
        return "recipe" if not self.overrides else re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.label.replace(" ", "_"))

    @property
    def mean_ensemble(self) -> float:  # with one seed, the ensemble is that seed
        return float(np.mean([o["ensemble"] for o in self.per_origin]))

    @property
    def mean_single(self) -> float:
        return float(np.mean([np.mean(o["seeds"]) for o in self.per_origin]))


def parse_variant(text: str) -> dict[str, str]:
    """``"context_length=48 horizon=24"`` -> ``{"context_length": "48", "horizon": "24"}``."""
    out = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        check(sep and key and value, f"--variant takes KEY=VALUE pairs separated by spaces, got {text!r}")
        key = key.replace("-", "_")
        check(key not in OWN_KEYS, f"--variant {text!r} sets {key}, which the backtest sets itself for every run "
                                   f"({', '.join(OWN_KEYS)})")
        out[key] = value
    check(out, f"--variant takes KEY=VALUE pairs separated by spaces, got {text!r}")
    return out


def _task(recipe: dict[str, Any], data: str, **extra: Any):
    """The forecast task the recipe's settings (and ``extra`` task fields) build on ``data``."""
    from archlab.tasks import get_task
    from archlab.train.config import TrainConfig, route_settings
    from archlab.train.resolve import model_config_class

    task_cls = get_task("forecast")
    routed = route_settings({k: v for k, v in recipe.items() if k not in (*OWN_KEYS, "task", "model", "data")},
                            {"trainer": TrainConfig, "task": task_cls.Config,
                             "model": model_config_class(recipe["model"])})
    return task_cls(task_cls.Config(**{**routed.groups["task"], **extra}), data)


def origins(recipe: dict[str, Any], data: str, n_origins: int) -> list[dict[str, Any]]:
    """The K origins: ``drop_last`` = k * (the test part's length), k = 1..K, with the dates (or step
    numbers) of the test part each forecasts."""
    check(isinstance(n_origins, int) and n_origins >= 1, f"--origins must be >= 1, got {n_origins!r}")
    every = len(_task(recipe, data).series.test.values)
    out = []
    for k in range(1, n_origins + 1):
        try:
            task = _task(recipe, data, val_size=0, drop_last=k * every)
        except ConfigError as e:
            raise ConfigError(f"--origins {n_origins}: origin {k} ({k * every} values back) leaves too little to "
                              f"train on ({e}); ask for fewer origins") from None
        lo, hi = task.cut_test, len(task.values)
        dates = task.dates_or_steps(lo, hi)
        out.append({"drop_last": k * every, "n": hi - lo, "first": str(dates[0]), "last": str(dates[-1])})
    return out


def _fit_and_forecast(recipe: dict[str, Any], setting: Setting, data: str, drop_last: int, seed: int,
                      run_dir: Path, device: str) -> dict[str, Any]:
    """Train one seed of ``setting`` on every value before the origin (or reuse a finished run) and
    forecast the origin's test part: ``{"actual": [...], "forecast": [...], "rmse": x}``."""
    from archlab.train import RunSpec, train
    from archlab.train.evaluation import load_for_evaluation

    settings = {**{k: v for k, v in recipe.items() if k not in ("task", "model", "data", *OWN_KEYS)},
                **setting.overrides, "val_size": 0, "drop_last": drop_last, "seed": seed, "eval_every": 0,
                "select_metric": "", "early_stop_metric": "", "early_stop_patience": 0, "device": device,
                "keep_last": 1}
    settings.setdefault("log_every", max(1, int(settings.get("max_steps", 1000)) // 10))
    saved = run_dir / FORECAST_FILE
    key = json.dumps({"model": recipe["model"], "data": data, "settings": settings}, sort_keys=True, default=str)
    if saved.is_file():
        done = json.loads(saved.read_text())
        if done.get("key") == key:
            return done
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{run_dir}.log", "w", encoding="utf-8") as log, contextlib.redirect_stderr(log):
        train(RunSpec(task="forecast", model=recipe["model"], data=data, out=run_dir, settings=dict(settings),
                      overwrite=True))
    model, task = load_for_evaluation(run_dir)
    _, actual, predicted = task.forecast_test(model)
    done = {"key": key, "actual": actual.tolist(), "forecast": predicted.tolist(),
            "rmse": _rmse(predicted, actual)}
    write_text_atomic(saved, json.dumps(done))
    return done


def _rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(actual)) ** 2)))


def _score(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each seed's RMSE and the RMSE of their averaged forecast (the ensemble's)."""
    return {"seeds": [r["rmse"] for r in runs],
            "ensemble": _rmse(np.mean([r["forecast"] for r in runs], axis=0), runs[0]["actual"])}


def run_backtest(recipe: dict[str, Any], variants: list[str], *, seeds: int = 3, n_origins: int = 4,
                 out: str | Path, test: bool = False, device: str = "cpu",
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The backtest of the recipe (a forecast task's settings with ``model`` and ``data``) and each
    variant of it (``"key=value key=value"``); see the module's text. Returns what
    ``OUT/backtest.json`` holds."""
    check(recipe.get("task", "forecast") == "forecast",
          f"a backtest needs a forecast recipe (task: forecast), got task {recipe.get('task')!r}")
    check(isinstance(recipe.get("model"), str), "the recipe names no model (model: in --config, or --model)")
    check(isinstance(seeds, int) and seeds >= 1, f"--seeds must be >= 1, got {seeds!r}")
    data = str(recipe.get("data") or "co2")
    out = Path(out)
    settings = [Setting("recipe", {})] + [Setting(v.strip(), parse_variant(v)) for v in variants]
    labels = [s.label for s in settings]
    check(len(set(labels)) == len(labels), f"--variant given twice: {labels}")
    where = origins(recipe, data, n_origins)
    runs_total = len(settings) * len(where) * seeds + (seeds if test else 0)
    done = 0
    start = time.monotonic()

    def step(text: str) -> None:
        nonlocal done
        done += 1
        if progress:
            spent = time.monotonic() - start
            left = spent / done * (runs_total - done)
            progress(f"[{done}/{runs_total}] {text} ({format_duration(spent)} in, about {format_duration(left)} left)")

    for setting in settings:
        for k, origin in enumerate(where, 1):
            runs = []
            for seed in range(seeds):
                run_dir = out / setting.directory / f"o{k}" / f"s{seed}"
                runs.append(_fit_and_forecast(recipe, setting, data, origin["drop_last"], seed, run_dir, device))
                step(f"{setting.label}, origin {origin['first']}, seed {seed}: rmse {runs[-1]['rmse']:.4g}")
            setting.per_origin.append(_score(runs))
    picked = min(settings, key=lambda s: s.mean_ensemble)
    result: dict[str, Any] = {
        "model": recipe["model"], "data": data, "metric": "rmse", "seeds": list(range(seeds)), "origins": where,
        "ranked_by": f"mean over origins of the RMSE of {'the ' + str(seeds) + '-seed ensemble' if seeds >= 2 else 'seed 0'}",
        "settings": [{"label": s.label, "overrides": s.overrides, "mean_ensemble": s.mean_ensemble,
                      "mean_single": s.mean_single,
                      "per_origin": s.per_origin}
                     for s in settings],
        "picked": picked.label,
    }
    if test:
        runs, dirs = [], []
        for seed in range(seeds):
            run_dir = out / picked.directory / "test" / f"s{seed}"
            runs.append(_fit_and_forecast(recipe, picked, data, 0, seed, run_dir, device))
            dirs.append(str(run_dir))
            step(f"{picked.label}, the test part, seed {seed}: rmse {runs[-1]['rmse']:.4g}")
        scored = _score(runs)
        whole = _task(recipe, data, val_size=0)
        dates = whole.dates_or_steps(whole.cut_test, len(whole.values))
        result["test"] = {"first": str(dates[0]), "last": str(dates[-1]), "seeds": scored["seeds"],
                          "ensemble": scored["ensemble"], "runs": dirs,
                          "evaluate": "archlab evaluate " + " ".join(f"--checkpoint {shlex.quote(d)}" for d in dirs)}
    result["seconds"] = round(time.monotonic() - start, 1)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / RESULT_FILE, json.dumps(result, indent=1))
    return result


def format_table(result: dict[str, Any]) -> str:
    """The backtest as a table: a row per setting, a column per origin (the ensemble's RMSE), the mean."""
    where, seeds = result["origins"], len(result["seeds"])
    head = [f"{o['first'][:7]}" for o in where]
    width = max(len("setting"), *(len(s["label"]) for s in result["settings"]))
    one = f"the {seeds}-seed ensemble's" if seeds >= 2 else "seed 0's"
    lengths = sorted({o["n"] for o in where}, reverse=True)
    n = str(lengths[0]) if len(lengths) == 1 else f"{lengths[-1]} to {lengths[0]}"
    lines = [f"rolling-origin backtest of {result['model']} on {result['data']}: {len(where)} origins, "
             f"the next {n} values forecast from each by runs trained on every value before it; "
             f"RMSE of {one} forecast",
             f"{'setting':<{width}}  " + "  ".join(f"{h:>8}" for h in head) + f"  {'mean':>8}"
             + (f"  {'one seed':>8}" if seeds >= 2 else "")]
    for s in result["settings"]:
        cells = "  ".join(f"{o['ensemble']:>8.4g}" for o in s["per_origin"])  # one seed: that seed's
        mark = "  <- picked" if s["label"] == result["picked"] else ""
        lines.append(f"{s['label']:<{width}}  {cells}  {s['mean_ensemble']:>8.4g}"
                     + (f"  {s['mean_single']:>8.4g}" if seeds >= 2 else "")
                     + mark)
    lines.append("origins: the values from " + ", ".join(o["first"] for o in where)
                 + f"; ranked by the {result['ranked_by']}" + ("; one seed: the mean over seeds and origins" if seeds >= 2 else ""))
    if "test" in result:
        t = result["test"]
        lines.append(f"test ({t['first']} .. {t['last']}, touched once, by {result['picked']!r} trained on everything "
                     f"before it): " + (f"ensemble RMSE {t['ensemble']:.4g}, seeds " if seeds >= 2 else "RMSE ")
                     + ", ".join(f"{v:.4g}" for v in t["seeds"]))
        lines.append(f"  {t['evaluate']}")
    return "\n".join(lines)

