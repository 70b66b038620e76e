"""`archlab forecast`: the forecast beyond the series and the held-out metrics beside the baselines."""

from __future__ import annotations

import csv

import pytest

from archlab.cli import main
from archlab.tasks.forecast import ForecastConfig, ForecastTask
from archlab.train import evaluate


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("forecast") / "run"
    code = main(["train", "--task", "forecast", "--model", "mlp_forecaster", "--data", "co2", "--max-steps", "30",
                 "--set", "lr=0.01", "--set", "log_every=30", "--out", str(out)])
    assert code == 0
    return out


def test_forecast_prints_the_future_and_the_metrics_beside_the_baselines(cli, run_dir, tmp_path):
    table = tmp_path / "forecast.csv"
    r = cli("forecast", "--checkpoint", str(run_dir), "--horizon", "15", "--csv", str(table))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "co2 (ppm): mlp_forecaster's forecast of the 15 values after 2001-12-01"
    future = [line.split() for line in lines[2:17]]
    assert future[0][0] == "2002-01-01" and future[-1][0] == "2003-03-01"  # 15 months, beyond a horizon of 12
    assert all(300 < float(value) < 450 for _, value in future)  # ppm, not normalised units
    rows = {line.rsplit(None, 4)[0]: [float(v) for v in line.split()[-4:]] for line in lines
            if line.startswith(("mlp_forecaster ", "naive", "seasonal_naive"))}
    baselines = ForecastTask(ForecastConfig(), "co2").baselines()
    assert rows["naive"] == pytest.approx([baselines["naive"][k] for k in ("rmse", "mae", "rmse_1step", "mae_1step")],
                                          abs=1e-4)
    assert rows["seasonal_naive (12 months)"][0] == pytest.approx(2.0665, abs=1e-4)
    assert rows["mlp_forecaster"][0] < rows["seasonal_naive (12 months)"][0], "30 steps already beat it on CO2"
    metrics = evaluate(run_dir)
    assert rows["mlp_forecaster"] == pytest.approx([metrics[k] for k in ("rmse", "mae", "rmse_1step", "mae_1step")],
                                                   abs=1e-4)
    with open(table, newline="") as f:
        written = list(csv.DictReader(f))
    assert [w["part"] for w in written] == ["test"] * 24 + ["future"] * 15
    assert written[0]["date"] == "2000-01-01" and written[0]["actual"] and written[-1]["actual"] == ""
    assert float(written[24]["forecast"]) == pytest.approx(float(future[0][1]), rel=1e-5)


def test_two_runs_forecast_as_their_average(cli, run_dir, tmp_path_factory, tmp_path):
    other = tmp_path_factory.mktemp("forecast") / "run-seed-1"
    assert main(["train", "--task", "forecast", "--model", "mlp_forecaster", "--data", "co2", "--max-steps", "30",
                 "--seed", "1", "--set", "lr=0.01", "--set", "log_every=30", "--out", str(other)]) == 0
    tables = {}
    for name, runs in (("a", [run_dir]), ("b", [other]), ("both", [run_dir, other])):
        tables[name] = tmp_path / f"{name}.csv"
        r = cli("forecast", *[a for run in runs for a in ("--checkpoint", str(run))], "--csv", str(tables[name]))
        assert r.returncode == 0, r.stderr
        if name == "both":
            assert r.stdout.splitlines()[0] == "co2 (ppm): ensemble of 2 mlp_forecaster's forecast of the 12 values " \
                                               "after 2001-12-01"
            score = [float(v) for v in next(line for line in r.stdout.splitlines()
                                            if line.startswith("ensemble of 2")).split()[-4:]]
    rows = {}
    for name, table in tables.items():
        with open(table, newline="") as f:
            rows[name] = [float(row["forecast"]) for row in csv.DictReader(f)]
    assert len(rows["both"]) == 24 + 12
    assert rows["both"] == pytest.approx([(a + b) / 2 for a, b in zip(rows["a"], rows["b"])], abs=1e-4)
    assert rows["a"] != pytest.approx(rows["b"], abs=1e-3), "the seeds give different forecasts"
    metrics = evaluate([run_dir, other])  # archlab evaluate's ensemble scores the same forecasts
    assert score == pytest.approx([metrics[k] for k in ("rmse", "mae", "rmse_1step", "mae_1step")], abs=1e-4)


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit) as e:
        main(["forecast", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for option in ("--checkpoint DIR", "--data SPEC", "--horizon N", "--csv FILE", "seasonal_naive", "rmse_1step"):
        assert option in text


def test_bad_input_exits_2_with_a_clear_message(run_dir, tmp_path, capsys):
    series = tmp_path / "short.csv"
    series.write_text("month,value\n" + "".join(f"2001-{m:02d},{m}\n" for m in range(1, 13)) * 1)
    long = tmp_path / "long.csv"
    long.write_text("value\n" + "".join(f"{t}\n" for t in range(200)))
    cases = [
        (["--horizon", "0"], "--horizon must be >= 1, got 0"),
        (["--data", str(long), "--value-column", "price"],
         "value_column='price' is not a column; the header has 'value'"),
        (["--data", str(long)], "needs value_column (the name of a column"),
        (["--data", str(series), "--value-column", "value"],
         "the training part has 10 values, too short for context_length=36 + horizon=12 = 48"),
        (["--csv", str(tmp_path / "missing" / "f.csv")], "its folder does not exist"),
    ]
    for extra, message in cases:
        assert main(["forecast", "--checkpoint", str(run_dir), *extra]) == 2, extra
        assert message in capsys.readouterr().err
    assert main(["forecast", "--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "nowhere' does not exist" in capsys.readouterr().err
    # Another CSV with its own column works: the model reads the last 36 values of it.
    assert main(["forecast", "--checkpoint", str(run_dir), "--data", str(long), "--value-column", "value",
                 "--horizon", "3"]) == 0
    out = capsys.readouterr().out
    assert "long: mlp_forecaster's forecast of the 3 values after step 199" in out
    assert "trained on 'co2'" in out
    assert "seasonal_naive: skipped, no season is known" in out
