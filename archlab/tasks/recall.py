"""Recall: remember the first symbol of a sequence across a gap of distractors.

A sequence is ``s, d_1, ..., d_G``: a symbol s, one of K, then a gap of G distractors drawn
uniformly from N other symbols. The label is s. Only the first step says anything about the
label, so a model that reads the sequence step by step must carry s in its state across all G
steps -- the long time lag problem of Hochreiter & Schmidhuber 1997 (their Experiment 2: a symbol
to be remembered over a lag of p steps) and the "latching" problem of Bengio, Simard & Frasconi
1994. The best guess without memory is one class in K.

Token ids: 0 is padding (unused: every sequence has G + 1 steps), 1..K the symbols, K+1..K+N the
distractors. The supply of training sequences is endless: micro-batch ``position`` is drawn from
``(seed, position)`` and never repeats; the test set is one fixed draw of ``test_size`` sequences
from ``data_seed``, the validation set (``val``, evaluated during training) the next ``val_size``
of that draw (0: none). A batch is ``(ids (B, G + 1), mask (B, G + 1), labels (B,))`` and reaches the
model as in ``textclass``: any ``TokenClassifier`` trains here (``rnn_classifier``, ``bert``),
through ``token_logits(ids, mask)``; its vocabulary, classes and padding id come from
``token_classifier_fields``.

Metrics on a held-out set: ``loss`` (mean cross-entropy) and ``accuracy``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from archlab.errors import check
from archlab.models.interfaces import LabelledTokens, TokenClassifier
from archlab.tasks.base import SPLITS, Batch, Task, count_from_sums, generator_for, register_task

NOMINAL_EPOCH = 10_000  # sequences an "epoch" stands for (``epochs=``); the supply itself is endless
PAD_ID = 0


@dataclass
class RecallConfig:
    gap: int = 50                  # G: distractor steps between the symbol and the end of the sequence
    num_symbols: int = 4           # K: symbols to remember (the classes; chance is 1 / K)
    num_distractors: int = 4       # N: symbols filling the gap
    test_size: int = 1000          # sequences in the fixed test set
    val_size: int = 1000           # sequences in the fixed validation set; 0 = none
    data_seed: int = 1234          # the test set's draw (training draws from the run's seed)

    def __post_init__(self):
        check(isinstance(self.gap, int) and self.gap >= 0, f"gap must be an integer >= 0, got {self.gap!r}")
        for name in ("num_symbols", "num_distractors", "test_size"):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= 1, f"{name} must be a positive integer, got {value!r}")
        check(isinstance(self.val_size, int) and self.val_size >= 0,
              f"val_size must be an integer >= 0 (0 = no validation set), got {self.val_size!r}")
        check(self.num_symbols >= 2, f"num_symbols must be >= 2 (one symbol is nothing to remember), "
                                     f"got {self.num_symbols}")


@register_task
class RecallTask(Task):
    name = "recall"
    Config = RecallConfig
    requires = TokenClassifier
    default_data = "generated"
    metric_modes = {"loss": "min", "accuracy": "max"}
    sum_keys = ("loss_sum", "correct", "count")

    def __init__(self, config: RecallConfig, data: str | None = None, saved: Path | None = None):
        check(data in (None, "generated"), f"task 'recall' makes its own sequences; --data must be 'generated' "
                                           f"or left out, got {data!r}")
        super().__init__(config, data, saved)
        g = torch.Generator().manual_seed(config.data_seed)
        self.test_x, self.test_y = self.draw(config.test_size, g)
        self.val_x, self.val_y = self.draw(config.val_size, g)  # after the test set: which stays the same draw

    @property
    def vocab_size(self) -> int:
        return 1 + self.config.num_symbols + self.config.num_distractors

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` sequences (n, G + 1) and their labels (n,) from ``generator``."""
        c = self.config
        labels = torch.randint(c.num_symbols, (n,), generator=generator)                       # s - 1
        gap = torch.randint(1 + c.num_symbols, self.vocab_size, (n, c.gap), generator=generator)  # d_1..d_G
        return torch.cat([(labels + 1)[:, None], gap], dim=1), labels  # (n, G + 1), (n,)

    def model_fields(self, model_class: type, config: Any) -> dict[str, Any]:
        data = LabelledTokens(self.vocab_size, PAD_ID, self.config.num_symbols)
        return model_class.token_classifier_fields(data, config)

    @property
    def num_train_samples(self) -> int:
        return NOMINAL_EPOCH

    def train_batch(self, position: int, batch_size: int, seed: int, shard: slice) -> Batch:
        # The whole global batch from (seed, position), then this process's rows of it.
        x, y = self.draw(batch_size, generator_for(seed, position))
        x, y = x[shard], y[shard]
        return x, torch.ones_like(x, dtype=torch.bool), y

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return SPLITS if self.config.val_size else ("test",)

    def eval_batches(self, batch_size: int, split: str = "test") -> Iterator[Batch]:
        self.check_split(split)
        xs, ys = (self.val_x, self.val_y) if split == "val" else (self.test_x, self.test_y)
        for i in range(0, len(ys), batch_size):
            x = xs[i:i + batch_size]
            yield x, torch.ones_like(x, dtype=torch.bool), ys[i:i + batch_size]

    def _logits(self, model, batch) -> torch.Tensor:
        x, mask, _ = batch
        return model.token_logits(x, mask).float()  # (B, K); fp32 loss under autocast

    def step(self, model, batch):
        return F.cross_entropy(self._logits(model, batch), batch[2])

    def evaluate_batch(self, model, batch):
        y = batch[2]
        logits = self._logits(model, batch)
        example_loss = F.cross_entropy(logits, y, reduction="none")  # (B,)
        return {"loss_sum": example_loss.sum().double(), "correct": (logits.argmax(-1) == y).sum().double(),
                "count": torch.tensor(float(y.numel()))}

    def metrics(self, sums):
        n = count_from_sums(sums)
        return {"loss": sums["loss_sum"] / n, "accuracy": sums["correct"] / n}
