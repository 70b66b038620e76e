"""Forecasters: a window of a time series in, the next values out.

An example is the window of ``context_length`` values before a point of the test part; the model
forecasts its ``horizon`` values after it, in the data's units, and the page plots the window,
the forecast and what really followed. Index i is the window ending i steps into the test part.
"""

from __future__ import annotations

import io

import numpy as np
import torch

from archlab.explain import html as H
from archlab.explain.subjects.base import Example, Subject


class ForecastSubject(Subject):
    kind = "forecast"
    what = "forecaster"
    loss_text = "the mean squared error of the normalised forecast of the window's next values (the training loss)"

    def __init__(self, target, *, resize: bool = False):
        super().__init__(target, resize=resize)
        c = self.model.config
        self.C, self.H = c.context_length, c.horizon

    def default_examples(self, count: int) -> list[Example]:
        if self.task is None:
            (x,) = self.model.example_input(1)
            return [Example("a random window (no data: a registry model)", (x,), tokens=self._steps())]
        last = max(self.test_size() - self.H, 0)  # the last window whose whole horizon is known
        return [self.test_example(i) for i in sorted({min(k * self.H, last) for k in range(count)})]

    def _steps(self) -> list[str]:
        return [f"t-{self.C - 1 - i}" if i < self.C - 1 else "t" for i in range(self.C)]

    def test_size(self) -> int:
        return len(self.task.values) - self.task.cut_test

    def test_example(self, index: int) -> Example:
        v, end = self.task.values, self.task.cut_test + index
        x = torch.tensor(v[end - self.C:end], dtype=torch.float32).view(1, -1, 1)     # (1, C, 1)
        y = torch.tensor(v[end:end + self.H], dtype=torch.float32).view(1, -1, 1)     # (1, <= H, 1)
        dates = self.task.dates_or_steps(end - self.C, min(end + self.H, len(v)))
        return Example(f"the window ending {index} steps into the test part (at {dates[self.C - 1]})", (x,),
                       target=y, tokens=self._steps(), info={"dates": dates})

    def loss(self, ex: Example) -> torch.Tensor:
        z_hat = self.model(*ex.args).float()                      # (1, H, 1), normalised
        if ex.target is None:  # no values followed (a registry model's random window): the forecast's size
            return z_hat.pow(2).mean()
        y = ex.target
        return (z_hat[:, : y.shape[1]] - self.model.normalize(y).float()).pow(2).mean()

    def prediction(self, page, examples: list[Example]) -> None:
        s = page.section("prediction", "Prediction", "The window the model read, its forecast of the next "
                         f"{self.H} values, and what really followed.")
        cells = []
        for ex in examples:
            with torch.no_grad():
                forecast = self.model.forecast(ex.args[0], self.H)[0, :, 0].numpy()
            history = ex.args[0][0, :, 0].numpy()
            actual = ex.target[0, :, 0].numpy() if ex.target is not None else None
            rmse = float(np.sqrt(np.mean((forecast[: len(actual)] - actual) ** 2))) if actual is not None else None
            cap = H.e(ex.title) + (f"; RMSE {rmse:.3g}" if rmse is not None else "")
            cells.append(H.png_picture(_plot(history, forecast, actual), caption=cap))
        s.add(f"<div class='flex'>{''.join(cells)}</div>")


def _plot(history: np.ndarray, forecast: np.ndarray, actual: np.ndarray | None) -> bytes:
    """The window, the forecast and the actual values as a PNG (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    C = len(history)
    fig, ax = plt.subplots(figsize=(5.2, 2.6), dpi=90)
    ax.plot(range(C), history, color="#3b528b", label="window read")
    steps = range(C, C + len(forecast))
    if actual is not None:
        ax.plot(range(C, C + len(actual)), actual, color="#333333", marker=".", label="actual")
    ax.plot(steps, forecast, color="#d6604d", marker=".", label="forecast")
    ax.axvline(C - 0.5, color="#999999", lw=0.8, ls="--")
    ax.set_xlabel("step")
    ax.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
