"""Typed settings from text, recipes, optimiser parameter groups and learning-rate schedules."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import archlab
from archlab.errors import ConfigError
from archlab.tasks import get_task
from archlab.train.config import TrainConfig, load_config_file, parse_set, parse_value, split_keys
from archlab.train.resolve import model_config_class
from archlab.train.optim import build_optimizer, build_scheduler, lr_multiplier

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_values_parse_with_the_field_type():
    assert parse_value("lr", "3e-3", float) == 0.003
    assert parse_value("max_steps", "1e3", int) == 1000 and parse_value("max_steps", 2.0, int) == 2
    assert parse_value("compile", "True", bool) is True and parse_value("compile", "off", bool) is False
    assert parse_value("hidden", "64,32", tuple[int, ...]) == (64, 32)
    assert parse_value("hidden", [64], tuple[int, ...]) == (64,)
    assert parse_value("betas", "(0.9, 0.95)", tuple[float, float]) == (0.9, 0.95)
    assert parse_value("d_ff", "none", int | None) is None and parse_value("d_ff", "96", int | None) == 96
    with pytest.raises(ConfigError, match="max_steps takes an integer, got '1.5'"):
        parse_value("max_steps", "1.5", int)
    with pytest.raises(ConfigError, match="compile takes true or false, got 'maybe'"):
        parse_value("compile", "maybe", bool)
    with pytest.raises(ConfigError, match="betas takes 2 comma-separated values, got '0.9'"):
        parse_value("betas", "0.9", tuple[float, float])
    assert parse_set(["lr=1e-3", "max-steps=5"]) == {"lr": "1e-3", "max_steps": "5"}


def test_trainer_fields_are_checked():
    with pytest.raises(ConfigError, match="optimizer must be one of \\('adamw', 'sgd', 'muon'\\), got 'adam'"):
        TrainConfig(optimizer="adam")
    with pytest.raises(ConfigError, match="batch_size=10 must be divisible by grad_accum=4"):
        TrainConfig(batch_size=10, grad_accum=4)
    with pytest.raises(ConfigError, match="unknown key\\(s\\) bogus; valid keys are trainer: batch_size"):
        split_keys({"bogus": 1}, {"trainer": TrainConfig})


def test_adamw_decays_only_matrices_and_sgd_uses_nesterov():
    model = archlab.create_model("mlp", in_features=8, hidden=(4,), num_classes=3)
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    sgd = build_optimizer(model, TrainConfig(optimizer="sgd", momentum=0.8, nesterov=True, lr=0.1))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["momentum"] == 0.8


def test_schedules():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_multiplier(0, cfg, 110) == pytest.approx(0.1)       # (0 + 1) / 10
    assert lr_multiplier(9, cfg, 110) == pytest.approx(1.0)
    assert lr_multiplier(10, cfg, 110) == pytest.approx(1.0)      # cosine starts at the top
    assert lr_multiplier(60, cfg, 110) == pytest.approx(0.55)     # halfway: (1 + 0.1) / 2
    assert lr_multiplier(110, cfg, 110) == pytest.approx(0.1)     # ends at min_lr_ratio
    step = TrainConfig(schedule="step", step_size=5, gamma=0.5)
    assert [lr_multiplier(s, step, 20) for s in (0, 4, 5, 10)] == [1.0, 1.0, 0.5, 0.25]
    # The scheduler drives the optimiser's learning rate and its state is plain data.
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, 110)
    for _ in range(60):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.55)
    assert sched.state_dict()["lr_lambdas"] == [None, None]  # nothing of the function is stored


@pytest.mark.parametrize("recipe", sorted(CONFIGS.glob("*.*")), ids=lambda p: p.name)
def test_recipes_hold_only_valid_keys(recipe):
    values = load_config_file(recipe)
    task_cls, model = get_task(values.pop("task")), values.pop("model")
    values.pop("data", None)
    groups = split_keys(values, {"trainer": TrainConfig, "task": task_cls.Config, "model": model_config_class(model)})
    TrainConfig(**groups["trainer"])
    task_cls.Config(**groups["task"])


def test_recipe_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = [")
    with pytest.raises(ConfigError, match="is not valid"):
        load_config_file(bad)
    with pytest.raises(ConfigError, match="must end in .yaml, .yml or .toml"):
        (tmp_path / "r.json").write_text("{}")
        load_config_file(tmp_path / "r.json")


@pytest.mark.parametrize("ours_cls, torch_cls, kw", [
    ("AdamW", torch.optim.AdamW, dict(lr=0.01, betas=(0.9, 0.95), weight_decay=0.1)),
    ("SGD", torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
])
def test_the_trainers_optimisers_step_exactly_as_torchs(ours_cls, torch_cls, kw):
    # archlab.train.eager's optimisers only skip torch.compile's guards: the same numbers, bit for bit,
    # the same state_dict, and a closure still runs with gradients enabled.
    from archlab.train import eager

    torch.manual_seed(0)
    a = torch.nn.Linear(4, 3)
    b = torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    ours, theirs = getattr(eager, ours_cls)(a.parameters(), **kw), torch_cls(b.parameters(), **kw)
    assert isinstance(ours, torch_cls)
    x = torch.randn(8, 4)
    for _ in range(3):
        for model, opt in ((a, ours), (b, theirs)):
            def closure(model=model, opt=opt):
                opt.zero_grad()
                loss = model(x).pow(2).mean()
                loss.backward()
                return loss
            loss = opt.step(closure)
            assert loss.grad_fn is not None  # the closure ran with gradients on
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q) and p.requires_grad
    assert str(ours.state_dict()) == str(theirs.state_dict())
