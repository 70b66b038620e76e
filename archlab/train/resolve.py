"""From a run's description to its parts: trainer settings, a task with its data, a model.

``RunSpec`` is a training run as the command line (or the Python API) describes it: a task, a
model, data, an output directory and flat ``settings`` (trainer, task and model fields as
``--set`` takes them). ``resolve`` routes each setting to its owner, loads the data and builds the
model, with the fields the data fixes (vocabulary size, classes, channels ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from archlab.errors import ConfigError, check
from archlab.registry import create_model, model_config, model_info, models_for
from archlab.tasks import Task, get_task
from archlab.train.config import TrainConfig, route_settings


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
    notes: list[str] = field(default_factory=list)  # how settings were read (aliases), for the run's log


# --------------------------------------------------------------------------------------------
# From settings to a task, a model and a trainer config


def model_config_class(name: str) -> type:
    """The config dataclass of model ``name``, from the registry (no model is built)."""
    return model_info(name).config_class


def check_trainable(model: str, task: str) -> None:
    """ConfigError unless task ``task`` can train model ``model`` (it implements the task's interface)."""
    entry, task_cls = model_info(model), get_task(task)
    if not issubclass(entry.model_class, task_cls.requires):
        can = entry.tasks
        also = f" ({model} is trained by task {', '.join(can)})" if can else ""
        raise ConfigError(f"{model} cannot be trained for task {task}{also}; models that can: "
                          f"{', '.join(models_for(task))}")


def resolve(spec: RunSpec, world_size: int = 1) -> Resolved:
    """Parse ``spec.settings`` into trainer, task and model fields; load the data; build the model."""
    check_trainable(spec.model, spec.task)
    task_cls, model_cls = get_task(spec.task), model_config_class(spec.model)
    routed = route_settings(spec.settings, {"trainer": TrainConfig, "task": task_cls.Config, "model": model_cls})
    groups = routed.groups
    train_cfg = TrainConfig(**groups["trainer"])
    check(
        train_cfg.batch_size % (train_cfg.grad_accum * world_size) == 0,
        f"batch_size={train_cfg.batch_size} must be divisible by grad_accum={train_cfg.grad_accum} x "
        f"{world_size} process(es) = {train_cfg.grad_accum * world_size}",
    )
    task = task_cls(task_cls.Config(**groups["task"]), spec.data)
    fixed = task.model_fields(model_info(spec.model).model_class, model_config(spec.model, **groups["model"]))
    for key in routed.shared:
        check(key in fixed, f"{key} is a setting of both the task and the model, and the data does not tie them: "
                            f"write task.{key} or model.{key}")
    for key, value in groups["model"].items():
        if key in fixed and fixed[key] != value:
            raise ConfigError(f"{key} is fixed by the data ({key}={fixed[key]}), got {key}={value}")
    model = create_model(spec.model, **{**groups["model"], **fixed})
    task.prepare_model(model)  # before a resume loads the saved weights (and buffers) over it
    task.attach(model)
    return Resolved(train_cfg, task, model, groups["model"], routed.notes)
