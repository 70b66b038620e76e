"""The trainer's settings, and how text from ``--set key=value`` and config files becomes them.

One flat namespace of keys serves the command line, YAML/TOML recipes and the Python API: a key is
a field of ``TrainConfig`` (the trainer), of the task's config (e.g. ``block_size``) or of the
model's config (e.g. ``n_layer``). Values are parsed with the type of the dataclass field they
land in; an unknown key or a value of the wrong type is a ``ConfigError`` that lists the valid keys.

``route_settings`` resolves every key once, unambiguously:

- ``trainer.KEY``, ``task.KEY``, ``model.KEY`` name the owner outright;
- a bare key goes to the one config that has it. A key both the task and the model have
  (``block_size``, ``context_length``, ``max_len``) is the task's: the task's value decides the
  model's through the data, and ``resolve`` refuses it (asking for ``model.KEY``) where it does not;
- a width, depth or head count under another family's name (``d_model`` for BERT's
  ``hidden_size``, ``n_layer`` for ``num_layers``...) is taken by the model's own name, with a note
  saying so (``ALIASES``).
"""

from __future__ import annotations

import math
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from archlab.errors import ConfigError, check
from archlab.utils.fields import check_fields, field_types  # noqa: F401  (field_types: re-exported)

OPTIMIZERS = ("adamw", "sgd", "muon")
SCHEDULES = ("cosine", "step", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything the training loop needs besides the task and the model."""

    # How much: batch_size is the *global* batch of one optimiser step (all processes, all
    # accumulation steps together), so one config gives the same run on 1 or N processes.
    batch_size: int = 32
    grad_accum: int = 1             # micro-steps per optimiser step (all-reduce only on the last)
    max_steps: int = 1000           # optimiser steps; replaced by `epochs` when that is > 0
    epochs: float = 0.0
    max_seconds: float = 0.0        # also stop once training (not evaluation) has taken this long; 0 = no cap
    # Optimiser: AdamW (decay only on tensors with 2+ dims), SGD with momentum / Nesterov, or Muon
    # (orthogonalised momentum for the hidden matrices at muon_lr, AdamW at lr for everything else).
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    nesterov: bool = False
    muon_lr: float = 0.02
    muon_momentum: float = 0.95     # Nesterov momentum of the Muon matrices
    ns_steps: int = 5               # Newton-Schulz iterations per Muon step
    # Schedule: linear warmup, then cosine to min_lr_ratio * lr, step decay, or constant.
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    step_size: int = 1000           # step schedule: multiply by gamma every step_size steps
    gamma: float = 0.1
    grad_clip: float = 1.0          # max global gradient norm; 0 disables clipping
    # Numerics and placement.
    precision: str = "fp32"         # fp32 | bf16 (autocast, CPU and CUDA) | fp16 (CUDA, grad scaler)
    compile: bool = False           # torch.compile, falling back to eager when it fails
    compile_backend: str = "inductor"
    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    # Evaluation, early stopping, checkpoints, logging.
    eval_every: int = 0             # steps between evaluations; 0 = only at the end
    eval_batches: int = 0           # batches per evaluation; 0 = the whole evaluation split
    eval_batch_size: int = 0        # examples per evaluation batch; 0 = the training micro-batch
    early_stop_metric: str = ""     # e.g. "loss" or "accuracy" of the evaluation split
    early_stop_patience: int = 0    # evaluations without improvement before stopping
    # The weights a run keeps: of the validation evaluations (every eval_every steps, and the last step's),
    # the one with the best value of this metric in the task's direction (metric_modes; a tie keeps the
    # earlier), saved in OUT/best/ as they come. "" = early_stop_metric's when early stopping (stopping
    # without keeping the best weights would be half of it), else the last weights; "last" = the last
    # weights, always. The final validation and test evaluations and OUT's model are of the kept weights.
    select_metric: str = ""
    save_every: int = 0             # steps between checkpoints; 0 = only at the end
    keep_last: int = 3              # checkpoints kept in OUT/checkpoints
    log_every: int = 10             # steps between logged training lines
    tensorboard: bool = False       # also log to OUT/tensorboard (needs the tensorboard package)
    peak_flops: float = 0.0         # per-device peak FLOP/s for MFU; 0 = look the device up

    def __post_init__(self):
        """Every setting checked before training starts: type, finiteness, range."""
        check_fields(self)  # types, and floats finite (lr=inf is refused here)
        for name in ("batch_size", "grad_accum", "keep_last", "log_every", "step_size"):
            value = getattr(self, name)
            check(value > 0, f"{name} must be a positive integer, got {value}")
        for name in ("max_steps", "eval_every", "save_every", "eval_batches", "eval_batch_size", "warmup_steps",
                     "early_stop_patience"):
            value = getattr(self, name)
            check(value >= 0, f"{name} must be >= 0, got {value}")
        check(self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}")
        check(self.max_seconds >= 0, f"max_seconds must be >= 0 (0 = no cap), got {self.max_seconds}")
        check(self.max_steps > 0 or self.epochs > 0, "max_steps or epochs must be > 0, got neither")
        check(self.lr > 0, f"lr must be positive, got {self.lr}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        check(all(0.0 <= b < 1.0 for b in self.betas), f"betas must both be in [0, 1), got {self.betas}")
        check(0.0 <= self.momentum < 1.0, f"momentum must be in [0, 1), got {self.momentum}")
        check(not self.nesterov or self.momentum > 0,
              f"nesterov=true needs a momentum > 0, got momentum={self.momentum}")
        check(0.0 < self.gamma <= 1.0, f"gamma (the step schedule's decay factor) must be in (0, 1], got {self.gamma}")
        check(self.muon_lr > 0, f"muon_lr must be positive, got {self.muon_lr}")
        check(0.0 <= self.muon_momentum < 1.0, f"muon_momentum must be in [0, 1), got {self.muon_momentum}")
        check(self.ns_steps >= 1, f"ns_steps must be >= 1, got {self.ns_steps}")
        check(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        check(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        check(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        check(0.0 <= self.min_lr_ratio <= 1.0, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        check(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 = no clipping), got {self.grad_clip}")
        check(self.peak_flops >= 0, f"peak_flops must be >= 0 (0 = look the device up), got {self.peak_flops}")
        check(0 <= self.seed < 2**63, f"seed must be an integer in [0, 2**63), got {self.seed}")
        check(bool(self.compile_backend.strip()), "compile_backend must name a torch.compile backend, got ''")
        check(not (self.early_stop_patience and not self.early_stop_metric),
              f"early_stop_patience={self.early_stop_patience} needs early_stop_metric (e.g. loss), got none")
        check(not (self.early_stop_metric and not self.early_stop_patience),
              f"early_stop_metric={self.early_stop_metric!r} needs early_stop_patience >= 1, got 0")
        check(not (self.early_stop_metric and not self.eval_every),
              f"early_stop_metric={self.early_stop_metric!r} needs eval_every > 0 (early stopping is decided at "
              "the periodic evaluations), got 0")
        check(not (self.select_metric not in ("", "last") and not self.eval_every),
              f"select_metric={self.select_metric!r} needs eval_every > 0 (the weights are chosen among the periodic "
              "evaluations of the validation split), got 0")
        check(
            self.batch_size % self.grad_accum == 0,
            f"batch_size={self.batch_size} must be divisible by grad_accum={self.grad_accum}",
        )

    @property
    def selection_metric(self) -> str:
        """The validation metric that chooses the weights a run keeps; "" keeps the last ones."""
        if self.select_metric == "last":
            return ""
        return self.select_metric or self.early_stop_metric


# --------------------------------------------------------------------------------------------
# Typed values from text


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def parse_value(key: str, value: Any, annotation: Any) -> Any:
    """``value`` (text from ``--set``, or a value read from YAML/TOML) as the type ``annotation``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # Optional[X] / X | None
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return parse_value(key, value, arg)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{key}: cannot parse {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            text = value.strip().strip("()[]")
            items = [v.strip() for v in text.split(",") if v.strip()] if text else []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            items = [value]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(parse_value(key, v, args[0]) for v in items)
        if args and len(items) != len(args):
            raise ConfigError(f"{key} takes {len(args)} comma-separated values, got {value!r}")
        return tuple(parse_value(key, v, a) for v, a in zip(items, args or [str] * len(items)))
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise ConfigError(f"{key} takes true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        try:
            return int(str(value).replace("_", ""))
        except ValueError:
            try:  # "1e3" is a fine way to write 1000
                f = float(str(value))
                if f.is_integer():
                    return int(f)
            except ValueError:
                pass
        raise ConfigError(f"{key} takes an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        else:
            try:
                number = float(str(value))
            except ValueError:
                raise ConfigError(f"{key} takes a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key} takes a finite number, got {value!r}")
        return number
    if annotation is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key} takes a string, got {value!r}")
        return str(value)
    return value  # an annotation we do not know how to check: leave the value as given


def parse_set(items: list[str]) -> dict[str, str]:
    """``["lr=3e-3", "hidden=64,32"]`` -> ``{"lr": "3e-3", "hidden": "64,32"}`` (values stay text)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--set takes key=value, got {item!r}")
        out[key] = value.strip()
    return out


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A flat mapping of keys from a ``.yaml``/``.yml`` or ``.toml`` recipe."""
    path = Path(path)
    check(path.is_file(), f"--config {str(path)!r} is not a readable file")
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"--config must end in .yaml, .yml or .toml, got {str(path)!r}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"--config {str(path)!r}, line {line}: not UTF-8 text ({e.reason})") from None
    if "\x00" in text:
        raise ConfigError(f"--config {str(path)!r} is a binary file (it holds NUL bytes), expected YAML or TOML text")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else (yaml.safe_load(text) or {})
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        detail = " ".join(str(e).split())
        raise ConfigError(f"--config {str(path)!r} is not valid: {detail}") from None
    check(isinstance(data, dict), f"--config {str(path)!r} must hold a mapping of keys, got {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


# The texts use one word for these sizes; the families spell them differently.
ALIASES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("the model width", ("d_model", "hidden_size", "hidden_dim", "n_embd", "width")),
    ("the number of layers", ("num_layers", "n_layer", "n_layers", "depth")),
    ("the number of attention heads", ("num_heads", "n_head", "nhead", "n_heads")),
    ("the feed-forward width", ("dim_feedforward", "d_ff", "intermediate_size", "mlp_dim", "ffn_dim")),
)
GROUPS = ("trainer", "task", "model")


@dataclass
class RoutedSettings:
    """Settings sorted by owner: ``groups[owner][field] = value``; ``shared``: bare keys both the task
    and the model have (given to the task); ``notes``: what an alias was read as."""

    groups: dict[str, dict[str, Any]]
    shared: list[str]
    notes: list[str]


def _alias(key: str, fields: dict[str, Any]) -> tuple[str | None, str]:
    """The model field that ``key`` names under another family's spelling, and what it means."""
    for meaning, names in ALIASES:
        if key in names:
            present = [n for n in names if n in fields]
            if len(present) == 1:
                return present[0], meaning
            if present:
                raise ConfigError(f"{key} ({meaning}) matches several fields of the model: {', '.join(present)}; "
                                  "set the one you mean")
    return None, ""


def route_settings(values: dict[str, Any], groups: dict[str, type]) -> RoutedSettings:
    """Route each key of ``values`` to one of ``groups`` (``{"trainer": cls, "task": cls, "model": cls}``),
    parsed with that field's type; see the module docstring for the rules."""
    types_by_group = {g: field_types(cls) for g, cls in groups.items()}
    routed = RoutedSettings({g: {} for g in groups}, [], [])
    unknown = []
    for key, value in values.items():
        owner, _, name = key.partition(".")
        if name:  # qualified: trainer.KEY / task.KEY / model.KEY
            check(owner in groups, f"{key}: the part before the dot must be one of {', '.join(groups)}, got {owner!r}")
            check(name in types_by_group[owner], f"{key}: the {owner} has no setting {name!r}; its settings are "
                                                 f"{', '.join(sorted(types_by_group[owner]))}")
            target, field_name = owner, name
        else:
            owners = [g for g, t in types_by_group.items() if key in t]
            if len(owners) > 1 and set(owners) != {"task", "model"}:
                raise ConfigError(f"{key} is a setting of the {' and the '.join(owners)}: write "
                                  + " or ".join(f"{g}.{key}" for g in owners))
            if len(owners) == 2:
                routed.shared.append(key)
            if owners:
                target, field_name = owners[0], key
            elif "model" in groups and (found := _alias(key, types_by_group["model"]))[0]:
                target, field_name = "model", found[0]
                routed.notes.append(f"{key} read as {found[0]} ({found[1]}: this model's name for it)")
            else:
                unknown.append(key)
                continue
        check(field_name not in routed.groups[target],
              f"{field_name} is given twice (as {key} and another spelling); give it once")
        routed.groups[target][field_name] = parse_value(key, value, types_by_group[target][field_name])
    if unknown:
        listing = "; ".join(f"{g}: {', '.join(sorted(t))}" for g, t in types_by_group.items())
        raise ConfigError(f"unknown key(s) {', '.join(sorted(unknown))}; valid keys are {listing}")
    return routed


def split_keys(values: dict[str, Any], groups: dict[str, type]) -> dict[str, dict[str, Any]]:
    """``route_settings(values, groups).groups``: each key parsed into the group that owns it.

    Unknown keys raise a ``ConfigError`` naming them and listing every valid key.
    """
    return route_settings(values, groups).groups

