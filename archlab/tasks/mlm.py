"""Masked language modelling: BERT's pre-training objective (Devlin et al. 2018).

A block of ``block_size`` tokens x_1..x_T is corrupted: each token is chosen with probability
``mlm_probability`` (15%), and a chosen token becomes ``<mask>`` 80% of the time, a random token 10%,
and stays itself 10% (``archlab.models.bert.mask_tokens``). The model reads the corrupted block
with no causal mask and predicts the original token at the chosen positions M only:

    L = -1/|M| * sum_{t in M} log p(x_t | corrupted x_1..x_T)

Metrics on a held-out text (validation during training, test once at the end): that loss (nats
per masked token), ``accuracy`` -- the share of masked positions whose most likely token is the
original -- and ``perplexity`` exp(L).

The text (``"pythondocs"``, offline, by default; ``"tinyshakespeare"``, downloaded; or any text
file) is cut in order into train | val | test as for ``lm``: the last ``test_fraction`` (10%) is
the test text, the ``val_fraction`` (5%) before it the validation text. Training blocks start at
random offsets and are masked, both drawn from ``(seed, position)``, so a resumed run sees the same
corrupted blocks; a held-out text is read as consecutive non-overlapping blocks masked once with a
fixed seed, the same whatever the batch size.
The tokenizer (characters by default; "word" or "bpe") has the specials <pad>, <unk> and <mask>, and
is saved beside the checkpoint as ``tokenizer.json``. Works with ``bert`` (head="mlm").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from archlab.data.tokenizer import MASK, PAD, TEXT_TOKENIZERS, UNK
from archlab.errors import ConfigError, check
from archlab.models.bert import mask_tokens
from archlab.models.interfaces import IGNORE_INDEX, MaskedLM, TextData, masked_lm_loss
from archlab.tasks.base import CorruptedBlocksTask, count_from_sums, register_task
from archlab.tasks.lm import check_held_out_fractions, cut_text

MLM_SPECIALS = (PAD, UNK, MASK)


@dataclass
class MLMConfig:
    block_size: int = 128          # tokens per example
    mlm_probability: float = 0.15  # share of tokens chosen for prediction
    val_fraction: float = 0.05     # the text before the test tail held out for validation (0 = none)
    test_fraction: float = 0.1     # the tail of the text held out for the final test
    tokenizer: str = "char"        # "char" | "word" | "bpe", fitted on the whole text
    bpe_vocab_size: int = 1000     # tokenizer="bpe": the vocabulary it trains up to
    min_freq: int = 1              # tokenizer="word": rarer words become <unk>

    def __post_init__(self):
        check(self.block_size > 0, f"block_size must be positive, got {self.block_size}")
        check(0.0 < self.mlm_probability < 1.0, f"mlm_probability must be in (0, 1), got {self.mlm_probability}")
        check_held_out_fractions(self.val_fraction, self.test_fraction)
        check(self.tokenizer in TEXT_TOKENIZERS,
              f"tokenizer must be one of {', '.join(TEXT_TOKENIZERS)}, got {self.tokenizer!r}")
        check(self.min_freq >= 1, f"min_freq must be >= 1, got {self.min_freq}")


@register_task
class MLMTask(CorruptedBlocksTask):
    name = "mlm"
    Config = MLMConfig
    requires = MaskedLM
    default_data = "pythondocs"  # offline; --data tinyshakespeare downloads Karpathy's text
    metric_modes = {"loss": "min", "accuracy": "max", "perplexity": "min"}
    unit = "tokens"
    sum_keys = ("loss_sum", "correct", "count")
    saved_files = ("tokenizer.json",)

    def __init__(self, config: MLMConfig, data: str | None = None, saved: Path | None = None):
        super().__init__(config, data, saved)
        from archlab.data import fit_tokenizer, load_text, load_tokenizer

        text = load_text(self.data)
        if saved is not None and (Path(saved) / "tokenizer.json").is_file():
            self.tokenizer = load_tokenizer(saved)  # the model's own vocabulary
        else:
            check(config.tokenizer != "bpe" or config.bpe_vocab_size >= 256 + len(MLM_SPECIALS),
                  f"bpe_vocab_size must be >= {256 + len(MLM_SPECIALS)} (256 bytes + {len(MLM_SPECIALS)} specials), "
                  f"got {config.bpe_vocab_size}")
            self.tokenizer = fit_tokenizer(config.tokenizer, text, specials=MLM_SPECIALS,
                                           bpe_vocab_size=config.bpe_vocab_size, min_freq=config.min_freq)
        check(self.tokenizer.mask_id is not None,
              f"the tokenizer needs a {MASK} token, got specials {list(self.tokenizer.specials)}")
        self.special_ids = tuple(sorted(self.tokenizer.skipped_ids | {self.tokenizer.mask_id}))
        try:
            tokens = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
        except ConfigError as e:
            raise ConfigError(f"--data {self.data!r} does not fit the model's tokenizer: {e}") from e
        parts = cut_text(tokens, config.val_fraction, config.test_fraction)
        self.train_tokens, self.val_tokens, self.test_tokens = parts["train"], parts["val"], parts["test"]
        T = config.block_size
        for split, t in (("training", self.train_tokens), ("test", self.test_tokens), ("validation", self.val_tokens)):
            if split == "validation" and config.val_fraction == 0:
                continue
            check(len(t) >= T, f"--data {self.data!r}: the {split} text has {len(t)} tokens, "
                               f"block_size={config.block_size} needs at least {T}")
        self.corrupt_held_out()  # split -> (corrupted blocks (N, T), labels (N, T)), masked once
        self.val_inputs, self.val_labels = self.held["val"]

    def corrupt(self, blocks: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(corrupted blocks, labels): BERT's 80/10/10 masking; labels are -100 where nothing is asked."""
        return mask_tokens(blocks, mask_token_id=self.tokenizer.mask_id, vocab_size=self.tokenizer.vocab_size,
                           mlm_probability=self.config.mlm_probability, special_ids=self.special_ids,
                           generator=generator)

    def model_fields(self, model_class: type, config: Any) -> dict[str, Any]:
        data = TextData(self.tokenizer.vocab_size, self.config.block_size, self.tokenizer.pad_id)
        return model_class.masked_lm_fields(data, config)

    def _scored(self, model, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(losses (M,), logits (M, V) and targets (M,)) of the M positions where a prediction is asked."""
        x, labels = batch
        logits = model.masked_lm_logits(x)
        V = self.tokenizer.vocab_size
        check(tuple(logits.shape) == (*x.shape, V),
              f"task 'mlm' needs per-token logits (batch, length, vocab_size={V}), got {tuple(logits.shape)}")
        asked = labels != IGNORE_INDEX                                   # (B, T): the positions in M
        return masked_lm_loss(logits, labels, reduction="none"), logits[asked], labels[asked]

    def step(self, model, batch):
        token_loss, _, _ = self._scored(model, batch)
        return token_loss.sum() / max(len(token_loss), 1)  # a batch with nothing masked adds zero loss

    def evaluate_batch(self, model, batch):
        token_loss, scored, targets = self._scored(model, batch)
        return {"loss_sum": token_loss.sum().double(), "correct": (scored.argmax(-1) == targets).sum().double(),
                "count": torch.tensor(float(len(targets)), dtype=torch.float64)}

    def metrics(self, sums):
        n = count_from_sums(sums)
        loss = sums["loss_sum"] / n
        return {"loss": loss, "accuracy": sums["correct"] / n, "perplexity": math.exp(min(loss, 700.0))}
