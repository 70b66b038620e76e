"""Evaluating a model: the task's metrics on a held-out split, and loading saved runs for it.

``evaluate_model`` runs a task's held-out split -- ``"val"`` (during training, for curves and early
stopping) or ``"test"`` (once, at the end) -- through a model (shared out among DDP processes,
summed exactly); ``load_for_evaluation`` rebuilds the model and the task of a run or
checkpoint directory (the same tokenizers and normalisation it was trained with);
``evaluate(checkpoint)`` is the two together. A Hugging Face GPT-2 folder (``config.json`` with
``model_type: gpt2``, its weights and its tokenizer) is read as a language model too.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from archlab.errors import CheckpointError, check
from archlab.models.interfaces import LanguageModel
from archlab.tasks import Task, get_task
from archlab.train import checkpointing as ckpt
from archlab.train import distributed
from archlab.train.config import split_keys
from archlab.train.rundir import RUN_FILE
from archlab.utils.runtime import eval_mode, resolve_device


def to_device(batch, device: torch.device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def autocast_for(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def evaluate_model(model, task: Task, device: torch.device, precision: str, batch_size: int,
                   max_batches: int = 0, world: distributed.World | None = None,
                   split: str = "test") -> dict[str, float]:
    """The task's metrics on its held-out ``split``; batches are shared out among the processes."""
    world = world or distributed.World()
    task.check_split(split)
    totals = torch.zeros(len(task.sum_keys), dtype=torch.float64)
    with eval_mode(model), torch.no_grad():
        for i, batch in enumerate(task.eval_batches(batch_size, split)):
            if max_batches and i >= max_batches:
                break
            if i % world.size != world.rank:
                continue
            with autocast_for(device, precision):
                sums = task.evaluate_batch(model, to_device(batch, device))
            totals += torch.stack([torch.as_tensor(sums[k]).detach().double().cpu() for k in task.sum_keys])
    totals = world.all_reduce_sum(totals)
    return task.metrics(dict(zip(task.sum_keys, totals.tolist())))


def read_task_description(checkpoint: str | Path, use: str = "evaluate") -> dict[str, Any]:
    """The ``task.json`` of a run or checkpoint directory, after checking its files' manifest."""
    path = Path(checkpoint)
    check(path.exists(), f"--checkpoint {str(path)!r} does not exist")
    check(path.is_dir(), f"--checkpoint {str(path)!r} is not a directory")
    if (path / ckpt.MANIFEST_FILE).is_file():
        ckpt.verify(path)
    task_file = path / ckpt.TASK_FILE
    if not task_file.is_file() and (path / RUN_FILE).is_file():
        steps = [p.name for p in ckpt.list_checkpoints(path)]
        raise CheckpointError(f"run {str(path)!r} has no final model yet; {use} one of its checkpoints "
                              f"({', '.join(str(path / 'checkpoints' / s) for s in steps) or 'none written yet'})")
    if not task_file.is_file():
        raise CheckpointError(f"{str(path)!r} has no {ckpt.TASK_FILE}: it was not written by `archlab train`")
    described = _read_json(task_file)
    if not isinstance(described, dict) or not isinstance(described.get("task"), str):
        raise CheckpointError(f"{task_file} is damaged: expected a JSON object naming the task "
                              f'({{"task": ..., "data": ..., "config": {{...}}}}), got {_kind(described)}')
    if not isinstance(described.get("config", {}), dict):
        raise CheckpointError(f"{task_file} is damaged: its config must be a JSON object, got "
                              f"{_kind(described['config'])}")
    return described


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({' '.join(str(e).split())})") from None


def _kind(value) -> str:
    return "a JSON object" if isinstance(value, dict) else f"a {type(value).__name__}"


def check_saved_files(path: Path, task_cls: type[Task]) -> None:
    """The files the task keeps beside the weights (its tokenizer, class names ...) are there and,
    when JSON, readable: without them the model would be evaluated with a vocabulary or classes
    fitted anew, a silently different model."""
    for name in getattr(task_cls, "saved_files", ()):
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{str(path)!r} lacks {name}, which task {task_cls.name!r} saved beside the "
                                  "weights (the model's own vocabulary or classes); copy it back from the run")
        if name.endswith(".json"):
            _read_json(file)


