"""The bake-off: plans, budgets, statistics, a real (small) run through the trainer, and its reports."""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import replace

import pytest

from archlab.compare import (PLANS, ROWS, Cell, Plan, Row, matrix_text, parse_budget, parse_plan, run_compare,
                             select_archs, select_rows, verdicts)
from archlab.compare.report import write_reports
from archlab.compare.runner import build_jobs, check_budget, evaluate_ensembles, plan_estimate
from archlab.compare.stats import ranking, summarize, tied_with_best
from archlab.errors import ConfigError


def test_budgets_parse_as_durations():
    assert parse_budget("5m") == 300 and parse_budget("90s") == 90 and parse_budget("1h30m") == 5400
    assert parse_budget("45") == 45 and parse_budget("2.5m") == 150
    for bad in ("soon", "5x", "0s", "m"):
        with pytest.raises(ConfigError, match="--budget"):
            parse_budget(bad)
    with pytest.raises(ConfigError, match="too small to train anything"):
        check_budget(5, n_runs=22)


def test_plans_fix_every_cells_steps():
    default, long = PLANS["default"], PLANS["long"]
    for row in ROWS:
        for cell in row.cells:
            assert cell.steps > 0 and cell.seconds > 0, (row.key, cell.arch)
            assert default.steps(row, cell) == cell.steps
            assert long.steps(row, cell) > cell.steps
    tenth = parse_plan("0.1")
    images = ROWS[0]
    assert tenth.steps(images, images.cells[1]) == round(images.cells[1].steps / 10)
    assert parse_plan("x3").scale == 3 and parse_plan("LONG") is long
    for bad in ("huge", "0", "-1", "nan"):
        with pytest.raises(ConfigError, match="--plan"):
            parse_plan(bad)


def test_a_plan_can_train_its_own_cell_in_a_column(tmp_path):
    images = ROWS[0]
    lenet = next(c for c in images.cells if c.arch == "CNN")
    wide = Cell("CNN", "resnet20", {"rotate": 10.0, "lr": 0.05}, 900, 90.0)
    plan = Plan("test", 8.0, overrides={"images": {"weight_decay": 0.5}}, cells={"images/CNN": wide})
    assert plan.cell(images, lenet) is wide and plan.cell(images, images.cells[0]) is images.cells[0]
    assert plan.steps(images, lenet) == 900  # its own steps: the scale is for the default cells
    assert plan.steps(images, images.cells[0]) == 8 * images.cells[0].steps
    settings = plan.settings(images, lenet)
    assert settings["rotate"] == 10.0 and settings["lr"] == 0.05 and settings["weight_decay"] == 0.5
    assert settings["shift"] == images.settings["shift"] and "input_size" not in settings  # LeNet's own are gone
    assert plan.estimate(images, lenet) == 90.0
    jobs = build_jobs([images], {"images": [lenet]}, tmp_path, plan=plan, seeds=[0])
    assert [j.cell.model for j in jobs if j.cell] == ["resnet20"] and jobs[-1].steps == 900
    with pytest.raises(ConfigError, match="plan 'bad' puts a MLP cell in the CNN column"):
        Plan("bad", cells={"images/CNN": replace(wide, arch="MLP")}).cell(images, lenet)
    # The long plan's CNN on digits is such a cell; a few real steps of it run through the bake-off
    # (turned, zoomed and shifted digits) and the table names its model.
    long_cnn = PLANS["long"].cell(images, lenet)
    assert long_cnn.model != lenet.model and PLANS["long"].steps(images, lenet) > lenet.steps
    result = run_compare([images], {"images": [lenet]}, tmp_path,
                         plan=replace(PLANS["long"], overrides={"images": {"max_steps": 3}}), seeds=[0], jobs=1,
                         log=lambda s: None)
    cell = result.rows[0].cells[0]
    assert cell.status == "ok" and cell.model == long_cnn.model and cell.first.steps == 3, cell.first.error
    assert f"--model {long_cnn.model} " in cell.first.command and "--set rotate=" in cell.first.command
    # It keeps its last weights (the cell's own select_metric wins over the row's loss).
    assert "--set select_metric=last" in cell.first.command and cell.first.selected_step == 3


