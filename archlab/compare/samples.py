"""What the report shows besides the numbers: what each trained cell got wrong, and the row's data.

Computed where the cell was trained (its task is loaded there already), from the model it saved:

    classify   the confusion matrix on the test split; the first misclassified test digits (pixels,
               true and predicted class)
    forecast   the cell's multi-step forecast of the test part, and its one-step forecasts over it
    seq2seq    the cell's pronunciations of a fixed list of test words, beside their references

and, once per row, what every cell shares (the row's ``extra``): class names; the series' history,
test dates and values and the baselines' forecasts. Everything kept is plain JSON-able data, so a
report can be written again from ``result.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

N_WRONG = 12   # misclassified digits kept per architecture
N_WORDS = 10   # G2P words shown per architecture
HISTORY = 48   # values of the series drawn before the test part


def _as_list(x) -> list:
    """Plain JSON values of an array (numbers as numbers, dates as text)."""
    return [v if isinstance(v, (int, float)) else str(v) for v in np.asarray(x).tolist()]


@torch.no_grad()
def _classify(task, model) -> dict[str, Any]:
    predicted = torch.cat([model(x).argmax(-1) for x, _ in task.eval_batches(256, "test")])
    truth = task.test_y
    K = len(task.classes)
    confusion = torch.bincount(truth * K + predicted, minlength=K * K).view(K, K)  # (true, predicted)
    wrong = torch.nonzero(predicted != truth).flatten()
    shown = wrong[:N_WRONG]
    return {"confusion": confusion.tolist(), "n_wrong": len(wrong), "n_test": len(truth),
            "wrong": [{"index": int(i), "true": int(truth[i]), "predicted": int(predicted[i]),
                       "pixels": np.round(task.test_x[i].mean(0).numpy(), 3).tolist()} for i in shown]}


def _forecast(task, model) -> dict[str, Any]:
    _, _, predicted = task.forecast_test(model)
    return {"predicted": _as_list(predicted), "one_step": _as_list(task.one_step_test(model))}


def _seq2seq(task, model) -> list[list]:
    return [[src, pred, list(refs)] for src, pred, refs in task.sample_predictions(model, N_WORDS)]


COLLECTORS = {"classify": _classify, "forecast": _forecast, "seq2seq": _seq2seq}


def cell_samples(run_dir: str) -> Any:
    """The report's predictions of the model trained in ``run_dir`` (None for a task without any)."""
    from archlab.train import load_for_evaluation

    model, task = load_for_evaluation(run_dir)
    collector = COLLECTORS.get(task.name)
    return None if collector is None else collector(task, model.eval())


def row_extra(task) -> dict[str, Any]:
    """What the report draws once per row: class names; a series' recent history and test part."""
    if task.name == "classify":
        return {"classes": [str(c) for c in task.classes]}
    if task.name == "forecast":
        from archlab.inspect.pictures import series_context

        return series_context(task, HISTORY)
    return {}
