"""`archlab backtest`: settings ranked on earlier forecast origins; the test part touched once, by the pick."""

from __future__ import annotations

import json

import numpy as np
import pytest

from archlab.cli import main
from archlab.compare.backtest import format_table, origins, parse_variant, run_backtest
from archlab.errors import ConfigError
from archlab.train import evaluate

# A small recipe: 60 steps of a small MLP on a CSV series; 100 values -> a test part of 10 (10%).
RECIPE = {"task": "forecast", "model": "mlp_forecaster", "value_column": "value", "context_length": 12,
          "horizon": 4, "hidden_size": 16, "max_steps": 60, "batch_size": 16, "lr": 1e-2, "log_every": 60}


@pytest.fixture
def series_csv(tmp_path):
    """100 values: a trend, a period-6 season and some noise."""
    t = np.arange(100)
    values = 0.1 * t + 2 * np.sin(2 * np.pi * t / 6) + np.random.default_rng(0).normal(0, 0.3, 100)
    path = tmp_path / "series.csv"
    path.write_text("value\n" + "\n".join(f"{v:.6f}" for v in values) + "\n")
    return str(path), values


def test_origins_step_back_by_the_test_part_and_never_reach_it(series_csv):
    path, _ = series_csv
    assert [(o["drop_last"], o["n"], o["first"], o["last"]) for o in origins({**RECIPE, "data": path}, path, 3)] == [
        (10, 9, "81", "89"), (20, 8, "72", "79"), (30, 7, "63", "69")]  # 10% of what is left is each test part
    with pytest.raises(ConfigError, match=r"--origins 9: origin 9 \(90 values back\) leaves too little"):
        origins({**RECIPE, "data": path}, path, 9)


def test_backtest_scores_each_origin_ranks_on_it_and_touches_the_test_once(series_csv, tmp_path):
    path, values = series_csv
    # the recipe's own validation and selection are dropped: every run fits on all before its origin
    recipe = {**RECIPE, "data": path, "eval_every": 20, "select_metric": "rmse", "early_stop_patience": 2,
              "seed": 7}
    out = tmp_path / "bt"
    lines = []
    result = run_backtest(recipe, ["context_length=6 horizon=2"], seeds=2, n_origins=2, out=out, test=True,
                          progress=lines.append)
    assert len(lines) == 2 * 2 * 2 + 2 and lines[0].startswith("[1/10] recipe, origin 81, seed 0: rmse ")
    assert json.loads((out / "backtest.json").read_text()) == result
    for s, setting in zip(result["settings"], ("recipe", "context_length=6_horizon=2")):
        for k, scored in enumerate(s["per_origin"], 1):
            runs = [out / setting / f"o{k}" / f"s{seed}" for seed in (0, 1)]
            trained_on = json.loads((runs[0] / "series.json").read_text())
            assert trained_on["n_val"] == 0 and trained_on["n_train"] == 100 - 10 * k - scored_len(k), \
                "fitted on every value before the origin, none after"
            # each seed's figure and the ensemble's are what `archlab evaluate` says of those runs (fp32: 1e-6)
            assert scored["seeds"] == pytest.approx([evaluate(r)["rmse"] for r in runs], abs=1e-6)
            assert scored["ensemble"] == pytest.approx(evaluate(runs)["rmse"], abs=1e-6)
            forecasts = [json.loads((r / "backtest_forecast.json").read_text()) for r in runs]
            actual = values[len(values) - 10 * k - scored_len(k):len(values) - 10 * k]
            assert np.allclose(forecasts[0]["actual"], actual, atol=1e-6), "the CSV holds 6 decimals"
            actual = np.asarray(forecasts[0]["actual"])
            by_hand = np.sqrt(np.mean((np.mean([f["forecast"] for f in forecasts], 0) - actual) ** 2))
            assert scored["ensemble"] == pytest.approx(by_hand, abs=1e-12)
        assert s["mean_ensemble"] == pytest.approx(np.mean([o["ensemble"] for o in s["per_origin"]]))
    means = {s["label"]: s["mean_ensemble"] for s in result["settings"]}
    assert result["picked"] == min(means, key=means.get)
    picked_dir = "recipe" if result["picked"] == "recipe" else "context_length=6_horizon=2"
    other_dir = "context_length=6_horizon=2" if picked_dir == "recipe" else "recipe"
    assert not (out / other_dir / "test").exists(), "only the picked setting sees the test part"
    test_runs = [out / picked_dir / "test" / f"s{seed}" for seed in (0, 1)]
    assert result["test"]["ensemble"] == pytest.approx(evaluate(test_runs)["rmse"], abs=1e-6)
    assert json.loads((test_runs[0] / "series.json").read_text())["n_train"] == 90
    table = format_table(result)
    assert "<- picked" in table and "touched once" in table and result["test"]["evaluate"] in table

    # the same call again reuses every finished run: nothing is trained twice
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors") if "checkpoints" not in p.parts}
    assert len(stamps) == 10
    again = run_backtest(recipe, ["context_length=6 horizon=2"], seeds=2, n_origins=2, out=out, test=True)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert again["settings"] == result["settings"] and again["test"] == result["test"]


def scored_len(k: int) -> int:
    """The test part's length at origin k of the 100-value series: 10% of the 100 - 10 k values left."""
    return (100 - 10 * k) // 10


def test_bad_input_names_what_was_wrong(series_csv, tmp_path):
    path, _ = series_csv
    with pytest.raises(ConfigError, match=r"--variant .* sets seed, which the backtest sets itself"):
        parse_variant("hidden_size=8 seed=3")
    with pytest.raises(ConfigError, match=r"--variant takes KEY=VALUE pairs separated by spaces, got 'hidden_size'"):
        parse_variant("hidden_size")
    with pytest.raises(ConfigError, match=r"a backtest needs a forecast recipe \(task: forecast\), got task 'classify'"):
        run_backtest({**RECIPE, "task": "classify", "data": path}, [], out=tmp_path / "x")
    with pytest.raises(ConfigError, match=r"--variant given twice"):
        run_backtest({**RECIPE, "data": path}, ["hidden_size=8", "hidden_size=8"], out=tmp_path / "x")


def test_the_command_prints_the_table(series_csv, tmp_path, capsys):
    path, _ = series_csv
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("\n".join(f"{k}: {v}" for k, v in {**RECIPE, "data": path}.items()) + "\n")
    code = main(["backtest", "--config", str(recipe), "--variant", "hidden_size=8", "--set", "max_steps=20",
                 "--seeds", "1", "--origins", "2", "--out", str(tmp_path / "bt")])
    assert code == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0] == (f"rolling-origin backtest of mlp_forecaster on {path}: 2 origins, the next 8 to 9 values "
                        "forecast from each by runs trained on every value before it; RMSE of seed 0's forecast")
    assert lines[1].split() == ["setting", "81", "72", "mean"]
    assert [line.split()[0] for line in lines[2:4]] == ["recipe", "hidden_size=8"]
    assert "[4/4] hidden_size=8, origin 72, seed 0: rmse" in err
    assert main(["backtest", "--config", str(recipe), "--seeds", "0", "--out", str(tmp_path / "bt")]) == 2
