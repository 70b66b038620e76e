"""Choosing the weights on the validation split: the run keeps the best evaluation's weights, the test
split and the published model are of them, a resumed run chooses the same, bad settings are refused."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from archlab.errors import ConfigError
from archlab.train import RunSpec, TrainConfig, evaluate, train
from archlab.train import checkpointing as ckpt
from archlab.train import engine
from tests.train.helpers import weights

# A warmup to a learning rate far too large: the digits are learnt in the first steps, then forgotten
# as the rate grows, so the validation metrics are best in the middle of the run, not at its end.
SPIKE = {"hidden": "32", "batch_size": 32, "lr": 3.0, "warmup_steps": 300, "log_every": 5, "max_steps": 40,
         "eval_every": 5}


def spec(out, **settings):
    return RunSpec(task="classify", model="mlp", data="digits", out=out, settings={**SPIKE, **settings})


def records(out, split):
    return [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if r["split"] == split]


def logged(out, split):
    """The records of ``split`` without their clock times."""
    return [{k: v for k, v in r.items() if k != "time"} for r in records(out, split)]


class Crash(Exception):
    """What a kill does to a run: it ends between two steps, after the last checkpoint."""


@pytest.fixture
def crash_after(monkeypatch):
    """``crash_after(step)``: the next run to reach ``step`` ends there, once."""

    def at(step: int):
        take_step, armed = engine.Run.take_step, [True]

        def crashing(self):
            done = take_step(self)
            if armed[0] and self.step == step:
                armed[0] = False
                raise Crash(f"step {step}")
            return done

        monkeypatch.setattr(engine.Run, "take_step", crashing)

    return at


@pytest.mark.parametrize("metric", ["accuracy", "loss"])
def test_the_test_split_and_the_model_are_of_the_best_validation_weights(tmp_path, metric, capsys):
    out = tmp_path / "run"
    result = train(spec(out, select_metric=metric))
    val = records(out, "val")
    assert [r["step"] for r in val] == [5, 10, 15, 20, 25, 30, 35, 40]  # the last weights are a candidate too
    pick = max if metric == "accuracy" else min
    best = pick(val, key=lambda r: r[metric])  # the first of equals: a tie keeps the earlier weights
    assert best["step"] < 40 and best[metric] != val[-1][metric]  # strictly better than the last weights
    assert result["step"] == 40 and result["selected_step"] == best["step"]
    # The final validation metrics are the chosen weights' (evaluated again), the test split's of them too.
    assert result["val_metrics"] == pytest.approx({k: best[k] for k in ("loss", "accuracy")}, rel=1e-12)
    assert evaluate(out, batch_size=32) == pytest.approx(result["metrics"], rel=1e-12)
    assert evaluate(out, batch_size=32, split="val") == pytest.approx(result["val_metrics"], rel=1e-12)
    (selected,) = records(out, "selected")
    assert selected["selected_step"] == best["step"] and selected["select_metric"] == metric
    assert [r["step"] for r in records(out, "test")] == [40]
    assert f"kept the weights of step {best['step']} of 40: val {metric} {best[metric]:.4f}" in capsys.readouterr().err
    # The published model is OUT/best's weights; the last checkpoint keeps the last ones (to resume from)
    # and, beside them, the chosen ones.
    final, kept, last = weights(out), weights(out / "best"), weights(out / "checkpoints" / "step-00000040")
    assert all(torch.equal(final[k], kept[k]) for k in final)
    assert not all(torch.equal(final[k], last[k]) for k in final)
    state = torch.load(out / "checkpoints" / "step-00000040" / ckpt.STATE_FILE, weights_only=True)
    assert state["selection"] == {"metric": metric, "best": best[metric], "step": best["step"]}
    linked = load_file(str(out / "checkpoints" / "step-00000040" / ckpt.BEST_FILE))
    assert all(torch.equal(final[k], linked[k]) for k in final)


def test_early_stopping_keeps_its_best_weights_unless_told_to_keep_the_last(tmp_path):
    stopped = train(spec(tmp_path / "early", early_stop_metric="accuracy", early_stop_patience=2))
    val = records(tmp_path / "early", "val")
    best = max(val, key=lambda r: r["accuracy"])
    assert stopped["early_stopped"] and stopped["step"] < 40
    assert stopped["selected_step"] == best["step"] < stopped["step"]
    assert stopped["val_metrics"]["accuracy"] == best["accuracy"]

    last = train(spec(tmp_path / "last", early_stop_metric="accuracy", early_stop_patience=2, select_metric="last"))
    assert last["step"] == stopped["step"] and last["selected_step"] == last["step"]
    final_val = records(tmp_path / "last", "val")[-1]
    assert last["val_metrics"] == {k: final_val[k] for k in ("loss", "accuracy")}
    assert not (tmp_path / "last" / ckpt.BEST_DIR).exists() and not records(tmp_path / "last", "selected")
    assert last["metrics"] != stopped["metrics"]
    # Without select_metric nor early stopping, nothing is chosen: the last weights, as before.
    plain = train(spec(tmp_path / "plain"))
    assert plain["selected_step"] == 40 and not (tmp_path / "plain" / ckpt.BEST_DIR).exists()


def test_a_run_killed_after_a_new_best_and_resumed_chooses_the_same_weights(tmp_path, crash_after):
    settings = {"dropout": 0.2, "save_every": 20, "select_metric": "accuracy"}  # dropout: the RNG states count
    ref = train(spec(tmp_path / "ref", **settings))
    assert 20 < ref["selected_step"] < 30  # chosen after the checkpoint of step 20, before the kill below

    out = tmp_path / "run"
    crash_after(29)
    with pytest.raises(Crash):
        train(spec(out, **settings))
    # The weights chosen after the last checkpoint are on disk; the checkpoint holds the earlier choice.
    checkpoint = out / "checkpoints" / "step-00000020"
    state = torch.load(checkpoint / ckpt.STATE_FILE, weights_only=True)
    assert state["selection"]["step"] <= 20
    held = load_file(str(checkpoint / ckpt.BEST_FILE))
    assert not torch.equal(weights(out / "best")["head.weight"], held["head.weight"])
    resumed = train(RunSpec(**{**spec(out, **settings).__dict__, "resume": True}))
    assert resumed["selected_step"] == ref["selected_step"]
    assert resumed["metrics"] == ref["metrics"] and resumed["val_metrics"] == ref["val_metrics"]
    for name in ("", "best"):
        a, b = weights(tmp_path / "ref" / name), weights(out / name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    for split in ("val", "selected", "test"):
        assert logged(out, split) == logged(tmp_path / "ref", split)


def test_a_choice_lost_with_a_kill_is_not_kept_by_a_resume_that_does_not_make_it_again(tmp_path, crash_after):
    out = tmp_path / "run"
    crash_after(29)
    with pytest.raises(Crash):
        train(spec(out, dropout=0.2, save_every=20, select_metric="accuracy"))
    checkpoint = out / "checkpoints" / "step-00000020"
    held = load_file(str(checkpoint / ckpt.BEST_FILE))
    chosen = torch.load(checkpoint / ckpt.STATE_FILE, weights_only=True)["selection"]
    assert chosen["step"] <= 20 and not torch.equal(weights(out / "best")["head.weight"], held["head.weight"])
    # Resumed with fewer evaluations, the run never sees step 25 again: the checkpoint's choice stands.
    result = train(RunSpec(**{**spec(out, dropout=0.2, save_every=20, select_metric="accuracy",
                                     eval_every=20).__dict__, "resume": True}))
    assert result["selected_step"] == chosen["step"]
    assert result["val_metrics"]["accuracy"] == chosen["best"]
    final = weights(out)
    assert all(torch.equal(final[k], held[k]) for k in final)


def test_a_checkpoint_from_before_selection_resumes_and_chooses_from_there(tmp_path, crash_after, capsys):
    out = tmp_path / "run"
    crash_after(12)
    with pytest.raises(Crash):
        train(spec(out, save_every=10))
    # What a run of an earlier version left: no select_metric in run.json, no selection in the checkpoint.
    run = json.loads((out / "run.json").read_text())
    del run["trainer"]["select_metric"]
    (out / "run.json").write_text(json.dumps(run))
    checkpoint = out / "checkpoints" / "step-00000010"
    state = torch.load(checkpoint / ckpt.STATE_FILE, weights_only=True)
    del state["selection"]
    torch.save(state, checkpoint / ckpt.STATE_FILE)
    ckpt.write_manifest(checkpoint)

    # Early stopping added on resume (a setting that may change) chooses on its metric from step 10 on.
    resumed = spec(out, early_stop_metric="accuracy", early_stop_patience=100)
    result = train(RunSpec(**{**resumed.__dict__, "resume": True}))
    err = capsys.readouterr().err
    assert "resumed from" in err and "the choice on val accuracy starts at step 10" in err
    later = [r for r in records(out, "val") if r["step"] > 10]
    assert result["selected_step"] == max(later, key=lambda r: r["accuracy"])["step"]


def test_selection_settings_are_checked_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match=r"select_metric='accuracy' needs eval_every > 0 .*got 0"):
        TrainConfig(select_metric="accuracy")
    TrainConfig(select_metric="last")  # keeping the last weights needs no evaluation
    assert TrainConfig(early_stop_metric="loss", early_stop_patience=2, eval_every=5).selection_metric == "loss"
    assert TrainConfig(early_stop_metric="loss", early_stop_patience=2, eval_every=5,
                       select_metric="last").selection_metric == ""
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"select_metric must be one of task 'classify''s metrics \(loss, "
                                          r"accuracy\) or 'last' \(the last weights\), got 'bleu'"):
        train(spec(out, select_metric="bleu"))
    assert not out.exists()
    with pytest.raises(ConfigError, match="select_metric evaluate the validation split.*val_fraction 0"):
        train(spec(out, select_metric="accuracy", val_fraction=0.0))
    assert not out.exists()