def _check_data_still_there(path: Path, described: dict[str, Any], data: str | None) -> None:
    trained_on = described.get("data")
    if data is None and isinstance(trained_on, str) and Path(trained_on).is_absolute() \
            and not Path(trained_on).exists():
        raise CheckpointError(f"{str(path)!r} was trained on --data {trained_on!r}, which no longer exists; "
                              "give the data to evaluate on with --data")


FOREIGN_LANGUAGE_MODELS = ("gpt2",)  # Hugging Face model types that evaluate / generate read as task 'lm'


def foreign_language_model(path: Path) -> dict[str, Any] | None:
    """The ``config.json`` of a Hugging Face language-model folder (GPT-2) -- one that ``archlab
    train`` did not write (no ``task.json``) -- or None."""
    from archlab.checkpoint import CONFIG_NAME, read_config

    if not path.is_dir() or (path / ckpt.TASK_FILE).is_file() or not (path / CONFIG_NAME).is_file():
        return None
    config = read_config(path)
    return config if config.get("model_type") in FOREIGN_LANGUAGE_MODELS else None


def _describe_foreign(path: Path, config: dict[str, Any], data: str | None) -> dict[str, Any]:
    check(data is not None, f"--checkpoint {str(path)!r} is a Hugging Face {config['model_type']} folder: evaluating "
                            "it needs --data (a text file, or a text data set such as pythondocs)")
    block = config.get("n_positions")
    block = min(128, block) if isinstance(block, int) and block > 0 else 128
    return {"task": "lm", "data": data, "config": {"block_size": block}}


def load_for_evaluation(checkpoint: str | Path, data: str | None = None,
                        task_settings: dict[str, Any] | None = None) -> tuple[torch.nn.Module, Task]:
    """The model and task of a run directory or checkpoint directory, ready to evaluate.

    A Hugging Face GPT-2 folder is evaluated as a language model on ``data`` with its own
    tokenizer. ``task_settings`` override fields of the saved task config (e.g. the
    ``value_column`` of another CSV file given as ``data``)."""
    from archlab.checkpoint import from_pretrained

    path = Path(checkpoint)
    foreign = foreign_language_model(path)
    if foreign is not None:
        described = _describe_foreign(path, foreign, data)
        task_cls = get_task("lm")
    else:
        described = read_task_description(path)
        task_cls = get_task(described["task"])
        check_saved_files(path, task_cls)
        _check_data_still_there(path, described, data)
    settings = {**described.get("config", {}), **(task_settings or {})}
    config = task_cls.Config(**split_keys(settings, {"task": task_cls.Config})["task"])
    try:
        task = task_cls(config, data or described.get("data"), saved=path)
    except (KeyError, TypeError, IndexError, AttributeError) as e:  # a saved file of the wrong shape
        raise CheckpointError(f"the files beside the weights in {str(path)!r} ({', '.join(task_cls.saved_files)}) "
                              f"do not fit task {task_cls.name!r} ({type(e).__name__}: {e}); copy them back from "
                              "the run") from None
    model = from_pretrained(path)
    check(isinstance(model, task_cls.requires),
          f"{str(path)!r} holds a {type(model).__name__}, which task {task.name!r} cannot use")
    fixed = task.model_fields(type(model), model.config)
    for key, value in fixed.items():
        have = getattr(model.config, key, value)
        check(have == value, f"--data {task.data!r} gives {key}={value}, the checkpoint's model has {key}={have}")
    task.attach(model)
    return model, task


