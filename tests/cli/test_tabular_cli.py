"""`archlab train --task tabular` and `archlab evaluate` from the command line, trees and networks alike."""

from __future__ import annotations

import json

from archlab.cli import main


def test_trees_train_and_evaluate_from_the_command_line(cli, tmp_path):
    out = tmp_path / "trees"
    r = cli("train", "--task", "tabular", "--model", "lightgbm", "--data", "wine", "--max-steps", "40",
            "--set", "learning_rate=0.1", "--out", str(out), env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    assert "round 40/40" in r.stderr  # plain progress lines when stderr is not a terminal
    printed = dict(line.split() for line in r.stdout.splitlines())
    assert set(printed) == {"accuracy", "log_loss"} and float(printed["accuracy"]) >= 0.9
    e = cli("evaluate", "--checkpoint", str(out), "--json")
    assert e.returncode == 0, e.stderr
    assert json.loads(e.stdout)["accuracy"] == float(printed["accuracy"])


def test_a_csv_trains_a_network_and_bad_settings_exit_2(tmp_path, capsys):
    csv = tmp_path / "houses.csv"
    rows = [f"{50 + 3 * i},{['north', 'south'][i % 2]},{100 + 7 * i + 20 * (i % 2)}" for i in range(40)]
    csv.write_text("area,side,price\n" + "\n".join(rows) + "\n")
    out = tmp_path / "mlp"
    assert main(["train", "--task", "tabular", "--model", "tabular_mlp", "--data", str(csv), "--set", "target=price",
                 "--set", "hidden=16", "--max-steps", "30", "--set", "batch_size=8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert set(dict(line.split() for line in printed.splitlines())) == {"rmse", "mae", "r2", "loss"}
    assert json.loads((out / "tabular.json").read_text())["objective"] == "regression"
    for args, message in [
        (["--model", "lightgbm", "--set", "lr=0.1"], "lr does not apply to lightgbm"),
        (["--model", "tabular_mlp", "--data", str(tmp_path / "none.csv")], "unknown tabular data set"),
        (["--model", "tabular_mlp", "--data", str(csv)], "which column is the target?"),
        (["--model", "cnn_forecaster"], "cnn_forecaster cannot be trained for task tabular"),
    ]:
        assert main(["train", "--task", "tabular", *args, "--out", str(tmp_path / "bad")]) == 2, args
        assert message in capsys.readouterr().err
