"""What ``archlab summary`` and ``archlab explain`` look at: a run, a saved model, or a name.

``load_target(text)`` accepts

    a run directory        written by ``archlab train`` (``task.json`` beside the weights), or one of
                           its ``checkpoints/step-N``: the trained model; with ``with_task`` also the
                           task, rebuilt with the tokenizers / class names / normalisation it was
                           trained with, and its test data
    a saved model          a folder with archlab's ``config.json`` + ``model.safetensors``
                           (``save_pretrained``), no task
    a Hugging Face folder  a ``config.json`` with a ``model_type`` archlab loads (BERT, GPT-2), e.g.
                           sentence-transformers' all-MiniLM-L6-v2; its ``tokenizer.json`` if any
    a registry name        ``archlab list``; freshly initialised (random) weights, ``settings``
                           override config fields as ``--set`` does

and says which it was, so a page or a table can say whether the weights were trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn

from archlab.errors import ConfigError, check

KINDS = {"run": "a trained run", "checkpoint": "a saved model", "hf": "a Hugging Face folder",
         "registry": "a registry name (random weights)"}


@dataclass
class Target:
    kind: str                   # "run" | "checkpoint" | "hf" | "registry"
    text: str                   # what was given
    name: str                   # registry name, or the Hugging Face model_type
    model: nn.Module
    path: Path | None = None
    task: Any = None            # the task of a run (with_task=True), else None

    @property
    def trained(self) -> bool:
        """False for a registry name: its weights are a fresh initialisation."""
        return self.kind != "registry"

    @property
    def description(self) -> str:
        where = f" {self.path}" if self.path is not None else ""
        return f"{self.name} ({KINDS[self.kind]}{where})"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e})") from e
    check(isinstance(data, dict), f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def load_target(text: str, *, settings: dict[str, Any] | None = None, with_task: bool = False) -> Target:
    """The model (and, for a run with ``with_task``, its task) that ``text`` names; see the module doc."""
    from archlab.checkpoint import from_pretrained
    from archlab.registry import create_model, list_models, model_info

    path = Path(text).expanduser()
    if path.is_dir():
        check(not settings, f"--set changes a registry model's config; {text!r} is a saved model, whose config "
                            "is fixed by its weights")
        if (path / "task.json").is_file() or (path / "run.json").is_file():
            from archlab.train.evaluation import load_for_evaluation, read_task_description

            read_task_description(path, use="explain")  # a clear line when the run has no final model yet
            if with_task:
                model, task = load_for_evaluation(path)
            else:
                model, task = from_pretrained(path), None
            return Target("run", text, getattr(model, "model_name", None) or type(model).__name__,
                          model.eval(), path, task)
        config_file = path / "config.json"
        check(config_file.is_file(), f"{text!r} is a directory but neither a run of `archlab train` (task.json) "
                                     "nor a saved model (config.json)")
        config = _read_json(config_file)
        model = from_pretrained(path).eval()
        if "archlab_model" in config:
            return Target("checkpoint", text, config["archlab_model"], model, path)
        return Target("hf", text, str(config.get("model_type")), model, path)
    check(not path.exists(), f"{text!r} is a file; give a run directory, a saved model's folder or a registry name")
    if text not in list_models() and ("/" in text or "\\" in text):
        raise ConfigError(f"{text!r} does not exist (expected a run directory, a saved model's folder or a "
                          "registry name)")
    model_info(text)  # an unknown name: a clear error with suggestions
    model = create_model(text, **(settings or {}))
    return Target("registry", text, text, model.eval())
