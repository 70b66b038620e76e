"""Nothing lost: non-finite training stops and saves nothing non-finite, pruning never takes the new
checkpoints after a resume fell back, one run per directory, a failed start leaves nothing."""

from __future__ import annotations

import json
import signal

import pytest
import torch

import archlab
from archlab.cli import main
from archlab.errors import ConfigError, TrainingError
from archlab.tasks.classify import ClassifyTask
from archlab.train import RunSpec, train
from archlab.train import checkpointing as ckpt
from archlab.train import engine
from tests.train.helpers import start_train, weights

TINY = {"hidden": "16", "batch_size": 16, "lr": 3e-3, "log_every": 1}
ARGS = ["--task", "classify", "--model", "mlp", "--data", "digits", "--set", "hidden=16",
        "--set", "batch_size=16", "--set", "log_every=1"]


def spec(out, **settings):
    return RunSpec(task="classify", model="mlp", data="digits", out=out, settings={**TINY, **settings})


def steps(out):
    return [ckpt.step_of(p) for p in ckpt.list_checkpoints(out)]


def all_finite(directory) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in weights(directory).values())


@pytest.fixture
def nan_batch_at(monkeypatch):
    """Make the training batch of data position ``p`` all NaN (the loss of step p + 1 is NaN)."""

    def poison(position: int):
        original = ClassifyTask.train_batch

        def train_batch(self, pos, batch_size, seed, shard):
            x, y = original(self, pos, batch_size, seed, shard)
            return (x * float("nan"), y) if pos == position else (x, y)

        monkeypatch.setattr(ClassifyTask, "train_batch", train_batch)

    return poison


def test_a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_finite_checkpoints(tmp_path, nan_batch_at):
    out = tmp_path / "run"
    nan_batch_at(12)
    with pytest.raises(TrainingError, match=r"^step 13: the training loss is nan .*the last checkpoint, "
                                            r".*step-00000010, holds finite weights"):
        train(spec(out, max_steps=30, save_every=5))
    assert steps(out) == [5, 10]
    assert all(all_finite(p) for p in ckpt.list_checkpoints(out))
    assert not (out / "model.safetensors").exists()  # no final model of a diverged run
    # Resuming into the same NaN stops at the same step; the finite checkpoints stay, whatever follows.
    with pytest.raises(TrainingError, match="^step 13: "):
        train(RunSpec(**{**spec(out, max_steps=30, save_every=5).__dict__, "resume": True}))
    assert steps(out) == [5, 10] and all(all_finite(p) for p in ckpt.list_checkpoints(out))


def test_weights_that_turn_non_finite_are_never_saved(tmp_path, monkeypatch):
    build = engine.build_optimizer

    def poisoned_optimizer(model, cfg):
        optimizer = build(model, cfg)
        calls = {"n": 0}

        def after_step(opt, args, kwargs):  # the 10th update overflows one weight
            calls["n"] += 1
            if calls["n"] == 10:
                with torch.no_grad():
                    model.head.weight[0, 0] = float("inf")

        optimizer.register_step_post_hook(after_step)
        return optimizer

    monkeypatch.setattr(engine, "build_optimizer", poisoned_optimizer)
    out = tmp_path / "run"
    with pytest.raises(TrainingError, match=r"^step 10: the weights are no longer finite \(head.weight"):
        train(spec(out, max_steps=30, save_every=5))
    assert steps(out) == [5] and all_finite(ckpt.list_checkpoints(out)[0])


