"""Time-series forecasting: the last C values of a series in, the next H out.

A series (``--data co2`` by default, ``sunspots``, or a CSV file with ``value_column`` and an
optional ``date_column``) is cut in time order into train | val | test (``archlab.data.timeseries``).
``val_size`` sets how many values the validation part holds; 0 trains on everything before the test
part, the refit that follows a choice of settings made on validation (no validation curve then).
The model is any forecaster (``rnn_forecaster``, ``lstm_forecaster``, ``cnn_forecaster``,
``transformer_forecaster``, ``mlp_forecaster`` ...): ``forward(history)`` -> the normalised forecast
z^ (B, H, 1), ``forecast(history, n)`` -> n values in data units. Its normalisation
z = (x - mu) / sigma is fitted on the training part only (``prepare_model``) and saved with it.

Training: windows (x_{s-C..s-1} -> x_{s..s+H-1}) drawn from the training part, each batch from
``(seed, position)``; the loss is the mean squared error in normalised units,

    L = 1/(B H) sum_b sum_k (z^_{b,k} - z_{b,k})^2.

Evaluation, on a held-out part P -- ``val`` (evaluated during training, the one to early-stop
on) or ``test`` (touched once, at the end) -- every metric in the data's units and lower is
better (n = length of P, T = the index just before it):

    rmse, mae              the forecast of the whole of P made at the forecast origin just before
                           it, from everything before P only (train for val; train + val for
                           test): e_k = x^_{T+k} - x_{T+k}, k = 1..n (a direct head shorter than n
                           rolls forward on its own forecasts); rmse = sqrt(1/n sum_k e_k^2),
                           mae = 1/n sum_k |e_k|
    rmse_1step, mae_1step  rolling one-step-ahead forecasts over P, each from the true history up
                           to it: e_k = x^_{T+k | x_{<T+k}} - x_{T+k}
    loss                   the training loss L on the windows whose targets lie in P (absent when
                           P is shorter than the horizon)

The evaluation batches are that one forecast origin, then the one-step windows, then the loss
windows, each tagged with its kind; ``evaluate_batch`` returns squared and absolute errors with
their counts, so the sums over batches (and processes) give the metrics exactly.

Baselines beside the model (``baselines()``), on the same forecasts: ``naive`` repeats the last
value (x^_{T+k} = x_T; one-step: x_{T+k-1}); ``seasonal_naive`` repeats the last season of m
values (x^_{T+k} = x_{T-m+((k-1) mod m)}; one-step: x_{T+k-m}), m = 12 for monthly data, 11 years
(the solar cycle) for the sunspots, the ``season`` field otherwise.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from archlab.checkpoint import unwrap
from archlab.data.timeseries import make_windows
from archlab.errors import check
from archlab.models.interfaces import Forecaster, SeriesData
from archlab.tasks.base import SPLITS, Batch, Task, count_from_sums, generator_for, register_task
from archlab.utils.io import write_text_atomic
from archlab.utils.runtime import eval_mode

SERIES_FILE = "series.json"
MULTI_STEP, ONE_STEP, WINDOWS = 1, 2, 3  # the kinds of evaluation batch
# Series whose season is not a calendar one: (period in steps, why).
KNOWN_SEASONS = {"sunspots": (11, "the ~11-year solar cycle")}


@dataclass
class ForecastConfig:
    context_length: int = 36          # C: values of history the model reads
    horizon: int = 12                 # H: values ahead each training window asks for
    value_column: str | None = None   # CSV data: the column of values
    date_column: str | None = None    # CSV data: the column of ISO dates (optional)
    season: int = 0                   # the seasonal-naive period; 0 = from the data (12 for monthly)
    val_size: int = -1                # values held out for validation before the test part; -1 = the
                                      # data's own (24 months of co2, 31 years of sunspots, 10% of a
                                      # CSV), 0 = none: train on all of train + val (a refit)
    drop_last: int = 0                # values removed from the end first: the series as it stood that
                                      # many steps earlier (a backtest origin); 0 = all of it

    def __post_init__(self):
        check(self.context_length >= 1, f"context_length must be >= 1, got {self.context_length}")
        check(self.horizon >= 1, f"horizon must be >= 1, got {self.horizon}")
        check(self.season >= 0, f"season must be >= 0 (0 = from the data), got {self.season}")
        check(self.val_size >= -1, f"val_size must be >= 0, or -1 for the data's own, got {self.val_size}")
        check(self.drop_last >= 0, f"drop_last must be >= 0, got {self.drop_last}")


def infer_season(name: str, frequency: str, dates: np.ndarray | None) -> tuple[int | None, str]:
    """The period of the series' season in steps, and where it comes from (or why there is none)."""
    if name in KNOWN_SEASONS:
        period, why = KNOWN_SEASONS[name]
        return period, why
    if frequency == "monthly":
        return 12, "12 months"
    if dates is not None and len(dates) >= 2:
        gap = float(np.median(np.diff(dates).astype(np.int64)))  # days between observations
        for lo, hi, period, why in ((1, 1, 7, "7 days"), (7, 7, 52, "52 weeks"), (28, 31, 12, "12 months"),
                                    (89, 92, 4, "4 quarters")):
            if lo <= gap <= hi:
                return period, why
    return None, f"no season is known for {frequency or 'this'} data (set season=N to give one)"


