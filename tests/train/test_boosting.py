"""The fit path of gradient-boosted trees: a run directory like every other run, LightGBM's text format,
evaluation through the ordinary path, and settings that only an optimiser understands refused."""

from __future__ import annotations

import json

import pytest

from archlab.checkpoint import from_pretrained
from archlab.errors import ConfigError
from archlab.train import RunSpec, evaluate, train
from archlab.train.checkpointing import verify


def _fit(tmp_path, data="breast_cancer", name="run", **settings):
    spec = RunSpec(task="tabular", model="lightgbm", data=data, out=tmp_path / name, settings={"seed": 0, **settings})
    return train(spec), tmp_path / name


def test_a_fit_writes_a_run_directory_that_evaluate_reads(tmp_path):
    result, out = _fit(tmp_path)
    # (.lock: the run directory's lock, held by every run, fit or trained, while it runs)
    assert sorted(p.name for p in out.iterdir()) == [".lock", "config.json", "manifest.json", "metrics.jsonl", "model.txt",
                                                      "run.json", "tabular.json", "task.json"]
    verify(out)  # every final file is in the manifest, with its SHA-256
    assert json.loads((out / "config.json").read_text())["archlab_model"] == "lightgbm"
    assert (out / "model.txt").read_text().startswith("tree\nversion=")  # LightGBM's own text format
    run = json.loads((out / "run.json").read_text())
    assert run["task"] == "tabular" and run["model"] == "lightgbm" and run["fit"] == "boosting"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    rounds = [r for r in records if r["split"] == "train"]
    assert rounds[0]["step"] == 10 and rounds[-1]["loss"] < rounds[0]["loss"] and "val_loss" in rounds[0]
    assert [r["split"] for r in records[-2:]] == ["val", "test"] and records[-1]["step"] == result["step"]
    assert records[-2]["accuracy"] == pytest.approx(result["val_metrics"]["accuracy"])
    # Early stopping on the validation rows kept the best round, well before the 1000 allowed.
    assert result["early_stopped"] and 10 <= result["step"] < 1000
    assert from_pretrained(out).best_round == result["step"]
    assert result["metrics"]["accuracy"] >= 0.94  # a majority guess scores 63%
    assert evaluate(out) == pytest.approx(result["metrics"], rel=1e-6)  # float32 sums per batch of 64, not 1024


def test_max_steps_are_boosting_rounds_and_fits_repeat_exactly(tmp_path):
    a, out_a = _fit(tmp_path, "wine", "a", max_steps=12, early_stopping_rounds=0, log_every=4)
    b, out_b = _fit(tmp_path, "wine", "b", max_steps=12, early_stopping_rounds=0, log_every=4,
                    bagging_fraction=0.8, bagging_freq=1)
    c, out_c = _fit(tmp_path, "wine", "c", max_steps=12, early_stopping_rounds=0, log_every=4,
                    bagging_fraction=0.8, bagging_freq=1)
    assert a["step"] == 12 and not a["early_stopped"]
    steps = [json.loads(line)["step"] for line in (out_a / "metrics.jsonl").read_text().splitlines()]
    assert steps == [4, 8, 12, 12, 12]  # rounds 4, 8, 12, then the validation and test rows
    assert (out_b / "model.txt").read_text() == (out_c / "model.txt").read_text()  # the seed fixes the bagging
    assert json.loads((out_a / "config.json").read_text())["config"]["num_rounds"] == 12


def test_regression_on_diabetes(tmp_path):
    result, _ = _fit(tmp_path, "diabetes", learning_rate=0.03, num_leaves=8, min_child_samples=10)
    m = result["metrics"]
    # Linear regression explains ~45-50% of the variance of this target; trees at least 35%.
    assert m["r2"] >= 0.35 and 40 < m["rmse"] < 65, m


def test_what_does_not_apply_to_trees_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"batch_size, lr do not apply to lightgbm \(trees are fitted"):
        _fit(tmp_path, lr=0.1, batch_size=8)
    with pytest.raises(ConfigError, match=r"select_metric does not apply to lightgbm .*keeps its best round on the "
                                          r"validation rows' loss itself \(early_stopping_rounds\)"):
        _fit(tmp_path, select_metric="accuracy", eval_every=5)
    with pytest.raises(ConfigError, match="num_outputs is fixed by the data \\(num_outputs=3\\)"):
        _fit(tmp_path, "wine", num_outputs=2)
    with pytest.raises(ConfigError, match=r"lightgbm cannot be trained for task classify \(lightgbm is trained by "
                                          r"task tabular\)"):
        train(RunSpec(task="classify", model="lightgbm", data="digits", out=tmp_path / "x"))
    _fit(tmp_path, "wine", "once", max_steps=3)
    with pytest.raises(ConfigError, match="already holds a run"):
        _fit(tmp_path, "wine", "once", max_steps=3)
    with pytest.raises(ConfigError, match="--resume: lightgbm fits in one go"):
        train(RunSpec(task="tabular", model="lightgbm", data="wine", out=tmp_path / "once", resume=True))
    again = train(RunSpec(task="tabular", model="lightgbm", data="wine", out=tmp_path / "once", overwrite=True,
                          settings={"max_steps": 5, "early_stopping_rounds": 0}))
    assert again["step"] == 5
