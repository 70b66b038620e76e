"""Language modelling: predict the next token of a text, character-level by default.

Given tokens x_1..x_T, a language model outputs a distribution p(x_{t+1} | x_1..x_t) at every
position; the loss is the mean cross-entropy over the block

    L = -1/T * sum_t log p(x_{t+1} | x_{<=t})

and the metrics are that loss (nats per token), perplexity exp(L) and bits per character
L / ln 2. The text is cut in order into train | val | test: the last ``test_fraction`` (10%) is
the test text, touched once at the end, and the ``val_fraction`` (5%) before it the validation
text the trainer evaluates during training. Training examples are random blocks of
``block_size + 1`` tokens of the training text (input = first ``block_size``, target = shifted by
one); a held-out text is read as consecutive non-overlapping blocks, the same ones every time.

Trains any ``LanguageModel`` (``forward(input_ids)`` returns logits ``(B, T, vocab_size)``): the
GPT and the RNN language models. The tokenizer is saved beside the checkpoint as ``tokenizer.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F

from archlab.errors import ConfigError, check
from archlab.models.interfaces import LanguageModel, TextData
from archlab.tasks.base import Batch, TokenBlocksTask, count_from_sums, register_task

TOKENIZER_FILE = "tokenizer.json"


@dataclass
class LMConfig:
    block_size: int = 128          # tokens of context per training example
    val_fraction: float = 0.05     # the text before the test tail held out for validation (0 = none)
    test_fraction: float = 0.1     # the tail of the text held out for the final test

    def __post_init__(self):
        check(self.block_size > 0, f"block_size must be positive, got {self.block_size}")
        check_held_out_fractions(self.val_fraction, self.test_fraction)


def check_held_out_fractions(val_fraction: float, test_fraction: float) -> None:
    check(0.0 <= val_fraction and 0.0 < test_fraction and val_fraction + test_fraction < 1.0,
          f"val_fraction >= 0 and test_fraction > 0 must add up to less than 1, got {val_fraction} + {test_fraction}")


def cut_text(tokens: torch.Tensor, val_fraction: float, test_fraction: float) -> dict[str, torch.Tensor]:
    """``{"train", "val", "test"}`` token runs of a text cut in order: train | val | test."""
    n = len(tokens)
    n_test, n_val = int(n * test_fraction), int(n * val_fraction)
    cut_val, cut_test = n - n_test - n_val, n - n_test
    return {"train": tokens[:cut_val], "val": tokens[cut_val:cut_test], "test": tokens[cut_test:]}


@register_task
class LMTask(TokenBlocksTask):
    name = "lm"
    Config = LMConfig
    requires = LanguageModel
    default_data = "pythondocs"  # offline; --data tinyshakespeare downloads Karpathy's text
    metric_modes = {"loss": "min", "perplexity": "min", "bpc": "min"}
    unit = "tokens"
    saved_files = (TOKENIZER_FILE,)

    def __init__(self, config: LMConfig, data: str | None = None, saved: Path | None = None):
        super().__init__(config, data, saved)
        from archlab.data import CharTokenizer, load_text, load_tokenizer

        text = load_text(self.data)
        if saved is not None:
            self.tokenizer = load_tokenizer(saved)  # the model's own vocabulary, never a new one
        else:
            self.tokenizer = CharTokenizer.fit(text)
        try:
            fast = getattr(self.tokenizer, "encode_array", lambda _: None)(text)  # characters: one vectorised lookup
            tokens = torch.from_numpy(fast) if fast is not None else torch.tensor(self.tokenizer.encode(text),
                                                                                    dtype=torch.long)
        except ConfigError as e:
            raise ConfigError(f"--data {self.data!r} does not fit the model's tokenizer: {e}") from e
        parts = cut_text(tokens, config.val_fraction, config.test_fraction)
        self.train_tokens, self.val_tokens, self.test_tokens = parts["train"], parts["val"], parts["test"]
        need = config.block_size + 1
        for split, t, fraction in (("training", self.train_tokens, None), ("test", self.test_tokens, "test_fraction"),
                                   ("validation", self.val_tokens, "val_fraction")):
            if split == "validation" and config.val_fraction == 0:
                continue
            check(
                len(t) >= need,
                f"--data {self.data!r}: the {split} text has {len(t)} tokens, block_size={config.block_size} "
                f"needs at least {need}" + (f" (a larger {fraction} or a smaller block_size)" if fraction else ""),
            )

    def model_fields(self, model_class: type, config: Any) -> dict[str, Any]:
        data = TextData(self.tokenizer.vocab_size, self.config.block_size, self.tokenizer.pad_id)
        return model_class.language_model_fields(data, config)

    @staticmethod
    def _inputs_targets(chunk: torch.Tensor) -> Batch:
        return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()  # inputs, next-token targets (B, T)

    def train_batch(self, position: int, batch_size: int, seed: int, shard: slice) -> Batch:
        # The global batch's blocks of T + 1 tokens (inputs and their targets) depend only on (seed, position).
        chunk, _ = self.random_blocks(position, batch_size, seed, length=self.config.block_size + 1)  # (B, T + 1)
        return self._inputs_targets(chunk[shard])

    def eval_batches(self, batch_size: int, split: str = "test") -> Iterator[Batch]:
        self.check_split(split)
        tokens = self.val_tokens if split == "val" else self.test_tokens
        T = self.config.block_size
        starts = torch.arange(0, len(tokens) - T, T)
        for i in range(0, len(starts), batch_size):
            yield self._inputs_targets(tokens[starts[i:i + batch_size, None] + torch.arange(T + 1)])  # (B, T + 1)

    def _token_losses(self, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = model(x)  # (B, T, V)
        # Cross-entropy in fp32 even under autocast: the log-softmax over the vocabulary is where
        # bf16 loses most.
        return F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none"), y  # (B*T,)

    def step(self, model, batch):
        return self._token_losses(model, batch)[0].mean()

    def evaluate_batch(self, model, batch):
        token_loss, y = self._token_losses(model, batch)
        return {"loss_sum": token_loss.sum().double(), "count": torch.tensor(float(y.numel()))}

    def metrics(self, sums):
        loss = sums["loss_sum"] / count_from_sums(sums)
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "bpc": loss / math.log(2)}