def load_runs_for_evaluation(checkpoints: Sequence[str | Path], data: str | None = None,
                             task_settings: dict[str, Any] | None = None) -> tuple[torch.nn.Module, Task]:
    """The model and task of one run (``load_for_evaluation``), or of several runs of one task on
    one data set as one model that averages their predictions (``archlab.models.ensemble``) with
    the first run's task.

    The members must share the files their task keeps beside the weights (the vocabulary, the
    classes and their normalisation) byte for byte: ids that meant different symbols, or images
    normalised differently, cannot be averaged."""
    from archlab.models.ensemble import ensemble_of

    check(len(checkpoints) >= 1, "no checkpoint given")
    if len(checkpoints) == 1:
        return load_for_evaluation(checkpoints[0], data, task_settings)
    paths = [Path(c) for c in checkpoints]
    loaded = [load_for_evaluation(p, data, task_settings) for p in paths]
    task = loaded[0][1]
    for path, (_, other) in zip(paths[1:], loaded[1:]):
        check(other.name == task.name, f"{str(path)!r} was trained for task {other.name!r}, {str(paths[0])!r} for "
                                       f"{task.name!r}: an ensemble's members share one task")
    ensemble = ensemble_of([model for model, _ in loaded])  # refuses the kinds it cannot average
    for path, (_, other) in zip(paths[1:], loaded[1:]):
        check(other.data == task.data, f"{str(path)!r} was trained on data {other.data!r}, {str(paths[0])!r} on "
                                       f"{task.data!r}: give both the same --data, or members of one data set")
        for name in getattr(type(task), "saved_files", ()):  # there: load_for_evaluation checked them
            check((path / name).read_bytes() == (paths[0] / name).read_bytes(),
                  f"{str(path / name)!r} differs from {str(paths[0] / name)!r}: the members were trained with "
                  "different vocabularies or classes, so their outputs cannot be averaged")
    return ensemble, task


def load_for_generation(checkpoint: str | Path):
    """The language model of an ``lm`` run or checkpoint directory and its tokenizer, in eval mode.

    Needs no data: the tokenizer is the ``tokenizer.json`` saved beside the weights.
    """
    from archlab.checkpoint import from_pretrained
    from archlab.data import load_tokenizer

    if foreign_language_model(Path(checkpoint)) is None:  # a Hugging Face GPT-2 folder needs no task.json
        described = read_task_description(checkpoint, use="generate from")
        check(described.get("task") == "lm",
              f"--checkpoint {str(checkpoint)!r} holds a model of task {described.get('task')!r}; generating text "
              "needs a language model (task 'lm')")
        check_saved_files(Path(checkpoint), get_task("lm"))
    model = from_pretrained(checkpoint)
    check(isinstance(model, LanguageModel),
          f"the model in {str(checkpoint)!r} ({type(model).__name__}) is not a language model: it cannot generate")
    tokenizer = load_tokenizer(checkpoint)
    vocab = getattr(model.config, "vocab_size", tokenizer.vocab_size)
    check(tokenizer.vocab_size <= vocab, f"the tokenizer in {str(checkpoint)!r} has {tokenizer.vocab_size} tokens, the "
                                         f"model only vocab_size={vocab}")
    return model.eval(), tokenizer


def evaluate(checkpoint: str | Path | Sequence[str | Path], data: str | None = None, *, batch_size: int = 64,
             device: str = "auto", precision: str = "fp32", split: str = "test",
             task_settings: dict[str, Any] | None = None) -> dict[str, float]:
    """The task's metrics of a saved model on a held-out split ("test" or "val") of its (or another) data
    set, or on its training examples ("train", a task with ``evaluates_train``). ``task_settings``
    override fields of the saved task config (e.g. ``{"beam_size": 5}`` for a seq2seq run). Several
    checkpoints are evaluated as one ensemble (``load_runs_for_evaluation``)."""
    check(isinstance(batch_size, int) and batch_size > 0, f"batch_size must be a positive integer, got {batch_size!r}")
    checkpoints = [checkpoint] if isinstance(checkpoint, (str, Path)) else checkpoint
    model, task = load_runs_for_evaluation(checkpoints, data, task_settings)
    dev = resolve_device(device)
    return evaluate_model(model.to(dev), task, dev, precision, batch_size, split=split)
