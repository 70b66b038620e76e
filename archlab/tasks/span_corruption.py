"""Span corruption: T5's pre-training objective (Raffel et al. 2019, section 3.1.4) on a text file.

A block of ``block_size`` tokens loses ``noise_density`` (15%) of them in spans of mean length
``mean_span_length`` (3). Each dropped span becomes one sentinel token in the input, and the target
lists the sentinels, each followed by the tokens it replaced, then one last sentinel::

    text     Thank you for inviting me to your party last week .
    input    Thank you <s0> me to your party <s1> week .
    target   <s0> for inviting <s1> last <s2>

An encoder-decoder reads the input and is trained, by teacher forcing, to write the target:

    L = -1/N * sum_t log p(target_t | target_<t, input)      N = target tokens, eos included

As in T5, the numbers of dropped tokens and of spans are fixed by the block size
(n_noise = round(block_size * noise_density), n_spans = round(n_noise / mean_span_length)); where
the spans fall and how long each is are drawn at random: the noise tokens and the kept tokens are
each cut into n_spans pieces of random positive lengths, which then alternate (kept first). So
every input and every target of a run has the same length.

Sentinels are ids after the tokenizer's vocabulary: <s_i> = vocab_size + i. The model's vocabulary
is the tokenizer's plus n_spans + 1 sentinels, one id space for both sides. Any ``TextToTextModel``
(``archlab.models.interfaces``: ``t5`` / ``t5_small`` / ``t5_base``, ``transformer``) trains here;
its ``text_to_text_fields`` hook takes that one vocabulary (both keep a single embedding table,
``share_vocab=True``) and, for a positional table, the longer of input and target.

The text is cut in order into train | val | test, as the ``lm`` task's: the last ``test_fraction``
(10%) is the test text, touched once at the end, the ``val_fraction`` (5%) before it the validation
text the trainer evaluates during training. Metrics on a held-out text (cut into consecutive blocks,
corrupted once with a fixed seed): that loss per target token, ``perplexity`` exp(L), ``accuracy``
(the share of target tokens predicted exactly, sentinels and eos included) and ``span_accuracy``
(the share of the dropped text tokens predicted exactly: what was really filled in). Training
blocks start at random offsets of the training text; offsets and spans are drawn from
``(seed, position)``, so resuming is exact. The tokenizer ("word" by default; "char" or "bpe") is
saved beside the checkpoint as ``tokenizer.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from archlab.data.tokenizer import TEXT_TOKENIZERS
from archlab.errors import ConfigError, check
from archlab.models.interfaces import TextToTextData, TextToTextModel, teacher_forced
from archlab.tasks.base import CorruptedBlocksTask, count_from_sums, register_task
from archlab.tasks.lm import check_held_out_fractions, cut_text


@dataclass
class SpanCorruptionConfig:
    block_size: int = 64            # text tokens per example, before corruption
    noise_density: float = 0.15     # share of the tokens dropped
    mean_span_length: float = 3.0   # mean length of a dropped span
    val_fraction: float = 0.05      # the text before the test tail held out for validation (0 = none)
    test_fraction: float = 0.1      # the tail of the text held out for the final test
    tokenizer: str = "word"         # "word" | "char" | "bpe", fitted on the whole text
    bpe_vocab_size: int = 1000      # tokenizer="bpe": the vocabulary it trains up to
    min_freq: int = 1               # tokenizer="word": rarer words become <unk>

    def __post_init__(self):
        check(self.block_size >= 4, f"block_size must be >= 4, got {self.block_size}")
        check(0.0 < self.noise_density < 0.5, f"noise_density must be in (0, 0.5), got {self.noise_density}")
        check(self.mean_span_length >= 1.0, f"mean_span_length must be >= 1, got {self.mean_span_length}")
        check_held_out_fractions(self.val_fraction, self.test_fraction)
        check(self.tokenizer in TEXT_TOKENIZERS,
              f"tokenizer must be one of {', '.join(TEXT_TOKENIZERS)}, got {self.tokenizer!r}")
        check(self.min_freq >= 1, f"min_freq must be >= 1, got {self.min_freq}")

    @property
    def num_noise(self) -> int:
        return max(1, round(self.block_size * self.noise_density))

    @property
    def num_spans(self) -> int:
        return max(1, round(self.num_noise / self.mean_span_length))


def random_segmentation(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """k positive lengths summing to n, uniformly among all such splits: k - 1 distinct cuts in 1..n-1."""
    cuts = (torch.randperm(n - 1, generator=generator)[: k - 1] + 1).sort().values  # (k - 1,)
    edges = torch.cat([torch.zeros(1, dtype=torch.long), cuts, torch.full((1,), n)])
    return edges.diff()  # (k,)


def corrupt_spans(tokens: torch.Tensor, *, num_noise: int, num_spans: int, sentinel_start: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target) of one block ``tokens`` (T,): kept pieces and dropped spans alternate.

    input:  keep_0 <s_0> keep_1 <s_1> ... keep_{k-1} <s_{k-1}>         T - num_noise + num_spans ids
    target: <s_0> span_0 <s_1> span_1 ... <s_{k-1}> span_{k-1} <s_k>    num_noise + num_spans + 1 ids
    """
    T = tokens.numel()
    keep_lengths = random_segmentation(T - num_noise, num_spans, generator).tolist()
    noise_lengths = random_segmentation(num_noise, num_spans, generator).tolist()
    inputs, targets, at = [], [], 0
    for i, (keep, noise) in enumerate(zip(keep_lengths, noise_lengths)):
        sentinel = tokens.new_tensor([sentinel_start + i])
        inputs += [tokens[at: at + keep], sentinel]
        targets += [sentinel, tokens[at + keep: at + keep + noise]]
        at += keep + noise
    targets.append(tokens.new_tensor([sentinel_start + num_spans]))
    return torch.cat(inputs), torch.cat(targets)


