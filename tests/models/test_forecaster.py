import math

import pytest
import torch

from archlab.checkpoint import from_pretrained
from archlab.errors import ConfigError
from archlab.data.timeseries import make_windows
from archlab.nn import set_impl
from archlab.registry import create_model
from archlab.utils.runtime import count_parameters

C, H = 24, 6


def seasonal_series(n=400):
    """Noiseless: a level of 10, a period-20 season of amplitude 3, a period-7 ripple of amplitude 1."""
    t = torch.arange(n, dtype=torch.float32)
    return 10 + 3 * torch.sin(2 * math.pi * t / 20) + torch.sin(2 * math.pi * t / 7)


def windows(series: torch.Tensor, context: int, horizon: int):
    """Every (history (N, C, 1), what follows (N, H, 1)) pair of a series, as the forecast task makes them."""
    x, y = make_windows(series.numpy(), context, horizon)
    return torch.tensor(x)[..., None], torch.tensor(y)[..., None]


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


@pytest.mark.parametrize("cell,relative", [("lstm", False), ("gru", True), ("rnn", False)])
def test_autoregressive_rollout_equals_rereading_history_and_predictions(cell, relative):
    model = create_model("rnn_forecaster", cell=cell, strategy="autoregressive", context_length=C, horizon=H,
                         hidden_size=16, input_size=2, relative=relative).double().eval()
    model.fit_normalization(torch.randn(100, 2, dtype=torch.float64) * 3 + 1)
    history = torch.randn(3, C, 2, dtype=torch.float64)
    z = model.normalize(history)
    anchor = z[:, -1:] if relative else 0.0
    z_hat = model(history, horizon=5) - anchor
    z = z - anchor
    for k in range(5):  # re-run the RNN from scratch over history + the predictions so far
        out, _ = model.rnn(torch.cat([z, z_hat[:, :k]], 1))
        assert torch.allclose(model.head(out[:, -1]), z_hat[:, k], atol=1e-12), "carried == recomputed (1e-12)"


@pytest.mark.parametrize("strategy", ["direct", "autoregressive"])
def test_relative_forecasts_move_with_the_level_of_the_series(strategy):
    model = create_model("rnn_forecaster", strategy=strategy, context_length=C, horizon=H, hidden_size=8,
                         relative=True).double().fit_normalization(torch.randn(50, dtype=torch.float64) * 2 + 5)
    history = torch.randn(2, C, dtype=torch.float64)
    shifted = model.forecast(history + 100.0)
    assert torch.allclose(shifted, model.forecast(history) + 100.0, atol=1e-9), "x + c -> x^ + c (1e-9)"


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
    x, y = windows(train, context, horizon)
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
    x_test, y_test = windows(test, context, horizon)
    pred = model.eval().forecast(x_test)                                   # (N, H, 1), data units
    rmse = (pred - y_test).pow(2).mean().sqrt().item()
    naive = (x_test[:, -1:] - y_test).pow(2).mean().sqrt().item()          # repeat the last value
    assert rmse < 0.1 and rmse < 0.05 * naive, f"RMSE {rmse:.3f} vs naive {naive:.3f} (amplitude 3)"


