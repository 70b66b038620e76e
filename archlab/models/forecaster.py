"""Multi-step time-series forecasting with a recurrent encoder (stock prices, weather, CO2 ...).

Given the last C observations x_{t-C+1..t} (each a vector of F series), predict the next H:

    z_s   = (x_s - mu) / sigma                       normalisation, mu and sigma fitted on the
                                                     training split only, stored as buffers
    h_s   = RNN(z_s, h_{s-1})                        s = t-C+1 .. t   (rnn / lstm / gru cell)

    direct:          [z^_{t+1}, ..., z^_{t+H}] = W_d h_t + b_d      one head emits all H steps
    autoregressive:  z^_{t+1} = W_a h_t + b_a;  then h_{t+k} = RNN(z^_{t+k}, h_{t+k-1}),
                     z^_{t+k+1} = W_a h_{t+k} + b_a                   each prediction is fed back

    x^ = mu + sigma * z^                             de-normalised forecast

The direct strategy trains one output per lead time and does not compound its own errors; the
autoregressive one forecasts any horizon with one small head, carrying the state so each new step
costs one recurrence step (not a re-read of the history).

``forward`` works in normalised units (what a loss should compare: ``model.normalize(future)``);
``forecast`` returns values in the data's units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from archlab.checkpoint import PretrainedMixin
from archlab.errors import check
from archlab.models.rnn_lm import check_cell, recurrent_layer
from archlab.registry import build_config, register_model

STRATEGIES = ("direct", "autoregressive")


def make_windows(series: torch.Tensor, context_length: int, horizon: int, stride: int = 1):
    """Slide over ``series`` (T, F) or (T,): inputs (N, C, F) and the targets that follow (N, H, F)."""
    series = series[:, None] if series.dim() == 1 else series  # (T, F)
    check(series.dim() == 2, f"series must be (T,) or (T, F), got shape {tuple(series.shape)}")
    need = context_length + horizon
    check(series.shape[0] >= need,
          f"series has {series.shape[0]} steps, windows need context_length + horizon = {need}")
    w = series.unfold(0, need, stride).transpose(1, 2)  # (N, C + H, F)
    return w[:, :context_length], w[:, context_length:]


@dataclass
class ForecasterConfig:
    cell: str = "lstm"              # "rnn" | "lstm" | "gru"
    input_size: int = 1             # F: series observed (and forecast) at each step
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.0
    context_length: int = 48        # C: steps of history the model reads
    horizon: int = 12               # H: steps ahead it is trained to forecast
    strategy: str = "direct"        # "direct" | "autoregressive"

    def __post_init__(self):
        check_cell(self.cell)
        check(self.strategy in STRATEGIES, f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        for name in ("input_size", "hidden_size", "num_layers", "context_length", "horizon"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


class Forecaster(PretrainedMixin, nn.Module):
    def __init__(self, config: ForecasterConfig):
        super().__init__()
        self.config = config
        F = config.input_size
        # mu and sigma: buffers, so they travel with the weights in every checkpoint
        self.register_buffer("mean", torch.zeros(F))
        self.register_buffer("std", torch.ones(F))
        self.rnn = recurrent_layer(config.cell, F, config.hidden_size, config.num_layers, config.dropout)
        steps_out = config.horizon if config.strategy == "direct" else 1
        self.head = nn.Linear(config.hidden_size, steps_out * F)  # W_d (H*F outputs) or W_a (F outputs)

    # ---- normalisation ---------------------------------------------------------------------------
    @torch.no_grad()
    def fit_normalization(self, train_series: torch.Tensor, eps: float = 1e-8) -> "Forecaster":
        """Set mu, sigma from the training split: (T,) / (T, F) / (N, T, F), per series over the rest."""
        x = train_series[:, None] if train_series.dim() == 1 else train_series
        check(x.shape[-1] == self.config.input_size,
              f"train_series has {x.shape[-1]} series, Forecaster expects input_size={self.config.input_size}")
        x = x.reshape(-1, x.shape[-1]).to(self.mean.dtype)  # (N * T, F)
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0, unbiased=False).clamp_min(eps))
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean

    # ---- model -----------------------------------------------------------------------------------
    def _check_history(self, history: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        check(history.dim() == 3 and history.shape[-1] == cfg.input_size,
              f"history must be (B, T, input_size={cfg.input_size}), got shape {tuple(history.shape)}")
        check(history.shape[1] >= cfg.context_length,
              f"history has {history.shape[1]} steps, Forecaster expects at least "
              f"context_length={cfg.context_length}")
        return history[:, -cfg.context_length:]  # (B, C, F): the last C steps

    def forward(self, history: torch.Tensor, horizon: int | None = None) -> torch.Tensor:
        """history (B, T >= C, F) in data units -> normalised forecast z^ (B, horizon, F)."""
        cfg = self.config
        horizon = cfg.horizon if horizon is None else horizon
        check(horizon >= 1, f"horizon must be >= 1, got {horizon}")
        z = self.normalize(self._check_history(history))    # (B, C, F)
        B, F = z.shape[0], cfg.input_size
        out, state = self.rnn(z)                             # h_t for every step: (B, C, H)
        if cfg.strategy == "direct":
            check(horizon <= cfg.horizon,
                  f"horizon={horizon} exceeds the direct head's horizon={cfg.horizon} (use strategy="
                  "'autoregressive' for longer forecasts)")
            return self.head(out[:, -1]).view(B, cfg.horizon, F)[:, :horizon]  # (B, H, F)
        preds = [self.head(out[:, -1])]                      # z^_{t+1}: (B, F)
        for _ in range(horizon - 1):
            out, state = self.rnn(preds[-1][:, None], state)  # feed the prediction back: (B, 1, H)
            preds.append(self.head(out[:, -1]))
        return torch.stack(preds, dim=1)                     # (B, horizon, F)

    @torch.no_grad()
    def forecast(self, history: torch.Tensor, horizon: int | None = None) -> torch.Tensor:
        """Forecast in data units. history (B, T, F), or (B, T) for a single series -> (B, horizon[, F])."""
        single = history.dim() == 2 and self.config.input_size == 1
        z_hat = self(history[..., None] if single else history, horizon)
        x_hat = self.denormalize(z_hat)
        return x_hat[..., 0] if single else x_hat


@register_model("rnn_forecaster", family="rnn",
                description="Multi-step forecaster: RNN/LSTM/GRU encoder, direct or autoregressive head")
def rnn_forecaster(**config) -> Forecaster:
    return Forecaster(build_config(ForecasterConfig, {}, config))