@register_task
class SpanCorruptionTask(CorruptedBlocksTask):
    name = "span_corruption"
    Config = SpanCorruptionConfig
    requires = TextToTextModel
    default_data = "tinyshakespeare"
    metric_modes = {"loss": "min", "accuracy": "max", "span_accuracy": "max", "perplexity": "min"}
    unit = "tokens"
    sum_keys = ("loss_sum", "correct", "count", "span_correct", "span_count")

    def __init__(self, config: SpanCorruptionConfig, data: str | None = None, saved: Path | None = None):
        super().__init__(config, data, saved)
        from archlab.data import fit_tokenizer, load_text, load_tokenizer

        check(config.block_size - config.num_noise >= config.num_spans,
              f"block_size={config.block_size} keeps {config.block_size - config.num_noise} tokens, too few to "
              f"separate {config.num_spans} spans: raise block_size or lower noise_density")
        text = load_text(self.data)
        if saved is not None and (Path(saved) / "tokenizer.json").is_file():
            self.tokenizer = load_tokenizer(saved)  # the model's own vocabulary
        else:
            self.tokenizer = fit_tokenizer(config.tokenizer, text, bpe_vocab_size=config.bpe_vocab_size,
                                           min_freq=config.min_freq)
        try:
            tokens = torch.tensor(self.tokenizer.encode(text), dtype=torch.long)
        except ConfigError as e:
            raise ConfigError(f"--data {self.data!r} does not fit the model's tokenizer: {e}") from e
        parts = cut_text(tokens, config.val_fraction, config.test_fraction)
        self.train_tokens, self.val_tokens, self.test_tokens = parts["train"], parts["val"], parts["test"]
        T = config.block_size
        held = [("test", self.test_tokens)] + ([("validation", self.val_tokens)] if config.val_fraction > 0 else [])
        for split, t in (("training", self.train_tokens), *held):
            check(len(t) >= T, f"--data {self.data!r}: the {split} text has {len(t)} tokens, "
                               f"block_size={T} needs at least {T}")
        self.corrupt_held_out()  # each held-out text: consecutive blocks (N, T), corrupted once -> (inputs, targets)
        self.val_inputs, self.val_targets = self.held["val"]

    @property
    def sentinel_start(self) -> int:
        return self.tokenizer.vocab_size

    @property
    def vocab_size(self) -> int:
        """The model's vocabulary: the tokenizer's, then n_spans + 1 sentinels."""
        return self.tokenizer.vocab_size + self.config.num_spans + 1

    def corrupt(self, blocks: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (B, T - n_noise + n_spans) and targets (B, n_noise + n_spans + 1) of blocks (B, T)."""
        c = self.config
        pairs = [corrupt_spans(b, num_noise=c.num_noise, num_spans=c.num_spans, sentinel_start=self.sentinel_start,
                               generator=generator) for b in blocks]
        if not pairs:  # no blocks (a held-out text turned off)
            return (blocks.new_zeros(0, c.block_size - c.num_noise + c.num_spans),
                    blocks.new_zeros(0, c.num_noise + c.num_spans + 1))
        return torch.stack([i for i, _ in pairs]), torch.stack([t for _, t in pairs])

    def model_fields(self, model_class: type, config: Any) -> dict[str, Any]:
        c, tok = self.config, self.tokenizer
        longest = max(c.block_size - c.num_noise + c.num_spans, c.num_noise + c.num_spans + 1)  # input, target
        data = TextToTextData(self.vocab_size, tok.pad_id, tok.bos_id, tok.eos_id, longest)
        return model_class.text_to_text_fields(data, config)

    def step(self, model, batch):
        src, tgt = batch  # every target of a run has the same length: no padding
        return model.loss(src, tgt)

    def evaluate_batch(self, model, batch):
        token_loss, logits, target = teacher_forced(model, *batch)  # (B * (T + 1),), (B, T + 1, V), (B, T + 1)
        hit = logits.argmax(-1) == target  # (B, T + 1)
        text = (target < self.sentinel_start) & (target != self.tokenizer.eos_id)  # the dropped tokens themselves
        return {"loss_sum": token_loss.sum().double(), "correct": hit.sum().double(),
                "count": torch.tensor(float(target.numel())), "span_correct": (hit & text).sum().double(),
                "span_count": text.sum().double()}

    def metrics(self, sums):
        n = count_from_sums(sums)
        loss = sums["loss_sum"] / n
        return {"loss": loss, "accuracy": sums["correct"] / n,
                "span_accuracy": sums["span_correct"] / count_from_sums(sums, "span_count"),
                "perplexity": math.exp(min(loss, 700.0))}
