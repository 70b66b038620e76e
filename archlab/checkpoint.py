"""Checkpoints that carry their config: ``config.json`` + ``model.safetensors``.

archlab's format::

    config.json        {"archlab_model": "<registry name>", "archlab_version": "...", "config": {...}}
    model.safetensors  the state_dict of the unwrapped, uncompiled module (tied weights stored once)

The weights go through ``PretrainedMixin.save_weights(directory)`` / ``load_weights(directory)``
(safetensors); a model whose state is not tensors (gradient-boosted trees) overrides the two to
write and read its own file instead (LightGBM's text ``model.txt``).

``from_pretrained(dir)`` also reads checkpoints of other libraries whose ``config.json`` names a
``model_type`` that a model family has registered a converter for (Hugging Face ``bert``,
``gpt2``): weights come from ``model.safetensors``, or from ``pytorch_model.bin`` through
``torch.load(weights_only=True)``. Nothing here unpickles arbitrary objects.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_model

from archlab.errors import CheckpointError
from archlab.registry import _discover, create_model
from archlab.utils.io import atomic_path, write_text_atomic

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

_FOREIGN_FORMATS: dict[str, Callable[[Path, dict], torch.nn.Module]] = {}


def register_checkpoint_format(model_type: str):
    """Decorator: ``loader(directory, config_dict) -> model`` for a foreign ``config.json``."""

    def wrap(loader):
        _FOREIGN_FORMATS[model_type] = loader
        return loader

    return wrap


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module under DDP / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)):
            model = model.module
        else:
            return model


def model_config_dict(model: torch.nn.Module) -> dict[str, Any]:
    model = unwrap(model)
    name = getattr(model, "model_name", None)
    config = getattr(model, "config", None)
    if name is None or not dataclasses.is_dataclass(config):
        raise CheckpointError(
            f"{type(model).__name__} cannot be saved as an archlab checkpoint: it needs a registry "
            "name (`model_name`, set by archlab.create_model) and a dataclass `config`"
        )
    from archlab import __version__

    return {"archlab_model": name, "archlab_version": __version__, "config": dataclasses.asdict(config)}


def save_pretrained(model: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write ``config.json`` and ``model.safetensors`` for ``model`` into directory ``path``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = model_config_dict(model)
    core = unwrap(model)
    if isinstance(core, PretrainedMixin):  # safetensors, or the format the model declares (trees: LightGBM text)
        core.save_weights(path)
    else:
        save_tensors(core, path, config["archlab_model"])
    write_text_atomic(path / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return path


def save_tensors(model: torch.nn.Module, path: Path, name: str) -> None:
    """``path/model.safetensors``: the state_dict of ``model`` (tied weights stored once), of registry name ``name``."""
    with atomic_path(path / WEIGHTS_NAME) as tmp:
        save_model(model, str(tmp), metadata={"archlab_model": name})


def load_tensors(model: torch.nn.Module, path: Path, name: str) -> None:
    """Load ``path/model.safetensors`` into ``model`` (strict), with a CheckpointError that says what is wrong."""
    try:
        load_model(model, str(path / WEIGHTS_NAME), strict=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"{str(path)!r} has no {WEIGHTS_NAME}") from e
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path / WEIGHTS_NAME} is unreadable (truncated or corrupted?): {e}") from e
    except RuntimeError as e:  # torch's many-line list of mismatched keys, on one line
        raise CheckpointError(f"{path / WEIGHTS_NAME} does not fit model {name!r}: {' '.join(str(e).split())[:400]}") \
            from None


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    cfg_file = path / CONFIG_NAME
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {str(path)!r} does not exist")
    if not cfg_file.is_file():
        raise CheckpointError(f"{str(path)!r} is not a checkpoint: it has no {CONFIG_NAME}")
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_file} is not valid JSON ({' '.join(str(e).split())})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_file} must hold a JSON object (a model's config), got a {type(config).__name__}"
                              f" ({_json_kind(config)})")
    if "archlab_model" in config:
        if not isinstance(config["archlab_model"], str):
            raise CheckpointError(f"{cfg_file}: archlab_model must be a registered model's name, got "
                                  f"{config['archlab_model']!r}")
        if not isinstance(config.get("config", {}), dict):
            raise CheckpointError(f"{cfg_file}: config must be a JSON object of the model's fields, got "
                                  f"{_json_kind(config['config'])}")
    return config


def _json_kind(value) -> str:
    return {list: "list", str: "str", int: "number", float: "number", bool: "true/false",
            type(None): "null", dict: "object"}.get(type(value), type(value).__name__)


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint directory: ``model.safetensors``, else ``pytorch_model.bin`` (weights only)."""
    path = Path(path)
    st, binf = path / WEIGHTS_NAME, path / "pytorch_model.bin"
    try:
        if st.is_file():
            return load_file(str(st))
        if binf.is_file():
            return torch.load(binf, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused an object: never executed
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise CheckpointError(f"{binf} holds more than tensors (a pickled object, refused without running it: "
                              f"{first}); convert the checkpoint to model.safetensors") from None
    except (SafetensorError, RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"weights in {str(path)!r} are unreadable (truncated or corrupted?): "
                              f"{' '.join(str(e).split())[:300]}") from None
    raise CheckpointError(f"{str(path)!r} has no {WEIGHTS_NAME} (or pytorch_model.bin)")


def from_pretrained(path: str | os.PathLike, **overrides: Any) -> torch.nn.Module:
    """Load an archlab checkpoint, or a foreign one (e.g. Hugging Face BERT / GPT-2), from ``path``.

    ``overrides`` change config fields that do not touch the weights' shapes (e.g. ``dropout``).
    """
    path = Path(path)
    config = read_config(path)
    if "archlab_model" in config:
        model = create_model(config["archlab_model"], **{**config.get("config", {}), **overrides})
        if isinstance(model, PretrainedMixin):  # safetensors, or the format the model declares
            model.load_weights(path)
        else:
            load_tensors(model, path, config["archlab_model"])
        return model.eval()
    _discover()  # model families register their foreign formats on import
    model_type = config.get("model_type")
    if model_type in _FOREIGN_FORMATS:
        return _FOREIGN_FORMATS[model_type](path, config, **overrides).eval()
    known = ", ".join(sorted(_FOREIGN_FORMATS)) or "none yet"
    raise CheckpointError(
        f"{path / CONFIG_NAME} is neither an archlab checkpoint (no 'archlab_model' key) nor a known "
        f"foreign format (model_type={model_type!r}; known: {known})"
    )


class PretrainedMixin:
    """Gives a registered model ``save_pretrained(dir)``; load with ``archlab.from_pretrained(dir)``.

    ``save_weights(dir)`` / ``load_weights(dir)`` write and read the model's state (safetensors); a
    model whose state is not tensors overrides both with its own format."""

    model_name: str | None = None

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        return save_pretrained(self, path)

    def save_weights(self, directory: str | os.PathLike) -> None:
        save_tensors(self, Path(directory), self.model_name)

    def load_weights(self, directory: str | os.PathLike) -> None:
        load_tensors(self, Path(directory), self.model_name)
