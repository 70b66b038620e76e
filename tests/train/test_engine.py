"""The training loop in-process: it learns, bf16 trains, accumulation is exact, compile falls back."""

from __future__ import annotations

import json

import pytest
import torch

import archlab
from archlab.errors import ConfigError
from archlab.train import RunSpec, evaluate, measure_step_seconds, resolve, train
from archlab.train import checkpointing as ckpt
from archlab.train.mfu import forward_flops, mfu

TINY = {"hidden": "32", "batch_size": 32, "lr": 3e-3, "log_every": 5}


def run(tmp_path, name="run", **settings):
    spec = RunSpec(task="classify", model="mlp", data="digits", out=tmp_path / name,
                   settings={**TINY, "max_steps": 40, **settings})
    return train(spec)


def train_losses(out):
    return [r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if r["split"] == "train"]


def test_classify_learns_and_final_model_loads(tmp_path):
    result = run(tmp_path, max_steps=80, eval_every=40)
    out = tmp_path / "run"
    assert result["metrics"]["accuracy"] > 0.8  # 10 classes: chance is 0.1
    losses = train_losses(out)
    assert losses[-1] < 0.5 * losses[0]
    model = archlab.from_pretrained(out)
    assert model.config.in_features == 64 and model.config.num_classes == 10  # fixed by the 8x8 digits
    # OUT's manifest vouches for the final model's files, which pass it.
    assert set(json.loads((out / "manifest.json").read_text())) == {
        "config.json", "model.safetensors", "task.json", "classes.json"}
    ckpt.verify(out)
    # evaluate() on the saved model gives exactly the metrics the run reported.
    assert evaluate(out, batch_size=32) == pytest.approx(result["metrics"], rel=1e-12)
    assert evaluate(out, batch_size=32, split="val") == pytest.approx(result["val_metrics"], rel=1e-12)
    # Validation during training and at the end; the test split once, at the end.
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "val"] == [40, 80]
    assert [r["step"] for r in records if r["split"] == "test"] == [80]
    assert result["val_metrics"] != result["metrics"]
    # The trainer state is plain tensors and containers: weights-only loading reads it.
    state = torch.load(out / "checkpoints" / "step-00000080" / ckpt.STATE_FILE, weights_only=True)
    assert state["step"] == 80 and state["data_position"] == 80
    assert set(state) >= {"optimizer", "scheduler", "rng", "early_stop"}


def test_bf16_autocast_trains_with_fp32_master_weights(tmp_path):
    run(tmp_path, precision="bf16", max_steps=40)
    losses = train_losses(tmp_path / "run")
    assert losses[-1] < 0.7 * losses[0]
    w = archlab.from_pretrained(tmp_path / "run").head.weight
    assert w.dtype == torch.float32


def test_gradient_accumulation_equals_the_full_batch(tmp_path):
    run(tmp_path, "full", dropout=0.0, max_steps=10)
    run(tmp_path, "accum", dropout=0.0, max_steps=10, grad_accum=4)
    a = archlab.from_pretrained(tmp_path / "full").state_dict()
    b = archlab.from_pretrained(tmp_path / "accum").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_early_stopping_on_a_metric_that_does_not_improve(tmp_path):
    # A learning rate this small leaves accuracy where it is: the second evaluation stops the run.
    result = run(tmp_path, lr=1e-12, eval_every=5, early_stop_metric="accuracy", early_stop_patience=1)
    assert result["early_stopped"] and result["step"] == 10
    assert archlab.from_pretrained(tmp_path / "run") is not None


def test_time_cap_stops_training_and_still_publishes_the_model(tmp_path):
    result = run(tmp_path, max_steps=1000, max_seconds=1e-9)  # any step takes longer than a nanosecond
    assert result["step"] == 1 and 0 < result["train_seconds"] < 60
    assert 0 <= result["metrics"]["accuracy"] <= 1
    assert archlab.from_pretrained(tmp_path / "run").config.in_features == 64
    uncapped = run(tmp_path, "uncapped", max_steps=12)
    assert uncapped["step"] == 12 and uncapped["train_seconds"] > 0
    with pytest.raises(ConfigError, match="max_seconds must be >= 0"):
        run(tmp_path, "bad", max_seconds=-1)


def test_step_timing_runs_the_real_step_and_writes_nothing(tmp_path):
    spec = RunSpec(task="classify", model="mlp", data="digits", out=tmp_path / "never",
                   settings={**TINY, "max_steps": 40})
    seconds = measure_step_seconds(spec, steps=2)
    assert 0 < seconds < 10  # an MLP step on 8x8 digits takes milliseconds
    assert not (tmp_path / "never").exists()


def test_compile_failure_falls_back_to_eager(tmp_path, capfd):
    from torch._dynamo import register_backend

    @register_backend(name="archlab_test_broken")
    def broken(gm, example_inputs):
        raise RuntimeError("this backend cannot compile anything")

    run(tmp_path, "eager", max_steps=6)
    run(tmp_path, "compiled", max_steps=6, compile=True, compile_backend="archlab_test_broken")
    assert "torch.compile failed" in capfd.readouterr().err
    a = archlab.from_pretrained(tmp_path / "eager").state_dict()
    b = archlab.from_pretrained(tmp_path / "compiled").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the failed attempt left no trace


def test_settings_are_routed_and_checked(tmp_path):
    spec = RunSpec(task="classify", model="mlp", data="digits", out=tmp_path,
                   settings={"lr": "2e-3", "hidden": "16,8", "normalize": "false", "betas": "0.8,0.9"})
    r = resolve(spec)
    assert r.train.lr == 2e-3 and r.train.betas == (0.8, 0.9)
    assert r.task.config.normalize is False
    assert r.model.config.hidden == (16, 8) and r.model.config.in_features == 64
    with pytest.raises(ConfigError, match=r"unknown key\(s\) n_layers; valid keys are trainer: .*model: .*hidden"):
        resolve(RunSpec(task="classify", model="mlp", out=tmp_path, settings={"n_layers": 2}))
    with pytest.raises(ConfigError, match="num_classes is fixed by the data \\(num_classes=10\\), got num_classes=3"):
        resolve(RunSpec(task="classify", model="mlp", out=tmp_path, settings={"num_classes": 3}))
    with pytest.raises(ConfigError, match=r"batch_size=30 must be divisible by grad_accum=2 x 2 process\(es\) = 4"):
        resolve(RunSpec(task="classify", model="mlp", out=tmp_path,
                        settings={"batch_size": 30, "grad_accum": 2}), world_size=2)
    with pytest.raises(ConfigError, match="precision must be one of"):
        resolve(RunSpec(task="classify", model="mlp", out=tmp_path, settings={"precision": "fp8"}))
    assert not any(tmp_path.iterdir())  # resolving never writes


def test_forward_flops_are_counted_and_mfu_uses_every_process():
    model = archlab.create_model("mlp", in_features=64, hidden=(32,), num_classes=10)
    x = torch.randn(1, 64)
    assert forward_flops(model, lambda: model(x)) == 2 * (64 * 32 + 32 * 10)  # two matmuls, 2 FLOPs per MAC
    assert model.training  # restored
    # 1,000 examples/s (all processes) x 3e6 training FLOPs = 3e9 FLOP/s, over 2 devices of 1e10.
    assert mfu(3e6, 1000.0, 2, 1e10) == pytest.approx(0.15)
    assert mfu(3e6, 1000.0, 1, None) is None
