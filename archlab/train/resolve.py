"""From a run's description to its parts: trainer settings, a task with its data, a model.

``RunSpec`` is a training run as the command line (or the Python API) describes it: a task, a
model, data, an output directory and flat ``settings`` (trainer, task and model fields as
``--set`` takes them). ``resolve`` routes each setting to its owner, loads the data and builds the
model, with the fields the data fixes (vocabulary size, classes, channels ...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from archlab.errors import ConfigError, check
from archlab.registry import create_model
from archlab.tasks import Task, get_task
from archlab.train.config import TrainConfig, field_types, split_keys


@dataclass
class RunSpec:
    """A training run as the command line describes it."""

    task: str
    model: str
    out: Path
    data: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # flat keys: trainer, task and model fields
    resume: bool = False
    overwrite: bool = False


@dataclass
class Resolved:
    train: TrainConfig
    task: Task
    model: torch.nn.Module
    model_overrides: dict[str, Any]


# --------------------------------------------------------------------------------------------
# From settings to a task, a model and a trainer config


def model_config_class(name: str) -> type:
    """The config dataclass of model ``name`` (built on the meta device: no memory, no init cost)."""
    try:
        with torch.device("meta"):
            probe = create_model(name)
    except ConfigError:
        raise
    except Exception:  # a constructor that cannot run on meta: build it for real once
        probe = create_model(name)
    check(dataclasses.is_dataclass(probe.config), f"model {name!r} has no dataclass config to train with")
    return type(probe.config)


def resolve(spec: RunSpec, world_size: int = 1) -> Resolved:
    """Parse ``spec.settings`` into trainer, task and model fields; load the data; build the model."""
    task_cls = get_task(spec.task)
    model_cls = model_config_class(spec.model)
    groups = split_keys(spec.settings, {"trainer": TrainConfig, "task": task_cls.Config, "model": model_cls})
    train_cfg = TrainConfig(**groups["trainer"])
    check(
        train_cfg.batch_size % (train_cfg.grad_accum * world_size) == 0,
        f"batch_size={train_cfg.batch_size} must be divisible by grad_accum={train_cfg.grad_accum} x "
        f"{world_size} process(es) = {train_cfg.grad_accum * world_size}",
    )
    task = task_cls(task_cls.Config(**groups["task"]), spec.data)
    fixed = task.model_fields(field_types(model_cls))
    for key, value in groups["model"].items():
        if key in fixed and fixed[key] != value:
            raise ConfigError(f"{key} is fixed by the data ({key}={fixed[key]}), got {key}={value}")
    model = create_model(spec.model, **{**groups["model"], **fixed})
    task.prepare_model(model)  # before a resume loads the saved weights (and buffers) over it
    return Resolved(train_cfg, task, model, groups["model"])