def future_dates(dates: np.ndarray | None, steps: int, first_index: int) -> np.ndarray:
    """The dates of the ``steps`` values after ``dates``; step numbers from ``first_index`` without dates."""
    if dates is None or len(dates) < 2:
        return np.arange(first_index, first_index + steps)
    ahead = np.arange(1, steps + 1)
    months = dates.astype("datetime64[M]")
    if (months.astype("datetime64[D]") == dates).all():  # firsts of months: step in whole months
        step = int(np.median(np.diff(months).astype(np.int64)))
        return (months[-1] + step * ahead).astype("datetime64[D]")
    return dates[-1] + (dates[-1] - dates[-2]) * ahead


def _scores(predicted: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    e = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    return math.sqrt(float(np.mean(e ** 2))), float(np.mean(np.abs(e)))


@register_task
class ForecastTask(Task):
    name = "forecast"
    Config = ForecastConfig
    requires = Forecaster
    default_data = "co2"
    metric_modes = {"rmse": "min", "mae": "min", "rmse_1step": "min", "mae_1step": "min", "loss": "min"}
    sum_keys = ("loss_sum", "count", "sq_err_multi", "abs_err_multi", "n_multi",
                "sq_err_1step", "abs_err_1step", "n_1step")
    saved_files = (SERIES_FILE,)

    def __init__(self, config: ForecastConfig, data: str | None = None, saved: Path | None = None):
        super().__init__(config, data, saved)
        from archlab.data.timeseries import load_series

        split = {"drop_last": config.drop_last, **({} if config.val_size < 0 else {"n_val": config.val_size})}
        self.series = load_series(self.data, config.value_column, config.date_column, **split)
        s, C, H = self.series, config.context_length, config.horizon
        self.values = s.values                                 # float64 (T,)
        self.cut_val, self.cut_test = len(s.train), len(s.train) + len(s.val)
        check(len(s.train) >= C + H,
              f"--data {self.data!r}: the training part has {len(s.train)} values, too short for "
              f"context_length={C} + horizon={H} = {C + H}")
        if config.season:
            self.season, self.season_note = config.season, f"season={config.season}"
        else:
            self.season, self.season_note = infer_season(s.name, s.frequency, s.dates)
        if self.season is not None:
            check(self.season <= self.cut_test,
                  f"--data {self.data!r}: season={self.season} is longer than the {self.cut_test} values "
                  "before the test part")
        self.trained_on: dict[str, Any] | None = None
        if saved is not None and (Path(saved) / SERIES_FILE).is_file():
            self.trained_on = json.loads((Path(saved) / SERIES_FILE).read_text())
        self._baselines = self._compute_baselines()

    # -- what the data fixes -------------------------------------------------------------------
    def model_fields(self, model_class: type, config: Any) -> dict[str, Any]:
        data = SeriesData(1, self.config.context_length, self.config.horizon)
        return model_class.forecaster_fields(data, config)

    def prepare_model(self, model: torch.nn.Module) -> None:
        """Fit the model's normalisation on the training part only."""
        model.fit_normalization(torch.tensor(self.series.train.values, dtype=torch.float32))

    @property
    def num_train_samples(self) -> int:
        """Training windows: every start whose context and horizon fit in the training part."""
        return self.cut_val - self.config.context_length - self.config.horizon + 1

    # -- batches -------------------------------------------------------------------------------
    def _windows(self, starts: np.ndarray, horizon: int) -> Batch:
        """(history (B, C, 1), target (B, horizon, 1)): the C values before each start and what follows."""
        x, y = make_windows(self.values, self.config.context_length, horizon,
                            starts=np.asarray(starts) - self.config.context_length)
        x = torch.tensor(x, dtype=torch.float32)[..., None]  # (B, C, 1)
        return x, torch.tensor(y, dtype=torch.float32)[..., None]  # (B, horizon, 1)

    def train_batch(self, position: int, batch_size: int, seed: int, shard: slice) -> Batch:
        # The global batch's window starts depend only on (seed, position).
        g = generator_for(seed, position)
        offsets = torch.randint(self.num_train_samples, (batch_size,), generator=g)[shard]
        return self._windows(offsets.numpy() + self.config.context_length, self.config.horizon)

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return SPLITS if self.cut_test > self.cut_val else ("test",)

    def split_bounds(self, split: str) -> tuple[int, int]:
        """[first, end) indices of a held-out part of the series."""
        self.check_split(split)
        return (self.cut_val, self.cut_test) if split == "val" else (self.cut_test, len(self.values))

    def eval_batches(self, batch_size: int, split: str = "test") -> Iterator[Batch]:
        lo, hi = self.split_bounds(split)
        history = torch.tensor(self.values[:lo], dtype=torch.float32).view(1, -1, 1)   # (1, T, 1)
        part = torch.tensor(self.values[lo:hi], dtype=torch.float32).view(1, -1, 1)    # (1, n, 1)
        yield history, part, torch.tensor(MULTI_STEP)
        one_step = np.arange(max(lo, self.config.context_length), hi)
        for i in range(0, len(one_step), batch_size):
            x, y = self._windows(one_step[i:i + batch_size], 1)
            yield x, y, torch.tensor(ONE_STEP)
        windows = np.arange(max(lo, self.config.context_length), hi - self.config.horizon + 1)  # targets inside
        for i in range(0, len(windows), batch_size):
            yield (*self._windows(windows[i:i + batch_size], self.config.horizon), torch.tensor(WINDOWS))

    # -- loss and metrics ----------------------------------------------------------------------
    def _window_losses(self, model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of each window: mean squared error of the normalised forecast, (B,)."""
        dtype = model.mean.dtype
        z_hat = model(x.to(dtype)).float()                                    # (B, H, 1), normalised
        return (z_hat - model.normalize(y.to(dtype)).float()).pow(2).mean(dim=(1, 2))

    def step(self, model, batch):
        x, y = batch
        return self._window_losses(model, x, y).mean()

    def evaluate_batch(self, model, batch):
        x, y, kind = batch
        sums = dict.fromkeys(self.sum_keys, torch.zeros((), dtype=torch.float64))
        if int(kind) == WINDOWS:
            window_loss = self._window_losses(model, x, y)
            sums.update(loss_sum=window_loss.sum().double(),
                        count=torch.tensor(float(len(window_loss)), dtype=torch.float64))
            return sums
        predicted = model.forecast(x.to(model.mean.dtype), y.shape[1])  # (B, n, 1), data units
        e = predicted.double() - y.double()
        suffix = "_multi" if int(kind) == MULTI_STEP else "_1step"
        sums.update({f"sq_err{suffix}": e.pow(2).sum(), f"abs_err{suffix}": e.abs().sum(),
                     f"n{suffix}": torch.tensor(float(e.numel()), dtype=torch.float64)})
        return sums

    def metrics(self, sums):
        n = count_from_sums(sums, "n_multi")
        out = {"rmse": math.sqrt(sums["sq_err_multi"] / n), "mae": sums["abs_err_multi"] / n}
        if sums["n_1step"] > 0:
            out.update(rmse_1step=math.sqrt(sums["sq_err_1step"] / sums["n_1step"]),
                       mae_1step=sums["abs_err_1step"] / sums["n_1step"])
        if sums["count"] > 0:
            out["loss"] = sums["loss_sum"] / sums["count"]
        return out

    # -- baselines and forecasts for people --------------------------------------------------------
    def _baseline_forecasts(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """name -> (multi-step forecast of the test part, its one-step forecasts)."""
        v, T, n = self.values, self.cut_test, len(self.values)
        forecasts = {"naive": (np.full(n - T, v[T - 1]), v[T - 1:n - 1])}
        if self.season is not None:
            m = self.season
            forecasts["seasonal_naive"] = (v[T - m:T][np.arange(n - T) % m], v[T - m:n - m])
        return forecasts

    def _compute_baselines(self) -> dict[str, dict[str, float]]:
        test = self.values[self.cut_test:]
        out = {}
        for name, (multi, one) in self._baseline_forecasts().items():
            rmse, mae = _scores(multi, test)
            rmse_1, mae_1 = _scores(one, test)
            out[name] = {"rmse": rmse, "mae": mae, "rmse_1step": rmse_1, "mae_1step": mae_1}
        return out

    def baselines(self) -> dict[str, dict[str, float]]:
        """``{"naive": {metric: value}, "seasonal_naive": {...}}`` on the model's test forecasts.

        ``seasonal_naive`` is absent when the series has no known season (``season_note`` says why).
        """
        return {k: dict(v) for k, v in self._baselines.items()}

    def baseline_forecasts(self, one_step: bool = False) -> dict[str, np.ndarray]:
        """Each baseline's multi-step forecast of the test part (or its one-step forecasts over it) --
        what ``baselines()`` scores -- for plots."""
        return {name: (one if one_step else multi).copy() for name, (multi, one) in self._baseline_forecasts().items()}

    def history_before_test(self) -> tuple[np.ndarray, np.ndarray]:
        """(dates, values) of train + val: all a multi-step test forecast may read."""
        return self.dates_or_steps(0, self.cut_test), self.values[:self.cut_test].copy()

    def dates_or_steps(self, lo: int, hi: int) -> np.ndarray:
        return self.series.dates[lo:hi] if self.series.dates is not None else np.arange(lo, hi)

    def forecast_test(self, model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dates, actual, predicted) of the multi-step forecast of the test part, for plots.

        Dates are step numbers for a series without dates."""
        predicted = self._forecast(model, self.values[:self.cut_test], len(self.values) - self.cut_test)
        return self.dates_or_steps(self.cut_test, len(self.values)), self.values[self.cut_test:].copy(), predicted

    @torch.no_grad()
    def one_step_test(self, model: torch.nn.Module) -> np.ndarray:
        """The model's one-step-ahead forecasts over the test part, each from the true history before it
        (what ``rmse_1step`` scores), for plots."""
        core = unwrap(model)
        with eval_mode(core):
            x, _ = self._windows(np.arange(self.cut_test, len(self.values)), 1)                 # (n, C, 1)
            x = x.to(dtype=core.mean.dtype, device=core.mean.device)
            return core.forecast(x, 1)[:, 0, 0].double().cpu().numpy()                         # (n,)

    def forecast_future(self, model: torch.nn.Module, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """(dates, predicted) of the ``steps`` values after the end of the whole series."""
        check(steps >= 1, f"horizon must be >= 1, got {steps}")
        dates = future_dates(self.series.dates, steps, len(self.values))
        return dates, self._forecast(model, self.values, steps)

    @staticmethod
    def _forecast(model: torch.nn.Module, history: np.ndarray, steps: int) -> np.ndarray:
        core = unwrap(model)
        with eval_mode(core):
            x = torch.tensor(history, dtype=core.mean.dtype, device=core.mean.device).view(1, -1, 1)  # (1, T, 1)
            return core.forecast(x, steps)[0, :, 0].double().cpu().numpy()

    # -- what travels with a checkpoint --------------------------------------------------------
    def save(self, directory: Path) -> None:
        s = self.series

        def date(i: int) -> str | None:
            return None if s.dates is None else str(s.dates[i])

        meta = {"series": s.name, "frequency": s.frequency, "unit": s.unit, "season": self.season,
                "n_train": len(s.train), "n_val": len(s.val), "n_test": len(s.test),
                "train_first": date(0), "train_last": date(self.cut_val - 1),
                "train_mean": float(np.mean(s.train.values)), "train_std": float(np.std(s.train.values))}
        write_text_atomic(Path(directory) / SERIES_FILE, json.dumps(meta, indent=1) + "\n")
