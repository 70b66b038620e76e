"""The Task interface: what a model is trained to do, separate from how the trainer loops.

A task turns a data set into batches, a model's output into a loss, and summed statistics into
metrics. The trainer (``archlab.train``) knows nothing else about the data, so every task of the
product -- language modelling, image classification, translation, forecasting, ... -- plugs into
the same loop, with the same checkpoints, resume, mixed precision and DDP.

A task is a class registered by name::

    @register_task
    class LMTask(Task):
        name = "lm"
        Config = LMConfig           # a dataclass of the task's own keys (e.g. block_size)
        requires = LanguageModel    # the interface (archlab.models.interfaces) a model must implement
        default_data = "pythondocs"
        metric_modes = {"loss": "min", "perplexity": "min", "bpc": "min"}

and provides, in the order the trainer calls them:

1. ``__init__(config, data, saved=None)`` -- load the data named by ``data`` (a known name or a
   path), raising ``ConfigError`` when it is missing. ``saved`` is a checkpoint directory whose
   files (tokenizer, class names, normalisation) must be reused instead of being fitted anew.
2. ``model_fields(model_class, config)`` -- the model config fields the data fixes, which the task
   asks the model class itself through its interface's hook (``image_classifier_fields(data,
   config)``, ``language_model_fields(...)`` ...), so the task never guesses field names.
   ``prepare_model(model)`` -- then, once, on the freshly built model of a new run: initialise
   what the data determines beyond the config (a forecaster's normalisation fitted on the
   training split). A no-op by default; never called on a model loaded from a checkpoint.
   ``attach(model)`` -- on every model the task will feed, fresh or loaded (e.g. the image side
   a classifier needs). A no-op by default.
3. ``train_batch(position, batch_size, seed, shard)`` -- micro-batch number ``position`` of the
   run: a *global* batch of ``batch_size`` examples that depends only on ``(seed, position)``, of
   which only the rows ``shard`` (this process's share) are built. That makes resuming exact (the
   data position is one integer) and N processes see the same global batch as one.
4. ``step(model, batch) -> loss`` -- training only: the mean loss to back-propagate.
5. ``eval_batches(batch_size, split)`` -- a held-out split in a fixed order: ``"val"``, carved
   from the training data (every task has one, unless a setting turns it off), which the trainer
   evaluates during training and early-stops on, or ``"test"``, touched once, at the end; and
   ``evaluate_batch(model, batch) -> sums`` -- statistics of one evaluation batch as *sums*
   (``{"loss_sum": ..., "count": ...}``, the keys listed in ``sum_keys``), so they add across
   batches and processes. Evaluation is its own hook: it never has to guess from a batch's shape
   whether it is evaluating. ``eval_splits`` names the held-out splits that hold examples. A task
   with ``evaluates_train = True`` also gives ``eval_batches(batch_size, "train")``: the examples
   it trains on, unaugmented, in a fixed order (for measuring the train / held-out gap); never a
   substitute for a held-out split.
6. ``metrics(sums) -> {name: value}`` -- the task's metrics from the added-up sums.
7. ``save(directory)`` -- files to keep beside ``config.json`` (e.g. ``tokenizer.json``).

The model a task's ``step`` and ``evaluate_batch`` receive is the plain model (the trainer wraps
the whole step for DDP), so a task calls its interface's methods directly.

Batches are tuples of CPU tensors; the trainer moves them to the device.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch

from archlab.data.catalog import DATASETS
from archlab.data.common import SEED
from archlab.errors import ConfigError

Batch = tuple[torch.Tensor, ...]
SPLITS = ("val", "test")  # the held-out splits: validation (during training), test (once, at the end)

_TASKS: dict[str, type["Task"]] = {}


class Task:
    """Base class of the tasks; see the module docstring for the contract."""

    name: ClassVar[str]
    Config: ClassVar[type]
    requires: ClassVar[type]          # the interface of archlab.models.interfaces a model must implement
    default_data: ClassVar[str | None] = None
    metric_modes: ClassVar[dict[str, str]] = {"loss": "min"}
    unit: ClassVar[str] = "samples"   # what throughput counts: "samples" or "tokens"
    sum_keys: ClassVar[tuple[str, ...]] = ("loss_sum", "count")  # the keys ``step`` returns
    evaluates_train: ClassVar[bool] = False  # eval_batches(n, "train"): the training examples, unaugmented
    saved_files: ClassVar[tuple[str, ...]] = ()  # what ``save`` writes; evaluating a checkpoint needs them

    def __init__(self, config: Any, data: str | None = None, saved: Path | None = None):
        self.config = config
        self.data = data or self.default_data
        if self.data is None:
            raise ConfigError(f"task {self.name!r} needs --data (a data set name or a path), got none")
        # A path is made absolute, so task.json works from anywhere; a data set's name stays a name even
        # where a file or folder of that name sits in the working directory (write ./co2 for the path).
        if self.data not in DATASETS and Path(self.data).expanduser().exists():
            self.data = str(Path(self.data).expanduser().resolve())

    # -- what the data fixes -------------------------------------------------------------------
    def model_fields(self, model_class: type, config: Any) -> dict[str, Any]:
        """The config fields of ``model_class`` the data fixes (asked through the interface's hook);
        ``config`` is the model's config without them (its defaults and the user's settings)."""
        return {}

    def prepare_model(self, model: torch.nn.Module) -> None:
        """Initialise a freshly built model from the data (e.g. fit its normalisation); default: nothing."""

    def attach(self, model: torch.nn.Module) -> None:
        """Adapt to the model this task will feed, fresh or loaded; default: nothing."""

    @property
    def num_train_samples(self) -> int:
        raise NotImplementedError

    @property
    def items_per_sample(self) -> int:
        """Units of ``unit`` per example (tokens per block for a language model)."""
        return 1

    # -- batches -------------------------------------------------------------------------------
    def train_batch(self, position: int, batch_size: int, seed: int, shard: slice) -> Batch:
        raise NotImplementedError

    def eval_batches(self, batch_size: int, split: str = "test") -> Iterator[Batch]:
        """The held-out ``split`` ("val" | "test") in a fixed order."""
        raise NotImplementedError

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """The held-out splits this task can evaluate on (a validation split turned off is absent)."""
        return SPLITS

    def check_split(self, split: str) -> None:
        """ConfigError unless ``split`` is one of the splits this task can evaluate on."""
        if split == "train" and self.evaluates_train:
            return
        if split not in SPLITS:
            also = " or train" if self.evaluates_train else ""
            raise ConfigError(f"split must be one of {', '.join(SPLITS)}{also} for task {self.name!r}, got {split!r}")
        if split not in self.eval_splits:
            raise ConfigError(f"task {self.name!r} on --data {self.data!r} has no {split} split "
                              f"(held-out splits: {', '.join(self.eval_splits) or 'none'})")

    # -- loss and metrics ----------------------------------------------------------------------
    def step(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        """The mean training loss of a training batch."""
        raise NotImplementedError

    def evaluate_batch(self, model: torch.nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """The sums (``sum_keys``) of one evaluation batch."""
        raise NotImplementedError

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        raise NotImplementedError

    def baselines(self) -> dict[str, dict[str, float]]:
        """What a model must beat that the task itself defines, by name: ``{name: {metric: value}}``
        on the test split (naive forecasts, a table's majority class); none by default."""
        return {}

    # -- what travels with a checkpoint --------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write the files a later ``evaluate`` / ``generate`` needs beside the weights."""

    def describe(self) -> dict[str, Any]:
        """The JSON written to ``task.json``: enough to rebuild this task for evaluation."""
        return {"task": self.name, "data": self.data, "config": dataclasses.asdict(self.config)}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` available as ``--task cls.name``."""
    if cls.name in _TASKS and _TASKS[cls.name] is not cls:
        raise ConfigError(f"task name {cls.name!r} is registered twice")
    _TASKS[cls.name] = cls
    return cls


def _discover() -> None:
    import importlib
    import pkgutil

    import archlab.tasks as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name != "base":
            importlib.import_module(f"{pkg.__name__}.{info.name}")


def list_tasks() -> list[str]:
    _discover()
    return sorted(_TASKS)


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``; a clear error listing the known ones otherwise."""
    _discover()
    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


class EpochOrder:
    """Which examples micro-batch ``position`` of a run takes, for tasks that visit their ``n``
    training examples epoch by epoch: each epoch in a fresh order drawn from ``(seed, epoch)``, a
    batch that would cross the end of an epoch dropped. The order depends only on ``(seed,
    position)`` (exact resume); the current epoch's permutation is cached."""

    def __init__(self, n: int):
        self.n = n
        self._cached: tuple[tuple[int, int], torch.Tensor] | None = None  # ((seed, epoch), permutation)

    def permutation(self, seed: int, epoch: int) -> torch.Tensor:
        if self._cached is None or self._cached[0] != (seed, epoch):
            g = generator_for(seed, epoch)
            self._cached = ((seed, epoch), torch.randperm(self.n, generator=g))
        return self._cached[1]

    def batch(self, position: int, batch_size: int, seed: int) -> torch.Tensor:
        """Indices (batch_size,) of the global micro-batch ``position``."""
        epoch, i = divmod(position, self.n // batch_size)
        return self.permutation(seed, epoch)[i * batch_size:(i + 1) * batch_size]


class TokenBlocksTask(Task):
    """A task over one long text of token ids, cut into ``train_tokens``, ``val_tokens`` and
    ``test_tokens`` (1-D), whose examples are blocks of ``config.block_size`` consecutive tokens
    (``lm``, ``mlm``, ``span_corruption``); its ``tokenizer`` is saved with the run.

    Training draws blocks at random starts; an "epoch" (``num_train_samples``) sees about every
    training token once. Held-out texts are cut into consecutive blocks, in order.
    """

    @property
    def num_train_samples(self) -> int:
        return max(1, len(self.train_tokens) // self.config.block_size)

    @property
    def items_per_sample(self) -> int:
        return self.config.block_size

    def random_blocks(self, position: int, batch_size: int, seed: int,
                      length: int | None = None) -> tuple[torch.Tensor, torch.Generator]:
        """The global micro-batch ``position``: blocks (B, L) of ``length`` (default ``block_size``)
        consecutive training tokens at starts drawn from ``(seed, position)`` alone, and the
        generator they were drawn from, for the batch's further draws (masks, spans)."""
        L = self.config.block_size if length is None else length
        g = generator_for(seed, position)
        starts = torch.randint(len(self.train_tokens) - L + 1, (batch_size,), generator=g)  # (B,)
        return self.train_tokens[starts[:, None] + torch.arange(L)], g  # (B, L)

    def consecutive_blocks(self, tokens: torch.Tensor) -> torch.Tensor:
        """``tokens`` (N * T + r,) as N consecutive blocks (N, T), T = block_size; the rest dropped."""
        T = self.config.block_size
        return tokens[: len(tokens) // T * T].view(-1, T)  # (N, T)

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return SPLITS if self.config.val_fraction > 0 else ("test",)

    def save(self, directory: Path) -> None:
        self.tokenizer.save(directory)


class CorruptedBlocksTask(TokenBlocksTask):
    """A ``TokenBlocksTask`` whose examples are blocks turned into (inputs, targets) by the task's
    ``corrupt(blocks (N, T), generator)`` (BERT's masking, T5's span corruption). A training batch
    is corrupted with the draws that follow its block starts (all from ``(seed, position)``); each
    held-out text is corrupted once, with a generator seeded ``SEED``, by ``corrupt_held_out()``
    into ``held[split]``."""

    def corrupt(self, blocks: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def corrupt_held_out(self) -> None:
        self.held = {split: self.corrupt(self.consecutive_blocks(t), torch.Generator().manual_seed(SEED))
                     for split, t in (("val", self.val_tokens), ("test", self.test_tokens))}

    def train_batch(self, position: int, batch_size: int, seed: int, shard: slice) -> Batch:
        # The whole global batch -- offsets and corruption -- is drawn from (seed, position), then sharded.
        blocks, g = self.random_blocks(position, batch_size, seed)  # (B, T)
        inputs, targets = self.corrupt(blocks, g)
        return inputs[shard], targets[shard]

    def eval_batches(self, batch_size: int, split: str = "test") -> Iterator[Batch]:
        self.check_split(split)
        inputs, targets = self.held[split]
        for i in range(0, len(inputs), batch_size):
            yield inputs[i:i + batch_size], targets[i:i + batch_size]


def generator_for(seed: int, position: int, stream: int = 0) -> torch.Generator:
    """The random generator of draw ``position`` (a micro-batch, an epoch) of a run seeded ``seed``.

    Every random choice of a task -- which examples, which masks, which shifts -- comes from one of
    these, so it depends only on ``(seed, position)``: exact on resume, the same on 1 or N
    processes. ``stream`` separates independent draws at the same position.
    """
    return torch.Generator().manual_seed(seed * 1_000_003 + position + stream)


def count_from_sums(sums: dict[str, float], key: str = "count") -> float:
    """The number of examples (or tokens) behind ``sums``; a clear error when there are none."""
    n = float(sums.get(key, 0.0))
    if n <= 0:
        raise ConfigError("the evaluation split is empty: there is nothing to compute metrics on")
    return n
