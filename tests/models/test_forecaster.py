import math

import pytest
import torch

from archlab.checkpoint import from_pretrained
from archlab.errors import ConfigError
from archlab.models.forecaster import make_windows
from archlab.nn import set_impl
from archlab.registry import create_model
from archlab.utils.runtime import count_parameters

C, H = 24, 6


def seasonal_series(n=400):
    """Noiseless: a level of 10, a period-20 season of amplitude 3, a period-7 ripple of amplitude 1."""
    t = torch.arange(n, dtype=torch.float32)
    return 10 + 3 * torch.sin(2 * math.pi * t / 20) + torch.sin(2 * math.pi * t / 7)


def test_make_windows_pairs_each_context_with_what_follows():
    s = torch.arange(10.0)
    x, y = make_windows(s, 4, 2)
    assert x.shape == (5, 4, 1) and y.shape == (5, 2, 1)
    assert x[2, :, 0].tolist() == [2, 3, 4, 5] and y[2, :, 0].tolist() == [6, 7]


def test_normalization_is_fitted_on_the_training_split_and_saved(tmp_path):
    series = seasonal_series() + torch.linspace(0, 5, 400)  # a trend: train and full stats differ
    train = series[:280]
    model = create_model("rnn_forecaster", context_length=C, horizon=H, hidden_size=16).fit_normalization(train)
    assert torch.allclose(model.mean, train.mean().view(1)) and torch.allclose(model.std, train.std(unbiased=False).view(1))
    assert not torch.allclose(model.mean, series.mean().view(1), atol=0.1)
    assert {"mean", "std"} <= set(model.state_dict())
    model.save_pretrained(tmp_path)
    loaded = from_pretrained(tmp_path)
    assert torch.equal(loaded.mean, model.mean) and torch.equal(loaded.std, model.std)
    history = series[None, -C:]
    assert torch.equal(loaded.forecast(history), model.forecast(history))
    # forecast is in data units: the de-normalised forward
    assert torch.allclose(model.forecast(history), model.denormalize(model(history[..., None]))[..., 0])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_autoregressive_rollout_equals_rereading_history_and_predictions(cell):
    model = create_model("rnn_forecaster", cell=cell, strategy="autoregressive", context_length=C, horizon=H,
                         hidden_size=16, input_size=2).double().eval()
    model.fit_normalization(torch.randn(100, 2, dtype=torch.float64) * 3 + 1)
    history = torch.randn(3, C, 2, dtype=torch.float64)
    z_hat = model(history, horizon=5)
    z = model.normalize(history)
    for k in range(5):  # re-run the RNN from scratch over history + the predictions so far
        out, _ = model.rnn(torch.cat([z, z_hat[:, :k]], 1))
        assert torch.allclose(model.head(out[:, -1]), z_hat[:, k], atol=1e-12), "carried == recomputed (1e-12)"


@pytest.mark.parametrize("strategy", ["direct", "autoregressive"])
def test_parameter_count_is_exact(strategy):
    model = create_model("rnn_forecaster", cell="gru", strategy=strategy, input_size=3, hidden_size=16,
                         num_layers=2, horizon=H)
    gru = 3 * (16 * 3 + 16 * 16 + 32) + 3 * (16 * 16 + 16 * 16 + 32)
    outputs = 3 * (H if strategy == "direct" else 1)
    assert count_parameters(model) == gru + 16 * outputs + outputs  # buffers mean/std are not parameters