def test_a_run_that_diverges_before_its_first_checkpoint_leaves_nothing(tmp_path, nan_batch_at, capsys):
    out = tmp_path / "run"
    nan_batch_at(2)
    assert main(["train", *ARGS, "--max-steps", "20", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("archlab train: error: step 3: the training loss is nan")
    assert "no checkpoint was written" in err[-1]
    assert not out.exists()  # the retry needs no --overwrite


def test_lr_inf_and_other_out_of_range_settings_are_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    for setting, message in [("lr=inf", "lr takes a finite number, got 'inf'"),
                             ("weight_decay=-0.1", "weight_decay must be >= 0, got -0.1"),
                             ("momentum=-1", "momentum must be in [0, 1), got -1.0"),
                             ("betas=0.9,1.5", "betas must both be in [0, 1), got (0.9, 1.5)"),
                             ("grad_clip=nan", "grad_clip takes a finite number"),
                             ("early_stop_metric=bleu", "early_stop_metric='bleu' needs early_stop_patience")]:
        assert main(["train", *ARGS, "--max-steps", "5", "--set", setting, "--out", str(out)]) == 2, setting
        assert message in capsys.readouterr().err
        assert not out.exists()
    # A metric the task does not have: refused before training, naming the task's metrics.
    assert main(["train", *ARGS, "--max-steps", "5", "--eval-every", "2", "--set", "early_stop_metric=bleu",
                 "--set", "early_stop_patience=2", "--out", str(out)]) == 2
    assert "early_stop_metric must be one of task 'classify''s metrics (loss, accuracy), got 'bleu'" in \
        capsys.readouterr().err
    assert not out.exists()


def test_a_model_that_cannot_run_the_task_fails_before_anything_is_kept(tmp_path, capsys, monkeypatch):
    def step(self, model, batch):  # what a shape that does not work out looks like, deep inside torch
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x64 and 32x16)\nmore detail")

    monkeypatch.setattr(ClassifyTask, "step", step)
    out = tmp_path / "run"
    out.mkdir()  # made by the user: it stays, empty
    assert main(["train", *ARGS, "--max-steps", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("archlab train: error: --model 'mlp' cannot run task 'classify' on --data 'digits': "
                       "mat1 and mat2 shapes cannot be multiplied (1x64 and 32x16)")
    assert out.is_dir() and [p.name for p in out.iterdir() if not p.name.startswith(".")] == []
    monkeypatch.undo()
    assert main(["train", *ARGS, "--max-steps", "2", "--out", str(out)]) == 0  # no --overwrite needed


def test_new_checkpoints_are_never_pruned_after_resume_fell_back(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *ARGS, "--max-steps", "6", "--save-every", "2", "--set", "keep_last=2",
                 "--out", str(out)]) == 0
    assert steps(out) == [4, 6]
    w = out / "checkpoints" / "step-00000006" / "model.safetensors"
    w.write_bytes(w.read_bytes()[:50])  # damaged: resume falls back to step 4
    assert main(["train", *ARGS, "--max-steps", "12", "--save-every", "2", "--set", "keep_last=2",
                 "--out", str(out), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "moved the damaged checkpoint aside" in err and "resumed from" in err
    assert steps(out) == [10, 12]  # the new ones, not the damaged step 6
    assert (out / "checkpoints" / "damaged" / "step-00000006").is_dir()
    # Every checkpoint damaged: the run restarts from 0, and its new checkpoints are the ones kept.
    for p in ckpt.list_checkpoints(out):
        (p / "trainer_state.pt").unlink()
    assert main(["train", *ARGS, "--max-steps", "4", "--save-every", "2", "--set", "keep_last=2",
                 "--out", str(out), "--resume"]) == 0
    assert "starting from step 0" in capsys.readouterr().err
    assert steps(out) == [2, 4]


def test_one_run_per_directory_a_live_run_holds_it(tmp_path, capsys):
    out = tmp_path / "run"
    # A real second process holds the directory: paused in the middle of its first checkpoint write.
    holder = start_train([*ARGS, "--max-steps", "50", "--save-every", "2", "--out", str(out)],
                         ARCHLAB_TEST_CHECKPOINT_PAUSE="60")
    try:
        for line in holder.stderr:
            if line.startswith("checkpoint write paused"):
                break
        else:
            pytest.fail(f"the holder ended early: {holder.wait()}")
        before = sorted(p.name for p in (out / "checkpoints").iterdir())
        for flags in ([], ["--resume"], ["--overwrite"]):
            assert main(["train", *ARGS, "--max-steps", "50", "--save-every", "2", "--out", str(out), *flags]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"is in use by another run (process {holder.pid})" in err[0], (flags, err)
        # The live run's files, its half-written checkpoint included, are untouched.
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before
        assert json.loads((out / "run.json").read_text())["model"] == "mlp"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    # The operating system released the lock with the process: resume now works.
    assert main(["train", *ARGS, "--max-steps", "4", "--save-every", "2", "--out", str(out), "--resume"]) == 0
    assert archlab.from_pretrained(out).config.hidden == (16,)


def test_resolving_checks_every_trainer_setting_from_the_python_api(tmp_path):
    from archlab.train import TrainConfig

    for kwargs, message in [({"lr": float("inf")}, "lr takes a finite number"),
                            ({"lr": "0.1"}, "lr takes a finite number, got '0.1' \\(str\\)"),
                            ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
                            ({"max_steps": 2.5}, "max_steps takes an integer, got 2.5"),
                            ({"gamma": 2.0}, "gamma .* must be in \\(0, 1\\]"),
                            ({"optimizer": "sgd", "nesterov": True, "momentum": 0.0}, "nesterov=true needs a momentum"),
                            ({"seed": -1}, "seed must be an integer in \\[0, 2\\*\\*63\\)"),
                            ({"peak_flops": -1.0}, "peak_flops must be >= 0")]:
        with pytest.raises(ConfigError, match=message):
            TrainConfig(**kwargs)