def test_the_default_plan_is_estimated_at_five_minutes_or_less_on_two_cores(tmp_path):
    jobs = build_jobs(list(ROWS), {r.key: list(r.cells) for r in ROWS}, tmp_path, plan=PLANS["default"], seeds=[0])
    assert len(jobs) == sum(len(r.cells) for r in ROWS) + sum(bool(r.baselines) for r in ROWS)
    estimate = plan_estimate(jobs, workers=2)
    assert 120 < estimate <= 300, estimate
    # Seeds multiply the work, workers divide it.
    three = build_jobs(list(ROWS), {r.key: list(r.cells) for r in ROWS}, tmp_path, plan=PLANS["default"],
                       seeds=[0, 1, 2])
    assert plan_estimate(three, 2) > 2.5 * estimate and plan_estimate(jobs, 1) > 1.8 * estimate


def test_rows_and_columns_are_chosen_by_name():
    assert [r.key for r in select_rows(None)] == ["images", "series", "sunspots", "text", "tabular"]
    assert [r.key for r in select_rows(["co2", "images"])] == ["series", "images"]  # data set names work too
    with pytest.raises(ConfigError, match="rows: images"):
        select_rows(["audio"])
    text = next(r for r in ROWS if r.key == "text")
    assert [c.arch for c in select_archs(text, ["lstm", "Transformer"])] == ["LSTM", "Transformer"]
    with pytest.raises(ConfigError, match="unknown architecture"):
        select_archs(text, ["svm"])


