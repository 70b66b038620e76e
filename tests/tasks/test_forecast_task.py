"""The forecasting task: windows from the training part, exact test metrics, naive baselines."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from archlab.errors import ConfigError
from archlab.registry import create_model, model_config, model_info
from archlab.tasks.forecast import ForecastConfig, ForecastTask
from archlab.train import RunSpec, evaluate, evaluate_model, resolve, train

SEASON = [0, 2, -1, 1]  # v_t = t + SEASON[t % 4]


def write_csv(path, values, dates=None):
    lines = ["date,value"] if dates is not None else ["value"]
    for i, v in enumerate(values):
        lines.append(f"{dates[i]},{v}" if dates is not None else f"{v}")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture
def toy(tmp_path):
    """40 values, v_t = t + SEASON[t % 4]: train t < 32, val 32..35, test 36..39 = (36, 39, 37, 40)."""
    return write_csv(tmp_path / "toy.csv", [t + SEASON[t % 4] for t in range(40)])


@pytest.fixture
def linear(tmp_path):
    return write_csv(tmp_path / "linear.csv", list(range(40)))


def test_baselines_equal_hand_computations(toy):
    task = ForecastTask(ForecastConfig(context_length=4, horizon=3, value_column="value", season=3), toy)
    assert (task.cut_val, task.cut_test) == (32, 36)
    b = task.baselines()
    # naive: from the origin v_35 = 36 -> errors 0, -3, -1, -4; one-step v_35..v_38 = 36, 36, 39, 37.
    assert b["naive"]["rmse"] == pytest.approx(math.sqrt(26 / 4)) and b["naive"]["mae"] == pytest.approx(2.0)
    assert b["naive"]["rmse_1step"] == pytest.approx(math.sqrt(22 / 4))
    assert b["naive"]["mae_1step"] == pytest.approx(2.0)
    # seasonal naive, m = 3: the last season v_33..v_35 = 35, 33, 36 repeated -> 35, 33, 36, 35;
    # one-step v_33..v_36 = 35, 33, 36, 36.
    s = b["seasonal_naive"]
    assert s["rmse"] == pytest.approx(math.sqrt(63 / 4)) and s["mae"] == pytest.approx(13 / 4)
    assert s["rmse_1step"] == pytest.approx(math.sqrt(54 / 4)) and s["mae_1step"] == pytest.approx(3.0)
    # m = 4 is the series' own season: every forecast is 4 below (the trend of one season).
    s4 = ForecastTask(ForecastConfig(context_length=4, horizon=3, value_column="value", season=4), toy).baselines()
    assert s4["seasonal_naive"] == pytest.approx({"rmse": 4.0, "mae": 4.0, "rmse_1step": 4.0, "mae_1step": 4.0})


def test_seasons_come_from_the_data_or_are_skipped_with_a_reason(tmp_path, toy):
    plain = ForecastTask(ForecastConfig(context_length=4, horizon=3, value_column="value"), toy)
    assert "seasonal_naive" not in plain.baselines() and "set season=N" in plain.season_note
    months = np.arange("2000-01", "2003-05", dtype="datetime64[M]").astype("datetime64[D]")  # 40 firsts
    monthly = write_csv(tmp_path / "monthly.csv", range(40), [str(d) for d in months])
    task = ForecastTask(ForecastConfig(context_length=4, horizon=3, value_column="value", date_column="date"), monthly)
    assert task.season == 12 and "seasonal_naive" in task.baselines()
    dates, _ = task.forecast_future(create_model("mlp_forecaster", context_length=4, horizon=3, hidden_size=4), 2)
    assert [str(d) for d in dates] == ["2003-05-01", "2003-06-01"]
    sunspots = ForecastTask(ForecastConfig(), "sunspots")
    assert sunspots.season == 11 and "solar cycle" in sunspots.season_note and len(sunspots.series.test) == 31


def test_co2_seasonal_naive_24_month_rmse_is_the_reference_figure():
    task = ForecastTask(ForecastConfig(), "co2")
    assert len(task.series.test) == 24 and task.season == 12
    assert task.baselines()["seasonal_naive"]["rmse"] == pytest.approx(2.07, abs=0.005)


def known_forecaster(task, slope: float):
    """A relative forecaster whose head ignores the window: x^_{t+k} = x_t + slope * k."""
    fields = task.model_fields(model_info("mlp_forecaster").model_class, model_config("mlp_forecaster"))
    model = create_model("mlp_forecaster", **fields, hidden_size=4).double()
    task.prepare_model(model)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(slope * torch.arange(1, task.config.horizon + 1) / model.std)  # z units
    return model


def test_metrics_are_exact_where_the_answer_is_known(linear, toy):
    # On v_t = t, a forecaster of x_t + k is exact everywhere, its horizon 3 rolled over the 4 test values.
    task = ForecastTask(ForecastConfig(context_length=4, horizon=3, value_column="value"), linear)
    for split in ("test", "val"):
        m = evaluate_model(known_forecaster(task, 1.0), task, torch.device("cpu"), "fp32", batch_size=3, split=split)
        assert m == pytest.approx({"rmse": 0.0, "mae": 0.0, "rmse_1step": 0.0, "mae_1step": 0.0, "loss": 0.0},
                                  abs=1e-9)
    # With slope 0 it is the naive forecast: the same scores as the baseline, whatever the batching.
    task = ForecastTask(ForecastConfig(context_length=4, horizon=3, value_column="value"), toy)
    model = known_forecaster(task, 0.0)
    for batch_size in (1, 3, 64):
        m = evaluate_model(model, task, torch.device("cpu"), "fp32", batch_size=batch_size)
        naive = task.baselines()["naive"]
        assert {k: m[k] for k in naive} == pytest.approx(naive, abs=1e-9)
    # The validation split is forecast from the training part alone: the naive forecast repeats its last value.
    val = evaluate_model(model, task, torch.device("cpu"), "fp32", batch_size=3, split="val")
    lo, hi = task.split_bounds("val")
    errors = task.values[lo:hi] - task.values[lo - 1]
    assert val["mae"] == pytest.approx(abs(errors).mean(), abs=1e-6)
    dates, actual, predicted = task.forecast_test(model)
    assert dates.tolist() == [36, 37, 38, 39] and actual.tolist() == [36, 39, 37, 40]
    # The one-step forecasts behind rmse_1step, for plots: here the naive ones.
    assert task.one_step_test(model) == pytest.approx(task.baseline_forecasts(one_step=True)["naive"])
    assert predicted == pytest.approx([36.0] * 4)


def test_training_windows_come_from_the_training_part_and_depend_on_seed_and_position(linear):
    task = ForecastTask(ForecastConfig(context_length=4, horizon=3, value_column="value"), linear)
    assert task.num_train_samples == 32 - 7 + 1
    x, y = task.train_batch(5, 64, seed=1, shard=slice(0, 64))
    assert x.shape == (64, 4, 1) and y.shape == (64, 3, 1)
    assert torch.equal(y[:, 0, 0], x[:, -1, 0] + 1), "the target follows the context"
    assert y.max() <= 31, "no training target reaches into validation"
    again, _ = task.train_batch(5, 64, seed=1, shard=slice(32, 64))
    assert torch.equal(again, x[32:])
    assert not torch.equal(task.train_batch(6, 64, 1, slice(0, 64))[0], x)


def test_val_size_moves_the_validation_cut_and_zero_trains_on_all_before_the_test(linear, tmp_path):
    held = ForecastTask(ForecastConfig(context_length=4, horizon=3, value_column="value", val_size=8), linear)
    assert (held.cut_val, held.cut_test) == (28, 36) and held.eval_splits == ("val", "test")
    refit = ForecastTask(ForecastConfig(context_length=4, horizon=3, value_column="value", val_size=0), linear)
    assert (refit.cut_val, refit.cut_test) == (36, 36) and refit.eval_splits == ("test",)
    assert refit.num_train_samples == 36 - 7 + 1
    y = torch.cat([refit.train_batch(p, 64, seed=0, shard=slice(0, 64))[1] for p in range(0, 640, 64)])
    assert y.max() == 35, "the refit's targets reach the last value before the test part, never into it"
    default = ForecastTask(ForecastConfig(context_length=4, horizon=3, value_column="value"), linear)
    assert np.array_equal(refit.series.test.values, default.series.test.values), "the test part stays put"
    with pytest.raises(ConfigError, match=r"val_size must be >= 0, or -1 for the data's own, got -2"):
        ForecastConfig(val_size=-2)
    with pytest.raises(ConfigError, match=r"select_metric='rmse' needs eval_every > 0"):
        resolve(RunSpec(task="forecast", model="gru_forecaster", data=linear, out=tmp_path / "run",
                        settings={"context_length": 4, "horizon": 3, "value_column": "value", "val_size": 0,
                                  "select_metric": "rmse"}))
    with pytest.raises(ConfigError, match=r"evaluate the validation split, and task 'forecast' .* \(is val_size 0\?\)"):
        train(RunSpec(task="forecast", model="gru_forecaster", data=linear, out=tmp_path / "run",
                        settings={"context_length": 4, "horizon": 3, "value_column": "value", "val_size": 0,
                                  "eval_every": 10, "select_metric": "rmse"}))


def test_drop_last_moves_the_test_part_to_an_earlier_origin(linear):
    """The series as it stood 6 steps earlier: 34 values, test 31..33 and validation 28..30 (10% of 34)."""
    task = ForecastTask(ForecastConfig(context_length=4, horizon=3, value_column="value", drop_last=6), linear)
    assert len(task.values) == 34 and (task.cut_val, task.cut_test) == (28, 31)
    assert task.series.test.values.tolist() == [31.0, 32.0, 33.0]
    assert task.baselines()["naive"]["rmse"] == pytest.approx(math.sqrt((1 + 4 + 9) / 3)), "from v_30 = 30"
    co2 = ForecastTask(ForecastConfig(val_size=0, drop_last=24), "co2")
    assert (co2.cut_test, len(co2.values)) == (478, 502) and str(co2.series.test.dates[0]) == "1998-01-01"
    with pytest.raises(ConfigError, match=r"drop_last must be >= 0, got -1"):
        ForecastConfig(drop_last=-1)
    with pytest.raises(ConfigError, match=r"co2: drop_last=600 leaves fewer than 3 of its 526 values"):
        ForecastTask(ForecastConfig(drop_last=600), "co2")


def test_a_data_set_name_stays_a_name_beside_a_folder_of_that_name(tmp_path, monkeypatch):
    (tmp_path / "co2").mkdir()  # e.g. an `archlab backtest --out co2`
    monkeypatch.chdir(tmp_path)
    task = ForecastTask(ForecastConfig(), "co2")
    assert task.data == "co2" and len(task.values) == 526
    write_csv(tmp_path / "mine.csv", list(range(40)))
    assert ForecastTask(ForecastConfig(value_column="value", context_length=4, horizon=2), "mine.csv").data == \
        str(tmp_path / "mine.csv"), "a path is still made absolute"


def test_the_co2_refit_recipe_trains_on_every_month_before_the_24_test_months(tmp_path):
    from archlab.train import load_config_file

    settings = load_config_file(Path(__file__).parents[2] / "configs" / "cnn_co2_refit.yaml")
    spec = RunSpec(task=settings.pop("task"), model=settings.pop("model"), data=settings.pop("data"),
                   out=tmp_path / "run", settings=settings)
    r = resolve(spec)
    held_out = ForecastTask(ForecastConfig(), "co2")
    assert (r.task.cut_val, r.task.cut_test) == (held_out.cut_test, held_out.cut_test) == (502, 502)
    assert r.task.eval_splits == ("test",) and r.train.max_steps == 800 and not r.train.selection_metric
    assert r.model.mean.item() == pytest.approx(held_out.values[:502].mean()), "normalised on train + val"


def test_resolve_fits_the_normalisation_on_the_training_part_only(tmp_path, toy):
    r = resolve(RunSpec(task="forecast", model="gru_forecaster", data=toy, out=tmp_path / "run",
                        settings={"context_length": 4, "horizon": 3, "value_column": "value", "hidden_size": 8}))
    train_part = np.array([t + SEASON[t % 4] for t in range(32)], dtype=np.float64)
    assert r.model.config.context_length == 4 and r.model.config.input_size == 1
    assert r.model.mean.item() == pytest.approx(train_part.mean())
    assert r.model.std.item() == pytest.approx(train_part.std())


def test_bad_input_is_a_clear_config_error(tmp_path, toy):
    with pytest.raises(ConfigError, match=r"value_column='price' is not a column; the header has 'value'"):
        ForecastTask(ForecastConfig(value_column="price"), toy)
    with pytest.raises(ConfigError, match=r"the training part has 32 values, too short for context_length=36 "
                                          r"\+ horizon=12 = 48"):
        ForecastTask(ForecastConfig(value_column="value"), toy)
    with pytest.raises(ConfigError, match=r"horizon must be >= 1, got 0"):
        ForecastConfig(horizon=0)
    with pytest.raises(ConfigError, match=r"mlp cannot be trained for task forecast \(mlp is trained by task "
                                          r"classify\); models that can: cnn_forecaster, .*transformer_forecaster"):
        resolve(RunSpec(task="forecast", model="mlp", data=toy, out=tmp_path / "run",
                        settings={"context_length": 4, "horizon": 3, "value_column": "value"}))


@pytest.mark.slow
def test_an_lstm_trained_on_co2_beats_the_seasonal_naive_forecast(tmp_path):
    """Real Mauna Loa CO2: 24 test months forecast from one origin, through the trainer."""
    out = tmp_path / "run"
    start = time.perf_counter()
    result = train(RunSpec(task="forecast", model="lstm_forecaster", data="co2", out=out,
                           settings={"max_steps": 150, "batch_size": 64, "lr": 1e-2, "log_every": 50}))
    seconds = time.perf_counter() - start
    m = result["metrics"]
    baselines = ForecastTask(ForecastConfig(), "co2").baselines()
    seasonal, naive = baselines["seasonal_naive"], baselines["naive"]
    assert m["rmse"] < 0.5 * seasonal["rmse"] and m["rmse_1step"] < naive["rmse_1step"], (
        f"after 150 steps ({seconds:.0f} s): {m} vs seasonal naive {seasonal}, naive {naive}")
    assert (out / "series.json").is_file()
    assert evaluate(out) == pytest.approx(m, rel=1e-6)  # the saved model and task give the same metrics
