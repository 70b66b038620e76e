"""Multi-step time-series forecasting (stock prices, weather, CO2 ...), one model, four encoders.

Given the last C observations x_{t-C+1..t} (each a vector of F series), predict the next H:

    z_s   = (x_s - mu) / sigma                       normalisation, mu and sigma fitted on the
                                                     training split only, stored as buffers
    e     = Encoder(z_{t-C+1..t})                    a summary of the window, (D,)

    direct:          [z^_{t+1}, ..., z^_{t+H}] = W_d e + b_d        one head emits all H steps
    autoregressive:  z^_{t+1} = W_a e + b_a, fed back in to forecast z^_{t+2}, ...

    x^ = mu + sigma * z^                             de-normalised forecast

The encoder (``encoder``) is what differs between the families; D = ``hidden_size``:

    rnn          h_s = RNN(z_s, h_{s-1}), e = h_t                (rnn / lstm / gru ``cell``)
    cnn          causal dilated convolutions over time, layer l = 1..L with dilation 2^(l-1):
                     a^l_s = ReLU(sum_{j<k} W^l_j a^{l-1}_{s - j 2^(l-1)} + b^l) (+ a^{l-1}_s, l > 1)
                 no position sees a later one; the receptive field is 1 + (k-1)(2^L - 1) steps;
                 e = a^L_t (``pooling="last"``) or the mean of a^L over the window
    transformer  a_s = W_in z_s + PE(s), then L pre-norm Transformer encoder layers (self-attention
                 over the window), e = the last position or the mean (``pooling``)
    mlp          e = MLP(flatten(z_{t-C+1..t})): [Linear, ReLU, Dropout] x L on the (C*F,) window

Autoregressive rollout: the recurrent encoder carries its state, so each new step costs one
recurrence step, h_{t+k} = RNN(z^_{t+k}, h_{t+k-1}); the other encoders re-read the window
shifted by one, [z_{t-C+1+k}, ..., z_t, z^_{t+1}, ..., z^_{t+k}].

With ``relative`` the window is read and forecast relative to an anchor a, z_s - a, and a is added
back to the forecast: the network sees shapes rather than levels, so a trend that leaves the
training range (CO2, prices) stays within what it has learned. ``anchor`` picks a:

    last    a = z_t                       the last value (as NLinear)
    mean    a = (1/C) sum_s z_s           the window's mean (as RevIN's centring): one noisy
                                          observation no longer shifts the whole forecast

The direct strategy trains one output per lead time and does not compound its own errors; the
autoregressive one forecasts any horizon with one small head. ``forecast`` reaches beyond a direct
head's H too, by rolling forward: it appends its own forecasts to the history and reads again.

``forward`` works in normalised units (what a loss should compare: ``model.normalize(future)``);
``forecast`` returns values in the data's units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.checkpoint import PretrainedMixin
from archlab.errors import check
from archlab.models.interfaces import Forecaster
from archlab.nn import Conv1d, LayerNorm, SinusoidalPositionalEncoding, TransformerEncoder, TransformerEncoderLayer
from archlab.nn.sequence import check_cell, recurrent_layer
from archlab.registry import build_config, register_model

STRATEGIES = ("direct", "autoregressive")
ENCODERS = ("rnn", "cnn", "transformer", "mlp")
POOLINGS = ("last", "mean")
ANCHORS = ("last", "mean")


@dataclass
class ForecasterConfig:
    encoder: str = "rnn"            # what reads the window: "rnn" | "cnn" | "transformer" | "mlp"
    cell: str = "lstm"              # rnn encoder: "rnn" | "lstm" | "gru"
    input_size: int = 1             # F: series observed (and forecast) at each step
    hidden_size: int = 64           # D: RNN state, CNN channels, Transformer d_model, MLP width
    num_layers: int = 2             # L: recurrent / convolutional / Transformer / dense layers
    dropout: float = 0.0
    context_length: int = 48        # C: steps of history the model reads
    horizon: int = 12               # H: steps ahead it is trained to forecast
    strategy: str = "direct"        # "direct" | "autoregressive"
    relative: bool = False          # read and forecast each window relative to an anchor
    anchor: str = "last"            # relative: the window's "last" value or its "mean"
    kernel_size: int = 3            # cnn: taps k of each causal convolution
    num_heads: int = 4              # transformer: attention heads (hidden_size must divide by it)
    dim_feedforward: int = 0        # transformer: feed-forward width; 0 = 4 * hidden_size
    pooling: str = "last"           # cnn / transformer: the last position's features, or the "mean"

    def __post_init__(self):
        check(self.encoder in ENCODERS, f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        check_cell(self.cell)
        check(self.strategy in STRATEGIES, f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        check(self.pooling in POOLINGS, f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        check(self.anchor in ANCHORS, f"anchor must be one of {ANCHORS}, got {self.anchor!r}")
        for name in ("input_size", "hidden_size", "num_layers", "context_length", "horizon", "kernel_size",
                     "num_heads"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        check(self.dim_feedforward >= 0, f"dim_feedforward must be >= 0, got {self.dim_feedforward}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        if self.encoder == "transformer":
            check(self.hidden_size % self.num_heads == 0 and self.hidden_size % 2 == 0,
                  f"the transformer encoder needs an even hidden_size divisible by num_heads={self.num_heads}, "
                  f"got hidden_size={self.hidden_size}")


# ---- encoders of the window (the recurrent one is archlab.models.rnn_lm.recurrent_layer) -----------

class CausalConvEncoder(nn.Module):
    """L causal convolutions with dilations 1, 2, 4, ...: (B, C, F) -> (B, C, D).

    a^l_s = ReLU(sum_{j<k} W^l_j a^{l-1}_{s - j d_l} + b^l) (+ a^{l-1}_s for l > 1), d_l = 2^(l-1);
    the input is padded on the left only, so step s never sees a later step.
    """

    def __init__(self, input_size: int, channels: int, num_layers: int, kernel_size: int, dropout: float = 0.0):
        super().__init__()
        self.kernel_size = kernel_size
        self.convs = nn.ModuleList(
            Conv1d(input_size if i == 0 else channels, channels, kernel_size, dilation=2 ** i)
            for i in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    @property
    def receptive_field(self) -> int:
        return 1 + (self.kernel_size - 1) * (2 ** len(self.convs) - 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        a = z.transpose(1, 2)  # (B, F, C): channels first, time last
        for i, conv in enumerate(self.convs):
            pad = (self.kernel_size - 1) * conv.dilation[0]
            out = self.dropout(F.relu(conv(F.pad(a, (pad, 0)))))  # (B, D, C): left padding keeps it causal
            a = out if i == 0 else a + out
        return a.transpose(1, 2)  # (B, C, D)


class TransformerWindowEncoder(nn.Module):
    """a_s = W_in z_s + PE(s), then pre-norm Transformer encoder layers: (B, C, F) -> (B, C, D)."""

    def __init__(self, input_size: int, d_model: int, num_layers: int, nhead: int, dim_feedforward: int,
                 dropout: float, max_len: int):
        super().__init__()
        self.W_in = nn.Linear(input_size, d_model)
        self.positional = SinusoidalPositionalEncoding(d_model, max_len=max_len)
        layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation="gelu",
                                        batch_first=True, norm_first=True)
        self.layers = TransformerEncoder(layer, num_layers, norm=LayerNorm(d_model))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(self.positional(self.W_in(z)))  # (B, C, D)


def window_mlp(in_features: int, width: int, num_layers: int, dropout: float) -> nn.Sequential:
    """[Linear, ReLU, Dropout] x L on the flattened window: (B, C*F) -> (B, D)."""
    layers = []
    for i in range(num_layers):
        layers += [nn.Linear(in_features if i == 0 else width, width), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class WindowForecaster(Forecaster, PretrainedMixin, nn.Module):
    """Reads the last C values with one of four encoders and forecasts the next H (the equations above)."""

    config_class = ForecasterConfig

    def __init__(self, config: ForecasterConfig):
        super().__init__()
        self.config = config
        cfg, n_series = config, config.input_size
        # mu and sigma: buffers, so they travel with the weights in every checkpoint
        self.register_buffer("mean", torch.zeros(n_series))
        self.register_buffer("std", torch.ones(n_series))
        if cfg.encoder == "rnn":  # named `rnn` as in every checkpoint saved before the other encoders
            self.rnn = recurrent_layer(cfg.cell, n_series, cfg.hidden_size, cfg.num_layers, cfg.dropout)
        elif cfg.encoder == "cnn":
            self.encoder = CausalConvEncoder(n_series, cfg.hidden_size, cfg.num_layers, cfg.kernel_size, cfg.dropout)
        elif cfg.encoder == "transformer":
            self.encoder = TransformerWindowEncoder(n_series, cfg.hidden_size, cfg.num_layers, cfg.num_heads,
                                                    cfg.dim_feedforward or 4 * cfg.hidden_size, cfg.dropout,
                                                    cfg.context_length)
        else:
            self.encoder = window_mlp(cfg.context_length * n_series, cfg.hidden_size, cfg.num_layers, cfg.dropout)
        steps_out = cfg.horizon if cfg.strategy == "direct" else 1
        self.head = nn.Linear(cfg.hidden_size, steps_out * n_series)  # W_d (H*F outputs) or W_a (F outputs)

    # ---- normalisation ---------------------------------------------------------------------------
    @torch.no_grad()
    def fit_normalization(self, train_series: torch.Tensor, eps: float = 1e-8) -> "WindowForecaster":
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

    def _summary(self, z: torch.Tensor) -> torch.Tensor:
        """e: what the cnn / transformer / mlp encoder reads from a window z (B, C, F) -> (B, D)."""
        if self.config.encoder == "mlp":
            return self.encoder(z.flatten(1))  # (B, C * F) -> (B, D)
        a = self.encoder(z)  # (B, C, D)
        return a[:, -1] if self.config.pooling == "last" else a.mean(1)

    def forward(self, history: torch.Tensor, horizon: int | None = None) -> torch.Tensor:
        """history (B, T >= C, F) in data units -> normalised forecast z^ (B, horizon, F)."""
        cfg = self.config
        horizon = cfg.horizon if horizon is None else horizon
        check(horizon >= 1, f"horizon must be >= 1, got {horizon}")
        if cfg.strategy == "direct":
            check(horizon <= cfg.horizon,
                  f"horizon={horizon} exceeds the direct head's horizon={cfg.horizon} (use strategy="
                  "'autoregressive', or forecast(), which rolls forward, for longer forecasts)")
        z = self.normalize(self._check_history(history))    # (B, C, F)
        if not cfg.relative:
            anchor = torch.zeros_like(z[:, -1:])                                   # 0: (B, 1, F)
        else:
            anchor = z[:, -1:] if cfg.anchor == "last" else z.mean(1, keepdim=True)  # a: (B, 1, F)
        z = z - anchor
        B, n_series = z.shape[0], cfg.input_size
        if cfg.encoder == "rnn":
            out, state = self.rnn(z)                         # h_t for every step: (B, C, D)
            e = out[:, -1]
        else:
            e = self._summary(z)                             # (B, D)
        if cfg.strategy == "direct":
            z_hat = self.head(e).view(B, cfg.horizon, n_series)[:, :horizon]  # (B, H, F)
            return z_hat + anchor
        preds = [self.head(e)]                               # z^_{t+1}: (B, F)
        for _ in range(horizon - 1):
            if cfg.encoder == "rnn":                         # carry the state: one recurrence step
                out, state = self.rnn(preds[-1][:, None], state)  # (B, 1, D)
                e = out[:, -1]
            else:                                            # re-read the window shifted by one step
                z = torch.cat([z[:, 1:], preds[-1][:, None]], dim=1)  # (B, C, F)
                e = self._summary(z)
            preds.append(self.head(e))
        return torch.stack(preds, dim=1) + anchor            # (B, horizon, F)

    @torch.no_grad()
    def forecast(self, history: torch.Tensor, horizon: int | None = None) -> torch.Tensor:
        """Forecast in data units. history (B, T, F), or (B, T) for a single series -> (B, horizon[, F]).

        Any horizon: a direct head beyond its H rolls forward, H steps at a time, appending its own
        forecasts to the history and reading the last C steps again.
        """
        cfg = self.config
        horizon = cfg.horizon if horizon is None else horizon
        check(horizon >= 1, f"horizon must be >= 1, got {horizon}")
        single = history.dim() == 2 and cfg.input_size == 1
        history = history[..., None] if single else history  # (B, T, F)
        step = horizon if cfg.strategy == "autoregressive" else cfg.horizon
        parts, done = [], 0
        while done < horizon:
            n = min(step, horizon - done)
            x_hat = self.denormalize(self(history, n))       # (B, n, F)
            parts.append(x_hat)
            done += n
            if done < horizon:
                history = torch.cat([history, x_hat.to(history.dtype)], dim=1)  # feed the forecast back
        x_hat = torch.cat(parts, dim=1)                       # (B, horizon, F)
        return x_hat[..., 0] if single else x_hat


# Each name only sets defaults; every field can still be given (a saved config.json gives them all).
# The named ones are small and read windows relative to their last value, which suits trending series.
_SMALL = {"hidden_size": 32, "num_layers": 1, "relative": True}
LSTM_DEFAULTS = {**_SMALL, "encoder": "rnn", "cell": "lstm"}
GRU_DEFAULTS = {**_SMALL, "encoder": "rnn", "cell": "gru"}
CNN_DEFAULTS = {**_SMALL, "encoder": "cnn", "num_layers": 4, "kernel_size": 3}
TRANSFORMER_DEFAULTS = {**_SMALL, "encoder": "transformer", "num_layers": 2, "num_heads": 4}
MLP_DEFAULTS = {**_SMALL, "encoder": "mlp", "hidden_size": 64, "num_layers": 2}


@register_model("rnn_forecaster", family="rnn",
                description="Multi-step forecaster: RNN/LSTM/GRU encoder, direct or autoregressive head")
def rnn_forecaster(**config) -> WindowForecaster:
    return WindowForecaster(build_config(ForecasterConfig, {}, config))


@register_model("lstm_forecaster", family="rnn", description="Forecaster reading the window with an LSTM")
def lstm_forecaster(**config) -> WindowForecaster:
    return WindowForecaster(build_config(ForecasterConfig, LSTM_DEFAULTS, config))


@register_model("gru_forecaster", family="rnn", description="Forecaster reading the window with a GRU")
def gru_forecaster(**config) -> WindowForecaster:
    return WindowForecaster(build_config(ForecasterConfig, GRU_DEFAULTS, config))


@register_model("cnn_forecaster", family="cnn",
                description="Forecaster reading the window with causal dilated 1-D convolutions")
def cnn_forecaster(**config) -> WindowForecaster:
    return WindowForecaster(build_config(ForecasterConfig, CNN_DEFAULTS, config))


@register_model("transformer_forecaster", family="transformer",
                description="Forecaster reading the window with a Transformer encoder")
def transformer_forecaster(**config) -> WindowForecaster:
    return WindowForecaster(build_config(ForecasterConfig, TRANSFORMER_DEFAULTS, config))


@register_model("mlp_forecaster", family="mlp", description="Forecaster reading the flattened window with an MLP")
def mlp_forecaster(**config) -> WindowForecaster:
    return WindowForecaster(build_config(ForecasterConfig, MLP_DEFAULTS, config))