def test_beats_naive_and_seasonal_naive_forecasts_on_real_co2_data():
    """Mauna Loa CO2 (shipped with statsmodels), monthly: a rising trend and a 12-month season.

    The test years lie above anything seen in training; reading windows relative to their last
    value lets the model follow the trend."""
    import statsmodels.api as sm

    monthly = sm.datasets.co2.load_pandas().data["co2"].resample("MS").mean().ffill()
    series = torch.tensor(monthly.values, dtype=torch.float32)           # 526 months, 1958-2001
    context, horizon, steps = 36, 12, 150
    n_train = int(len(series) * 0.8)
    train, test = series[:n_train], series[n_train - context:]
    model = create_model("rnn_forecaster", cell="lstm", strategy="direct", context_length=context,
                         horizon=horizon, hidden_size=32, num_layers=1, relative=True).fit_normalization(train)
    x, y = windows(train, context, horizon)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,))
        loss = torch.nn.functional.mse_loss(model(x[idx]), model.normalize(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    x_test, y_test = windows(test, context, horizon)
    rmse = (model.eval().forecast(x_test) - y_test).pow(2).mean().sqrt().item()
    naive = (x_test[:, -1:] - y_test).pow(2).mean().sqrt().item()              # last value
    seasonal = (x_test[:, -12:] - y_test).pow(2).mean().sqrt().item()          # same month last year
    assert rmse < 0.7 * seasonal and rmse < 0.4 * naive, (
        f"RMSE {rmse:.2f} ppm vs seasonal naive {seasonal:.2f}, naive {naive:.2f}")


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


# ---- the encoders: rnn, cnn, transformer, mlp -------------------------------------------------------

NAMED = ["lstm_forecaster", "gru_forecaster", "cnn_forecaster", "transformer_forecaster", "mlp_forecaster"]


@pytest.mark.parametrize("name", NAMED)
@pytest.mark.parametrize("strategy", ["direct", "autoregressive"])
def test_every_encoder_runs_forward_and_backward_and_every_parameter_learns(name, strategy):
    model = create_model(name, strategy=strategy, context_length=C, horizon=H, hidden_size=16, input_size=2)
    model.fit_normalization(torch.randn(100, 2) * 3 + 1)
    history, future = torch.randn(3, C + 5, 2), torch.randn(3, H, 2)
    z_hat = model(history)
    assert z_hat.shape == (3, H, 2)
    torch.nn.functional.mse_loss(z_hat, model.normalize(future)).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"{pname} gets no gradient"
    # beyond the trained horizon: the autoregressive loop, or the direct head rolled forward
    assert model.eval().forecast(history, horizon=2 * H + 1).shape == (3, 2 * H + 1, 2)


def test_named_forecasters_register_their_family_and_only_set_defaults():
    from archlab.registry import model_info

    families = {name: model_info(name).family for name in ["rnn_forecaster", *NAMED]}
    assert families == {"rnn_forecaster": "rnn", "lstm_forecaster": "rnn", "gru_forecaster": "rnn",
                        "cnn_forecaster": "cnn", "transformer_forecaster": "transformer", "mlp_forecaster": "mlp"}
    assert create_model("gru_forecaster").config.cell == "gru"
    assert create_model("cnn_forecaster").config.encoder == "cnn"
    assert create_model("cnn_forecaster", hidden_size=8, kernel_size=2).config.kernel_size == 2  # overridable


def test_cnn_encoder_is_causal_with_the_stated_receptive_field():
    model = create_model("cnn_forecaster", context_length=40, num_layers=3, kernel_size=3, hidden_size=8).double()
    encoder = model.encoder
    assert encoder.receptive_field == 1 + 2 * (1 + 2 + 4)
    z = torch.randn(1, 40, 1, dtype=torch.float64, requires_grad=True)
    a = encoder(z)                                          # (1, 40, D)
    assert a.shape == (1, 40, 8)
    a[0, 30].sum().backward()                               # features at step 30 ...
    reaches = (z.grad[0, :, 0] != 0).nonzero().flatten()
    assert reaches.max() == 30, "no step sees a later one"
    assert reaches.min() >= 30 - encoder.receptive_field + 1, "nothing beyond the receptive field"


@pytest.mark.parametrize("name", ["cnn_forecaster", "transformer_forecaster", "mlp_forecaster"])
def test_autoregressive_rollout_rereads_the_window_shifted_by_its_predictions(name):
    model = create_model(name, strategy="autoregressive", context_length=C, horizon=H, hidden_size=16,
                         relative=False).double().eval()
    model.fit_normalization(torch.randn(100, dtype=torch.float64) * 2 + 5)
    history = torch.randn(2, C, 1, dtype=torch.float64)
    z_hat = model(history, horizon=4)                       # (2, 4, 1)
    z = model.normalize(history)
    for k in range(4):                                      # one step from the window + predictions so far
        window = torch.cat([z, z_hat[:, :k]], 1)[:, -C:]
        assert torch.allclose(model.head(model._summary(window)), z_hat[:, k], atol=1e-12), "(1e-12)"


def test_forecast_beyond_a_direct_head_appends_its_own_forecasts():
    model = create_model("mlp_forecaster", context_length=C, horizon=H, hidden_size=16).double().eval()
    model.fit_normalization(torch.randn(100, dtype=torch.float64) + 3)
    history = torch.randn(2, C + 3, dtype=torch.float64)
    long = model.forecast(history, horizon=H + 4)           # (2, H + 4)
    first = model.forecast(history)                         # (2, H)
    then = model.forecast(torch.cat([history, first], 1), horizon=4)
    assert torch.equal(long, torch.cat([first, then], 1))


@pytest.mark.parametrize("anchor", ["last", "mean"])
@pytest.mark.parametrize("strategy", ["direct", "autoregressive"])
def test_a_network_that_outputs_zero_forecasts_its_anchor(anchor, strategy):
    """With W_d = 0, b_d = 0 the network adds nothing: x^ = a, the window's last value or its mean."""
    model = create_model("cnn_forecaster", context_length=C, horizon=H, anchor=anchor, strategy=strategy).double()
    model.fit_normalization(torch.randn(50, dtype=torch.float64) * 2 + 5)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.zero_()
    history = torch.randn(3, C + 5, dtype=torch.float64)
    window = history[:, -C:]
    expected = window[:, -1:] if anchor == "last" else window.mean(1, keepdim=True)
    assert torch.allclose(model.forecast(history, H), expected.expand(3, H), atol=1e-12), "(1e-12)"


def test_the_mean_anchor_keeps_forecasts_moving_with_the_level_and_is_saved(tmp_path):
    model = create_model("mlp_forecaster", context_length=C, horizon=H, anchor="mean").double().eval()
    model.fit_normalization(torch.randn(50, dtype=torch.float64) * 2 + 5)
    history = torch.randn(2, C, dtype=torch.float64)
    assert torch.allclose(model.forecast(history + 100.0), model.forecast(history) + 100.0, atol=1e-9), "(1e-9)"
    model.save_pretrained(tmp_path)
    again = from_pretrained(tmp_path).double()
    assert again.config.anchor == "mean"
    assert torch.allclose(again.forecast(history), model.forecast(history), atol=1e-6), "saved in fp32 (1e-6)"
    with pytest.raises(ConfigError, match=r"anchor must be one of \('last', 'mean'\), got 'first'"):
        create_model("cnn_forecaster", anchor="first")


@pytest.mark.parametrize("name", NAMED)
def test_relative_forecasts_of_every_encoder_move_with_the_level(name):
    model = create_model(name, context_length=C, horizon=H, hidden_size=16).double().eval()
    model.fit_normalization(torch.randn(50, dtype=torch.float64) * 2 + 5)
    history = torch.randn(2, C, dtype=torch.float64)
    assert torch.allclose(model.forecast(history + 100.0), model.forecast(history) + 100.0, atol=1e-9), "(1e-9)"


def test_a_config_saved_before_the_encoders_existed_still_loads(tmp_path):
    import json

    model = create_model("rnn_forecaster", cell="gru", context_length=C, horizon=H, hidden_size=8).eval()
    model.fit_normalization(torch.randn(60) * 4 + 2)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    old_fields = {"cell", "input_size", "hidden_size", "num_layers", "dropout", "context_length", "horizon",
                  "strategy", "relative"}
    saved["config"] = {k: v for k, v in saved["config"].items() if k in old_fields}
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = from_pretrained(tmp_path)
    assert loaded.config.encoder == "rnn"
    assert {k.split(".")[0] for k in loaded.state_dict()} == {"mean", "std", "rnn", "head"}
    history = torch.randn(2, C)
    assert torch.equal(loaded.forecast(history), model.forecast(history))


def test_bad_encoder_settings_raise_config_errors_naming_them():
    with pytest.raises(ConfigError, match=r"encoder must be one of \('rnn', 'cnn', 'transformer', 'mlp'\), got 'tcn'"):
        create_model("rnn_forecaster", encoder="tcn")
    with pytest.raises(ConfigError, match=r"even hidden_size divisible by num_heads=4, got hidden_size=10"):
        create_model("transformer_forecaster", hidden_size=10)
    with pytest.raises(ConfigError, match=r"pooling must be one of \('last', 'mean'\), got 'max'"):
        create_model("cnn_forecaster", pooling="max")
    with pytest.raises(ConfigError, match=r"kernel_size must be positive, got 0"):
        create_model("cnn_forecaster", kernel_size=0)


@pytest.mark.parametrize("name", ["cnn_forecaster", "transformer_forecaster", "mlp_forecaster"])
def test_every_encoder_runs_under_bf16_autocast(name):
    model = create_model(name, strategy="autoregressive", context_length=C, hidden_size=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, C, 1), horizon=4)
    assert out.shape == (2, 4, 1) and torch.isfinite(out.float()).all()