def test_intervals_are_student_t_and_a_winner_must_clear_the_runner_up():
    s = summarize([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.3027
    assert s.mean == 2.0 and s.ci95 == pytest.approx([2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)])
    assert summarize([0.5]).ci95 is None
    with pytest.raises(ConfigError, match="finite"):
        summarize([1.0, math.nan])
    apart = {"CNN": summarize([0.98, 0.981, 0.982]), "MLP": summarize([0.96, 0.962, 0.961])}
    assert ranking(apart, higher_is_better=True) == (["CNN", "MLP"], "CNN")
    close = {"CNN": summarize([0.98, 0.97, 0.99]), "MLP": summarize([0.975, 0.965, 0.985])}
    assert ranking(close, True) == (["CNN", "MLP"], None) and tied_with_best(close, True) == ["CNN", "MLP"]
    lower = {"GRU": summarize([0.45, 0.46, 0.44]), "RNN": summarize([0.52, 0.53, 0.51])}
    assert ranking(lower, higher_is_better=False) == (["GRU", "RNN"], "GRU")
    single = {"CNN": summarize([0.99]), "MLP": summarize([0.5])}
    assert ranking(single, True) == (["CNN", "MLP"], None)  # one seed: no interval, no verdict


def _digits_row(cells):
    return Row("images", "images", "digits", "classify", "accuracy", True, cells=tuple(cells),
               settings={"batch_size": 32, "lr": 3e-3}, baselines=("majority_class",))


@pytest.mark.slow
def test_a_real_run_trains_every_seed_of_every_cell_and_reports_it(tmp_path, cli):
    row = _digits_row([Cell("MLP", "mlp", {"hidden": (64,)}, steps=40, seconds=1.0),
                       Cell("CNN", "lenet5", {"input_size": 28}, steps=40, seconds=1.0)])
    # lenet5 cannot read 8x8 digits with input_size=28: the cell fails, the run goes on and says it is incomplete.
    result = run_compare([row], {"images": list(row.cells)}, tmp_path, plan=PLANS["default"], seeds=[0, 1],
                         log=lambda s: None)
    mlp, cnn = result.rows[0].cells
    assert mlp.status == "ok" and cnn.status == "failed" and "seed 0" in cnn.error
    assert len(mlp.values) == 2 and mlp.value == pytest.approx(sum(mlp.values) / 2) and mlp.value > 0.5
    low, high = mlp.summary.ci95
    assert low < mlp.value < high
    assert mlp.params == 64 * 64 + 64 + 64 * 10 + 10 and mlp.steps == 40
    first = mlp.first
    assert [step for step, _ in first.val_curve] == [5, 10, 15, 20, 25, 30, 35, 40]  # 8 validation points
    assert first.curve and first.samples["n_test"] == 359 and len(first.samples["wrong"]) <= 12
    assert result.rows[0].baselines["majority_class"] == pytest.approx(0.1, abs=0.02)
    assert not result.complete

    paths = write_reports(result, tmp_path)
    data = json.loads(paths["json"].read_text())
    row_json = data["rows"][0]
    assert row_json["dataset"] == "digits" and row_json["metric"] == "accuracy" and row_json["higher_is_better"]
    entry = row_json["results"]["MLP"]
    assert set(entry) >= {"value", "params", "train_seconds", "values", "ci95", "steps"}
    assert entry["values"] == mlp.values and entry["ci95"] == [low, high] and entry["steps"] == 40
    assert row_json["results"]["CNN"]["status"] == "failed" and data["complete"] is False
    assert data["mode"] == "fixed" and data["seeds"] == [0, 1]
    md, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert "INCOMPLETE" in md and "INCOMPLETE" in page and "INCOMPLETE" in matrix_text(result)
    assert "data:image/png;base64," in page and "images_curves.png" in md and "images_misclassified.png" in md
    assert "±" in matrix_text(result) and "fixed work: plan default" in matrix_text(result)
    assert any("images (digits)" in v for v in verdicts(result))

    # The test value is of the weights of the best validation point, the first of equals.
    accuracies = [m["accuracy"] for _, m in first.val_curve]
    assert first.selected_step == first.val_curve[accuracies.index(max(accuracies))][0]
    assert first.val_metrics["accuracy"] == max(accuracies)
    assert entry["selected_steps"] == [r.selected_step for r in sorted(mlp.runs, key=lambda r: r.seed)]

    # The reproduce command is exact: run again, it gives the very same number.
    command = first.command
    assert command.startswith("archlab train --task classify --model mlp --data digits") and "--threads 1" in command
    assert "--set eval_every=5" in command and "--set select_metric=accuracy" in command
    args = shlex.split(command)[1:]
    args[args.index("--out") + 1] = str(tmp_path / "again")
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    printed = dict(line.split() for line in r.stdout.splitlines())
    assert float(printed["accuracy"]) == pytest.approx(first.value, abs=1e-6)


def test_cells_choose_their_weights_on_their_rows_metric():
    from archlab.compare.runner import select_metric

    # Each a validation metric of its task: the loss where the metric counts a few hundred examples.
    assert [select_metric(r) for r in ROWS] == [r.select_on or r.metric for r in ROWS]
    assert {r.key: select_metric(r) for r in ROWS if r.select_on} == {"images": "loss", "tabular": "log_loss"}
    with pytest.raises(ConfigError, match=r"row 'images': select_on 'wer' is not one of task 'classify''s"):
        select_metric(replace(_digits_row([]), select_on="wer"))
    row = _digits_row([])
    with pytest.raises(ConfigError, match=r"row 'images': metric 'rmse' is not one of task 'classify''s metrics "
                                          r"\(loss, accuracy\)"):
        select_metric(replace(row, metric="rmse"))
    with pytest.raises(ConfigError, match="higher_is_better=False for accuracy, but task 'classify' counts a higher "
                                          "accuracy as better"):
        select_metric(replace(row, higher_is_better=False))


@pytest.mark.parametrize("key", [r.key for r in ROWS if r.select_on])
def test_rows_that_select_on_their_loss_find_it_among_the_validation_metrics(key, tmp_path):
    # A few real steps of the row's first network cell: the metric it keeps its weights on must be one
    # the task's validation split reports, not only one of its metric names.
    from archlab.compare.plan import Plan

    row = next(r for r in ROWS if r.key == key)
    cell = next(c for c in row.cells if c.model != "lightgbm")
    result = run_compare([row], {key: [cell]}, tmp_path, plan=Plan("tiny", overrides={key: {"max_steps": 4}}),
                         seeds=[0], jobs=1, log=lambda s: None)
    run = result.rows[0].cells[0]
    assert run.status == "ok", run.error
    assert row.select_on in run.first.val_metrics and f"--set select_metric={row.select_on}" in run.first.command


def test_bad_input_exits_2_and_touches_nothing(tmp_path, capsys):
    from archlab.cli import main

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    for args, message in [
        (["--budget", "3s"], "too small to train anything"),
        (["--only", "audio"], "is not a row of the bake-off"),
        (["--archs", "svm"], "unknown architecture"),
        (["--archs", ","], "names no architecture"),
        (["--budget", "a while"], "--budget takes a duration"),
        (["--budget", "5m", "--plan", "long"], "exclude each other"),
        (["--plan", "forever"], "--plan takes"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--ensemble"], "--ensemble averages the seeds of each cell: it needs --seeds 2 or more, got --seeds 1"),
        (["--jobs", "0"], "--jobs must be >= 1"),
        (["--out", str(tmp_path / "full")], "is not an empty directory"),
    ]:
        assert main(["compare", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
    assert (tmp_path / "full" / "x").read_text() == "keep me"


def test_the_table_fits_800_pixels_and_numbers_have_one_format(tmp_path):
    from archlab.compare.results import CellResult, CompareResult, RowResult, SeedRun

    row = ROWS[0]
    cells = []
    for arch, values in (("MLP", [0.961, 0.964, 0.958]), ("CNN", [0.982, 0.985, 0.983])):
        cell = CellResult("images", arch, "m", expected_runs=3)
        cell.runs = [SeedRun(s, "ok", v, {"accuracy": v, "loss": 0.1}, steps=2000, params=61_706,
                             command=f"archlab train ... --seed {s}") for s, v in enumerate(values)]
        cells.append(cell)
    result = CompareResult([RowResult(row, cells, {"svm": 0.968, "majority_class": 0.1})], "fixed",
                           Plan("default").name, [0, 1, 2], str(tmp_path), "cpu", 1, 2, 0.0, estimate_seconds=280,
                           wall_seconds=290)
    page = write_reports(result, tmp_path)["html"].read_text()
    main = re.search(r"<table class='main'>.*?</table>", page, re.S).group(0)
    assert main.count("<th") <= 9 and "max-width:800px" in page  # a fixed-layout table no wider than 800 px
    assert "98.3% ±0.4 *" in main and "RBF SVM 96.8%" in main  # accuracy as a percentage, the winner marked
    assert re.search(r"\b0\.98\d\b", page) is None  # never a raw fraction
    text = matrix_text(result)
    assert "98.3% ±0.4 *" in text and "0.97x" not in text and "1.04x" in text  # time against the estimate


def test_the_tabular_row_runs_its_trees_and_its_majority_baseline(tmp_path):
    # Trees take no learning-rate schedule (a warmup_steps setting is refused by their fit path), and
    # the row's majority class comes from the tabular task itself.
    (row,) = select_rows(["tabular"])
    result = run_compare([row], {row.key: select_archs(row, ["Boosting"])}, tmp_path, plan=parse_plan("0.05"),
                         seeds=[0], jobs=1)
    assert result.complete, [c.error for r in result.rows for c in r.cells]
    cell = result.rows[0].cells[0]
    assert cell.arch == "Boosting" and 0.9 <= cell.value <= 1.0  # 25 rounds on breast_cancer
    assert result.rows[0].baselines["majority_class"] == pytest.approx(71 / 114, abs=0.02)


def test_ensemble_scores_each_cells_seeds_as_one_model_and_notes_the_cells_it_cannot(tmp_path, monkeypatch):
    """--ensemble: the CO2 CNN's two seeds averaged in ppm equal the hand-made average of their own
    test forecasts; the boosted trees average too; a cell whose ensemble fails keeps a note, and the
    table says n/a."""
    import numpy as np

    from archlab.train import load_for_evaluation

    series, table = select_rows(["series", "tabular"])
    cells = {"series": select_archs(series, ["CNN"]), "tabular": select_archs(table, ["Boosting"])}
    plan = Plan("tiny", overrides={"series": {"max_steps": 30}, "tabular": {"max_steps": 5}})
    result = run_compare([series, table], cells, tmp_path, plan=plan, seeds=[0, 1], jobs=1, log=lambda s: None,
                         ensemble=True)
    assert result.complete, [c.error for r in result.rows for c in r.cells]
    cnn, trees = result.rows[0].cells[0], result.rows[1].cells[0]
    forecasts, actual = [], None
    for run in sorted(cnn.runs, key=lambda r: r.seed):
        model, task = load_for_evaluation(run.run_dir)
        _, actual, predicted = task.forecast_test(model)
        forecasts.append(predicted)
    by_hand = float(np.sqrt(np.mean((np.mean(forecasts, axis=0) - actual) ** 2)))
    assert cnn.ensemble["rmse"] == pytest.approx(by_hand, rel=1e-5)
    assert by_hand <= sum(cnn.values) / 2 + 1e-9, "the averaged forecast's RMSE is at most the mean of theirs"
    assert result.rows[1].baselines["majority_class"] < trees.ensemble["accuracy"] <= 1.0 and not trees.ensemble_note
    text = matrix_text(result)
    lines = [x.split() for x in text.splitlines() if x.split()[:2] == ["seed", "ensemble"]]
    assert lines == [["seed", "ensemble", f"{cnn.ensemble['rmse']:.3f}"],
                     ["seed", "ensemble", f"{100 * trees.ensemble['accuracy']:.1f}%"]], text
    entry = result.to_json()["rows"][0]["results"]["CNN"]
    assert entry["ensemble"] == cnn.ensemble["rmse"] and entry["ensemble_metrics"]["mae"] > 0

    def refuse(checkpoints, **_):
        raise ConfigError(f"cannot average these {len(checkpoints)} runs")

    monkeypatch.setattr("archlab.train.evaluate", refuse)
    evaluate_ensembles(result, build_jobs([series, table], cells, tmp_path, plan=plan, seeds=[0, 1]),
                       log=lambda s: None)
    assert cnn.ensemble_note == trees.ensemble_note == "cannot average these 2 runs"
    assert not cnn.ensemble and not trees.ensemble
    lines = [x.split() for x in matrix_text(result).splitlines() if x.split()[:2] == ["seed", "ensemble"]]
    assert lines == [["seed", "ensemble", "n/a"]] * 2
    assert result.to_json()["rows"][1]["results"]["Boosting"]["ensemble_note"] == "cannot average these 2 runs"


def test_ctrl_c_while_scoring_the_seed_ensembles_keeps_the_cells_and_says_incomplete(tmp_path, monkeypatch):
    def interrupted(checkpoints, **_):
        raise KeyboardInterrupt

    monkeypatch.setattr("archlab.train.evaluate", interrupted)
    (row,) = select_rows(["tabular"])
    result = run_compare([row], {row.key: select_archs(row, ["Boosting"])}, tmp_path, plan=parse_plan("0.05"),
                         seeds=[0, 1], jobs=1, log=lambda s: None, ensemble=True)
    cell = result.rows[0].cells[0]
    assert result.interrupted and not result.complete
    assert cell.status == "ok" and len(cell.values) == 2 and not cell.ensemble
