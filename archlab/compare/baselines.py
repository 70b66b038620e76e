"""Baselines beside the networks: the naive forecasts, and classical models from real libraries.

Every baseline sees what the networks see -- the same training split, the same held-out test split
-- and any choice it makes is made on the validation split:

    majority_class   accuracy of always answering the most frequent training class
    naive            the last value repeated (``ForecastTask.baselines``)
    seasonal_naive   the last season repeated (``ForecastTask.baselines``)
    sarima           SARIMA(1,1,1)(1,1,1)_12 (statsmodels ``SARIMAX``), fitted by maximum likelihood
                     on everything before the test part; its multi-step forecast of the test part,
                     and its one-step forecasts over it with the fitted parameters held fixed
    ar9              AR(9) (statsmodels ``AutoReg``, least squares with a constant) fitted the same
                     way: x^_t = c + sum_{k=1..9} phi_k x_{t-k}
    svm              an RBF support-vector machine (scikit-learn ``SVC``) on the pixels in [0, 1];
                     its C from {1, 3, 10} by validation accuracy, then scored once on test

Each returns ``{metric: value}`` on the test split (forecasts also keep their forecast of the test
part for the plots). They are deterministic: one fit per row, whatever the number of seeds.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from archlab.errors import ConfigError

LABELS = {"majority_class": "majority class", "naive": "naive", "seasonal_naive": "seasonal naive",
          "sarima": "SARIMA", "ar9": "AR(9)", "svm": "RBF SVM"}


def _rmse_mae(predicted, actual) -> tuple[float, float]:
    e = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return math.sqrt(float(np.mean(e ** 2))), float(np.mean(np.abs(e)))


def _forecast_scores(multi: np.ndarray, one_step: np.ndarray, actual: np.ndarray) -> dict[str, Any]:
    rmse, mae = _rmse_mae(multi, actual)
    rmse_1, mae_1 = _rmse_mae(one_step, actual)
    return {"rmse": rmse, "mae": mae, "rmse_1step": rmse_1, "mae_1step": mae_1, "forecast": multi.tolist(),
            "one_step": one_step.tolist()}


def sarima(task, order=(1, 1, 1), seasonal_order=(1, 1, 1, 12)) -> dict[str, Any]:
    """SARIMA fitted on train + val of a forecast task, scored on its test part."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    history, test = task.values[:task.cut_test], task.values[task.cut_test:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter; the scores say how good the fit is
        fitted = SARIMAX(history, order=order, seasonal_order=seasonal_order).fit(disp=False)
        multi = np.asarray(fitted.forecast(len(test)))
        one_step = np.asarray(fitted.append(test).fittedvalues)[-len(test):]  # parameters held fixed
    return _forecast_scores(multi, one_step, test)


def autoregression(task, lags: int = 9) -> dict[str, Any]:
    """AR(lags) fitted on train + val of a forecast task, scored on its test part."""
    from statsmodels.tsa.ar_model import AutoReg

    history, test = task.values[:task.cut_test], task.values[task.cut_test:]
    fitted = AutoReg(history, lags=lags, trend="c").fit()
    c, phi = float(fitted.params[0]), np.asarray(fitted.params[1:])   # phi (lags,): phi_1 .. phi_p
    values, T = task.values, task.cut_test
    # One-step: x^_t = c + sum_k phi_k x_{t-k} from the true history, t in the test part.
    one_step = np.array([c + phi @ values[t - lags:t][::-1] for t in range(T, len(values))])
    multi = np.asarray(fitted.forecast(len(test)))
    return _forecast_scores(multi, one_step, test)


def _pixels(task, split: str) -> tuple[np.ndarray, np.ndarray]:
    if split == "train":
        x, y = task.train_x, task.train_y
    else:
        x, y = task.split_images(split)
    return x.flatten(1).numpy().astype(np.float64), y.numpy()   # (N, C*H*W) in [0, 1], (N,)


def _chosen_on_validation(make, grid, task) -> dict[str, Any]:
    """Fit ``make(c)`` for each c of ``grid`` on train, keep the best on validation, score it on test."""
    x, y = _pixels(task, "train")
    xv, yv = _pixels(task, "val")
    xt, yt = _pixels(task, "test")
    best = None
    for c in grid:
        model = make(c).fit(x, y)
        val = float((model.predict(xv) == yv).mean())
        if best is None or val > best[0]:
            best = (val, c, model)
    val, c, model = best
    predicted = model.predict(xt)
    return {"accuracy": float((predicted == yt).mean()), "val_accuracy": val, "C": c,
            "predicted": predicted.tolist()}


def svm(task, grid=(1.0, 3.0, 10.0)) -> dict[str, Any]:
    from sklearn.svm import SVC

    return _chosen_on_validation(lambda c: SVC(kernel="rbf", C=c, gamma="scale"), grid, task)


def majority_class(task) -> dict[str, Any]:
    import torch

    majority = int(torch.bincount(task.train_y).argmax())
    return {"accuracy": float((task.test_y == majority).double().mean())}


def naive_forecasts(task) -> dict[str, dict[str, Any]]:
    multi, one = task.baseline_forecasts(), task.baseline_forecasts(one_step=True)
    return {name: {**scores, "forecast": multi[name].tolist(), "one_step": one[name].tolist()}
            for name, scores in task.baselines().items()}


CLASSICAL = {"sarima": sarima, "ar9": autoregression, "svm": svm, "majority_class": majority_class}


def compute(names: tuple[str, ...], task) -> dict[str, dict[str, Any]]:
    """``{name: {metric: value, ...}}`` of the baselines ``names`` on ``task``'s test split."""
    out: dict[str, dict[str, Any]] = {}
    naive, own = None, task.baselines()
    for name in names:
        if name in ("naive", "seasonal_naive"):  # the task's own, with their forecasts for the plots
            naive = naive if naive is not None else naive_forecasts(task)
            if name in naive:
                out[name] = naive[name]
        elif name in own:  # any other baseline the task defines itself, e.g. a table's majority class
            out[name] = own[name]
        elif name in CLASSICAL:
            out[name] = CLASSICAL[name](task)
        else:
            raise ConfigError(f"unknown baseline {name!r}; known: naive, seasonal_naive, {', '.join(CLASSICAL)}")
    return out
