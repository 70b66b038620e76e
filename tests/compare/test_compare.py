"""The bake-off: budgets, row selection, a real (small) run through the trainer, and its reports."""

from __future__ import annotations

import json

import pytest

from archlab.compare import ROWS, Cell, Row, matrix_text, parse_budget, run_compare, select_archs, select_rows
from archlab.compare.runner import MIN_CELL_SECONDS, cell_budget, check_budget
from archlab.compare.report import write_reports
from archlab.errors import ConfigError


def test_budgets_parse_as_durations():
    assert parse_budget("5m") == 300 and parse_budget("90s") == 90 and parse_budget("1h30m") == 5400
    assert parse_budget("45") == 45 and parse_budget("2.5m") == 150
    for bad in ("soon", "5x", "0s", "m"):
        with pytest.raises(ConfigError, match="--budget"):
            parse_budget(bad)


def test_rows_and_columns_are_chosen_by_name():
    assert [r.key for r in select_rows(None)] == ["images", "series", "text", "tabular"]
    assert [r.key for r in select_rows(["co2", "images"])] == ["series", "images"]  # data set names work too
    with pytest.raises(ConfigError, match="rows: images"):
        select_rows(["audio"])
    text = next(r for r in ROWS if r.key == "text")
    assert [c.arch for c in select_archs(text, ["lstm", "Transformer"])] == ["LSTM", "Transformer"]
    with pytest.raises(ConfigError, match="unknown architecture"):
        select_archs(text, ["svm"])


def test_every_row_spends_its_share_and_the_default_leaves_time_for_evaluation():
    assert sum(r.share for r in ROWS) == pytest.approx(1.0)
    training = sum(cell_budget(300, r, c) for r in ROWS for c in r.cells)
    assert 0.5 * 300 < training < 0.8 * 300
    with pytest.raises(ConfigError, match="too small to train anything"):
        check_budget(5, list(ROWS))
    smallest = min(cell_budget(300, r, c) for r in ROWS for c in r.cells)
    assert smallest > 2 * MIN_CELL_SECONDS


def _digits_row(cells):
    return Row("images", "images", "digits", "classify", "accuracy", True, 1.0, cells=tuple(cells),
               settings={"batch_size": 32, "lr": 3e-3})


@pytest.mark.slow
def test_a_real_run_trains_every_cell_and_reports_it(tmp_path):
    row = _digits_row([Cell("MLP", "mlp", {"hidden": (64,)}), Cell("CNN", "lenet5", {"input_size": 28})])
    # lenet5 cannot read 8x8 digits: the cell fails, the run goes on and says it is incomplete.
    result = run_compare([row], {"images": list(row.cells)}, budget=8.0, out=tmp_path, log=lambda s: None)
    mlp, cnn = result.rows[0].cells
    assert mlp.status == "ok" and cnn.status == "failed" and "lenet5" in cnn.error.lower() + cnn.model
    assert mlp.value == mlp.metrics["accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert mlp.params == 64 * 64 + 64 + 64 * 10 + 10
    assert 0 < mlp.train_seconds < 30 and mlp.steps >= 10 and mlp.curve
    assert result.rows[0].baselines["majority_class"] == pytest.approx(0.1, abs=0.02)
    assert len(mlp.samples) == 16 and not result.complete

    paths = write_reports(result, tmp_path)
    data = json.loads(paths["json"].read_text())
    row_json = data["rows"][0]
    assert row_json["dataset"] == "digits" and row_json["metric"] == "accuracy" and row_json["higher_is_better"]
    assert set(row_json["results"]["MLP"]) >= {"value", "params", "train_seconds"}
    assert row_json["results"]["CNN"]["status"] == "failed" and data["complete"] is False
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert "INCOMPLETE" in md and "INCOMPLETE" in page and "INCOMPLETE" in matrix_text(result)
    assert "data:image/png;base64," in page and "images_curves.png" in md
    assert (tmp_path / "images_predictions.png").stat().st_size > 1000
    assert mlp.command.startswith("archlab train --task classify --model mlp --data digits")


def test_bad_input_exits_2_and_touches_nothing(tmp_path, capsys):
    from archlab.cli import main

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    for args, message in [
        (["--budget", "3s"], "too small to train anything"),
        (["--only", "audio"], "is not a row of the bake-off"),
        (["--archs", "svm"], "unknown architecture"),
        (["--budget", "a while"], "--budget takes a duration"),
        (["--out", str(tmp_path / "full")], "is not an empty directory"),
    ]:
        assert main(["compare", *args]) == 2, args
        assert message in capsys.readouterr().err
    assert (tmp_path / "full" / "x").read_text() == "keep me"
