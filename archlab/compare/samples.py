"""What the report shows besides the numbers: baselines and a few predictions of every trained cell.

Each row's task is rebuilt from a trained cell's run directory (``load_for_evaluation``: the same
data, tokenizers and normalisation the cell was trained with), then

    classify   majority-class accuracy; each cell's labels for the first 16 test images
    forecast   the task's naive / seasonal-naive baselines; each cell's forecast of the test months
    seq2seq    each cell's pronunciations of a few test words

Everything kept is plain JSON-able data, so a report can be written again from ``result.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.compare.results import RowResult

N_IMAGES = 16
N_WORDS = 8


def _as_list(x) -> list:
    """Plain JSON values of an array (numbers as numbers, dates as text)."""
    return [v if isinstance(v, (int, float)) else str(v) for v in np.asarray(x).tolist()]


def _baselines(task, metric: str, wanted: tuple[str, ...]) -> dict[str, float]:
    """The forecast task's baselines the row asks for, scored by the row's metric."""
    found = task.baselines()
    return {name: float(found[name][metric]) for name in wanted if name in found and metric in found[name]}


def _classify(row: RowResult, loaded: list[tuple[Any, Any, Any]]) -> None:
    task = loaded[0][2]
    counts = torch.bincount(task.test_y, minlength=len(task.classes))
    row.baselines = {"majority_class": float(counts.max() / counts.sum())}
    x = task.test_x[:N_IMAGES]
    row.extra = {"images": x.mean(1).tolist(), "labels": task.test_y[:N_IMAGES].tolist(),
                 "classes": [str(c) for c in task.classes]}
    for cell, model, t in loaded:
        batch = next(iter(t.eval_batches(N_IMAGES)))
        with torch.no_grad():
            cell.samples = t.predict(model, batch).tolist()


def _forecast(row: RowResult, loaded: list[tuple[Any, Any, Any]]) -> None:
    task = loaded[0][2]
    row.baselines = _baselines(task, row.row.metric, row.row.baselines)
    for cell, model, t in loaded:
        dates, actual, predicted = t.forecast_test(model)
        cell.samples = {"predicted": _as_list(predicted)}
        row.extra = {"dates": [str(d) for d in _as_list(dates)], "actual": _as_list(actual),
                     "unit": t.series.unit or "value"}
    h_dates, h_values = task.history_before_test()
    row.extra.update(history_dates=[str(d) for d in _as_list(h_dates)], history=_as_list(h_values))
    row.extra["baseline_forecasts"] = {k: _as_list(v) for k, v in task.baseline_forecasts().items()
                                       if k in row.row.baselines}


def _seq2seq(row: RowResult, loaded: list[tuple[Any, Any, Any]]) -> None:
    for cell, model, t in loaded:
        cell.samples = [[src, pred, list(refs)] for src, pred, refs in t.sample_predictions(model, N_WORDS)]


COLLECTORS = {"classify": _classify, "forecast": _forecast, "seq2seq": _seq2seq}


def collect(row: RowResult) -> None:
    """Fill ``row.baselines``, ``row.extra`` and every ok cell's ``samples`` (best effort: a report
    without pictures is still a report, so a failure here is noted, never fatal)."""
    from archlab.checkpoint import from_pretrained
    from archlab.train import load_for_evaluation
    from archlab.train.checkpointing import TASK_FILE

    collector = COLLECTORS.get(row.row.task)
    ok = [c for c in row.cells if c.status == "ok"]
    if collector is None or not ok:
        return
    try:
        loaded, tasks = [], {}
        for cell in ok:
            # Cells trained on the same data with the same task settings share one task object (the
            # saved tokenizers and statistics are fitted from that data alone, so they are equal).
            key = (Path(cell.run_dir) / TASK_FILE).read_text()
            if key in tasks:
                model, task = from_pretrained(cell.run_dir), tasks[key]
            else:
                model, task = load_for_evaluation(cell.run_dir)
                tasks[key] = task
            loaded.append((cell, model.eval(), task))
        with torch.no_grad():
            collector(row, loaded)
    except Exception as e:  # noqa: BLE001
        row.extra["samples_error"] = f"{type(e).__name__}: {e}"
