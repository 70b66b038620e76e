"""The tabular task: metrics as exact sums, networks that learn real tables, CSV files with categories and
missing values end to end, k-fold runs, and the saved encoder reused by evaluation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from archlab.errors import ConfigError
from archlab.models.interfaces import TableData, TabularModel
from archlab.registry import model_config, model_info, models_for
from archlab.tasks.tabular import TabularConfig, TabularTask
from archlab.train import RunSpec, evaluate, evaluate_model, train

pytestmark = pytest.mark.usefixtures("one_thread")


class _Fixed(torch.nn.Module):
    """Outputs known in advance, whatever the batch: a way to check the metrics against their definitions."""

    def __init__(self, outputs: torch.Tensor):
        super().__init__()
        self.outputs, self.seen = outputs, 0

    def forward(self, x_num, x_cat):
        out = self.outputs[self.seen:self.seen + len(x_num)]
        self.seen += len(x_num)
        return out


def test_classification_metrics_are_accuracy_and_log_loss_for_any_batch_size():
    task = TabularTask(TabularConfig(), "wine")
    y = task.arrays("test")[2]
    logits = torch.randn(len(y), 3, generator=torch.Generator().manual_seed(0))
    p = logits.softmax(-1).double().numpy()
    want_acc = float(np.mean(p.argmax(1) == y))
    want_ll = float(-np.mean(np.log(p[np.arange(len(y)), y])))
    for batch in (5, 1000):
        got = evaluate_model(_Fixed(logits), task, torch.device("cpu"), "fp32", batch)
        assert got["accuracy"] == pytest.approx(want_acc, abs=1e-12)
        assert got["log_loss"] == pytest.approx(want_ll, rel=1e-6)


def test_regression_metrics_are_in_the_targets_units():
    task = TabularTask(TabularConfig(), "diabetes")
    rows = task.split.test
    y = task.table.y[rows]                                     # progression, in its own units
    t_hat = torch.randn(len(rows), 1, generator=torch.Generator().manual_seed(1))
    y_hat = task.encoder.target_mean + task.encoder.target_std * t_hat[:, 0].double().numpy()
    got = evaluate_model(_Fixed(t_hat), task, torch.device("cpu"), "fp32", 16)
    assert got["rmse"] == pytest.approx(math.sqrt(np.mean((y_hat - y) ** 2)), rel=1e-6)
    assert got["mae"] == pytest.approx(np.mean(np.abs(y_hat - y)), rel=1e-6)
    assert got["r2"] == pytest.approx(1 - np.sum((y_hat - y) ** 2) / np.sum((y - y.mean()) ** 2), rel=1e-6)
    # The training targets are standardised with the training rows' mean and deviation
    train_y = task.table.y[task.split.train]
    assert task.encoder.target_mean == pytest.approx(train_y.mean()) and task.arrays("train")[2].std() == \
        pytest.approx(1.0, abs=1e-5)


def test_the_table_fixes_the_fields_each_model_class_names():
    assert TabularTask.requires is TabularModel
    assert models_for("tabular") == ["ft_transformer", "lightgbm", "tabular_mlp"]
    wine, diabetes = TabularTask(TabularConfig(), "wine"), TabularTask(TabularConfig(), "diabetes")
    for name in models_for("tabular"):
        cls = model_info(name).model_class
        assert wine.model_fields(cls, model_config(name)) == {"num_numeric": 13, "cat_cardinalities": (),
                                                              "num_outputs": 3}
        assert diabetes.model_fields(cls, model_config(name))["num_outputs"] == 1  # one regression value
    # Trees read num_outputs as their objective: a table whose kind disagrees with it is refused.
    trees = model_info("lightgbm").model_class
    with pytest.raises(ConfigError, match="a regression table with 2 output"):
        trees.tabular_fields(TableData(3, (), 2, classification=False), model_config("lightgbm"))


def test_models_that_do_not_read_rows_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="mlp cannot be trained for task tabular .* models that can: "
                                          "ft_transformer, lightgbm, tabular_mlp"):
        train(RunSpec(task="tabular", model="mlp", out=tmp_path / "r", settings={"max_steps": 1}))


@pytest.mark.parametrize("model, settings, floor", [
    ("tabular_mlp", {"hidden": "64,32", "lr": 3e-3}, 0.94),
    ("ft_transformer", {"d_token": 16, "num_layers": 1, "num_heads": 2, "lr": 3e-3}, 0.93),
])
def test_networks_learn_breast_cancer(tmp_path, model, settings, floor):
    """A few hundred steps: held-out accuracy above a floor (a majority guess scores 63%)."""
    spec = RunSpec(task="tabular", model=model, out=tmp_path / model,
                   settings={**settings, "batch_size": 32, "max_steps": 150, "log_every": 50, "seed": 0})
    result = train(spec)
    assert result["metrics"]["accuracy"] >= floor, result["metrics"]
    records = [json.loads(line) for line in (tmp_path / model / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if r["split"] == "train"]
    assert losses[-1] < losses[0] * 0.5
    assert evaluate(tmp_path / model) == pytest.approx(result["metrics"])


CSV_HEAD = "size,colour,weight,label\n"


def _csv(tmp_path, n=300, seed=0):
    """A table whose class depends on a category and a number, with missing cells in both."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        colour = ["red", "green", "blue"][rng.integers(3)]
        size = rng.normal()
        label = "big" if (size > 0) != (colour == "blue") else "small"
        size_cell = "" if i % 11 == 0 else f"{size:.3f}"
        colour_cell = "NA" if i % 13 == 0 else colour
        lines.append(f"{size_cell},{colour_cell},{rng.normal():.3f},{label}")
    path = tmp_path / "things.csv"
    path.write_text(CSV_HEAD + "\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("model, settings", [
    ("ft_transformer", {"d_token": 16, "num_layers": 1, "num_heads": 2, "lr": 3e-3, "batch_size": 16, "max_steps": 200}),
    ("lightgbm", {"min_child_samples": 5}),
])
def test_a_csv_with_categories_and_missing_cells_trains_and_evaluates(tmp_path, model, settings):
    path = _csv(tmp_path)
    result = train(RunSpec(task="tabular", model=model, data=str(path), out=tmp_path / "run", settings=settings))
    # The class is an XOR of a category and the sign of a number: no single column predicts it.
    assert result["metrics"]["accuracy"] >= 0.75, result["metrics"]
    meta = json.loads((tmp_path / "run" / "tabular.json").read_text())
    assert meta["categorical_features"] == ["colour"] and meta["numeric_features"] == ["size", "weight", "size (missing)"]
    assert meta["encoder"]["categories"]["colour"] == ["blue", "green", "red"]
    assert evaluate(tmp_path / "run") == pytest.approx(result["metrics"])
    # Another file with other columns cannot be scored by this model.
    other = tmp_path / "other.csv"
    other.write_text("size,label\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(20)))
    with pytest.raises(ConfigError, match="other has columns \\[size \\(num\\)\\] .* the model was trained on"):
        evaluate(tmp_path / "run", data=str(other))


def test_k_fold_runs_hold_out_each_fold_once():
    tests = []
    for fold in range(3):
        task = TabularTask(TabularConfig(folds=3, fold=fold), "wine")
        tests.append(task.split.test)
        assert len(task.arrays("test")[2]) == len(task.split.test)
    assert sorted(np.concatenate(tests).tolist()) == list(range(178))
    with pytest.raises(ConfigError, match="fold must be in 0..2 for folds=3, got 3"):
        TabularConfig(folds=3, fold=3)
    task = TabularTask(TabularConfig(), "wine")
    assert task.eval_splits == ("val", "test")
    assert sum(len(b[2]) for b in task.eval_batches(16, "val")) == len(task.split.val) > 0
    assert TabularTask(TabularConfig(val_fraction=0.0), "wine").eval_splits == ("test",)