@pytest.mark.parametrize("strategy,cell", [("direct", "lstm"), ("autoregressive", "gru")])
def test_learns_a_seasonal_series_far_better_than_the_naive_forecast(strategy, cell):
    t = torch.arange(300, dtype=torch.float32)
    series = 10 + 3 * torch.sin(2 * math.pi * t / 12)      # noiseless, a 12-step season
    context, horizon, steps = 16, 4, 150
    train, test = series[:200], series[200 - context:]      # the test windows never enter training
    model = create_model("rnn_forecaster", cell=cell, strategy=strategy, context_length=context,
                         horizon=horizon, hidden_size=32, num_layers=1).fit_normalization(train)
    x, y = make_windows(train, context, horizon)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,))
        loss = torch.nn.functional.mse_loss(model(x[idx]), model.normalize(y[idx]))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.01 * sum(losses[:10]) / 10
    x_test, y_test = make_windows(test, context, horizon)
    pred = model.eval().forecast(x_test)                                   # (N, H, 1), data units
    rmse = (pred - y_test).pow(2).mean().sqrt().item()
    naive = (x_test[:, -1:] - y_test).pow(2).mean().sqrt().item()          # repeat the last value
    assert rmse < 0.1 and rmse < 0.05 * naive, f"RMSE {rmse:.3f} vs naive {naive:.3f} (amplitude 3)"


def test_forecast_accepts_one_series_as_2d_and_crops_to_the_context():
    model = create_model("rnn_forecaster", context_length=C, horizon=H, hidden_size=8).eval()
    history = torch.randn(2, C + 10)
    out = model.forecast(history)
    assert out.shape == (2, H)
    assert torch.equal(out, model.forecast(history[:, -C:]))  # only the last C steps are read
    assert model.forecast(history, horizon=3).shape == (2, 3)


def test_runs_under_bf16_autocast():
    model = create_model("rnn_forecaster", strategy="autoregressive", context_length=C, hidden_size=8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, C, 1), horizon=4)
    assert out.shape == (2, 4, 1) and torch.isfinite(out.float()).all()


def test_bad_input_raises_config_errors_naming_it():
    with pytest.raises(ConfigError, match=r"strategy must be one of \('direct', 'autoregressive'\), got 'seq2seq'"):
        create_model("rnn_forecaster", strategy="seq2seq")
    model = create_model("rnn_forecaster", context_length=C, horizon=H, hidden_size=8, input_size=2)
    with pytest.raises(ConfigError, match=r"history has 10 steps, Forecaster expects at least context_length=24"):
        model(torch.randn(1, 10, 2))
    with pytest.raises(ConfigError, match=r"history must be \(B, T, input_size=2\), got shape \(1, 30, 3\)"):
        model(torch.randn(1, 30, 3))
    with pytest.raises(ConfigError, match=r"horizon=8 exceeds the direct head's horizon=6"):
        model(torch.randn(1, 30, 2), horizon=8)
    with pytest.raises(ConfigError, match=r"train_series has 1 series, Forecaster expects input_size=2"):
        model.fit_normalization(torch.randn(50))
    with pytest.raises(ConfigError, match=r"series has 5 steps, windows need context_length \+ horizon = 30"):
        make_windows(torch.randn(5), C, H)


@pytest.mark.parametrize("strategy", ["direct", "autoregressive"])
def test_reference_and_fused_recurrences_agree(strategy):
    model = create_model("rnn_forecaster", strategy=strategy, context_length=C, horizon=H, hidden_size=8,
                         input_size=2).double()
    history, future = torch.randn(3, C, 2, dtype=torch.float64), torch.randn(3, H, 2, dtype=torch.float64)
    results = {}
    for impl in ("fused", "reference"):
        set_impl(model, impl)
        model.zero_grad()
        z_hat = model(history)
        torch.nn.functional.mse_loss(z_hat, model.normalize(future)).backward()
        results[impl] = (z_hat.detach(), [p.grad.clone() for p in model.parameters()])
    assert torch.allclose(results["fused"][0], results["reference"][0], atol=1e-10), "forecasts agree (1e-10)"
    for gf, gr in zip(results["fused"][1], results["reference"][1]):
        assert torch.allclose(gf, gr, atol=1e-10), "gradients agree (1e-10, float64)"
        assert gf.abs().sum() > 0, "every parameter gets a gradient"
