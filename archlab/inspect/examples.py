"""A sensible example input for any registered model, read off its config.

One table, ``KINDS``, decides what a model's forward pass takes; the first row whose test the
config passes wins:

    kind        config has                          forward(...) gets
    seq2seq     src_vocab_size, tgt_vocab_size      source ids (B, T), target ids (B, T)
    window      context_length                      a history (B, T = context_length, input_size)
    tokens      vocab_size > 0                      token ids (B, T)
    image       in_channels                         an image (B, C, S, S): S its documented size
    vector      in_features                         features (B, in_features)
    sequence    input_size                          a feature sequence (B, T, input_size)
    table       num_numeric, cat_cardinalities      a table row: numbers (B, n), category codes (B, m)

``T`` defaults to ``min(64, the longest the model takes)`` (``block_size``,
``max_position_embeddings``, ``max_len``). The image side ``S`` is the one size a model needs
(LeNet-5's ``input_size``), else its ``image_size``, else 224. Token ids avoid the special ids
(``pad_id``, ``bos_id``, ``eos_id``) so that nothing reads as padding. Values are drawn from a
fixed seed, so the same call gives the same tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from archlab.errors import ConfigError, check

DEFAULT_SEQ_LEN = 64
DEFAULT_IMAGE_SIZE = 224
LENGTH_LIMITS = ("block_size", "max_position_embeddings", "max_len")  # the longest sequence a model takes


@dataclass
class Example:
    kind: str                       # a row of KINDS
    args: tuple[torch.Tensor, ...]  # model(*args)

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(a.shape) for a in self.args]


def _has(config, *names: str) -> bool:
    return all(hasattr(config, n) for n in names)


def _seq_len(config, seq_len: int | None) -> int:
    limits = [getattr(config, n) for n in LENGTH_LIMITS if isinstance(getattr(config, n, None), int)]
    if seq_len is not None:
        return seq_len  # too long for the model: the model's own check says so
    return min([DEFAULT_SEQ_LEN, *limits])


def _ids(config, vocab_size: int, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    special = sorted({getattr(config, n) for n in ("pad_id", "bos_id", "eos_id") if hasattr(config, n)})
    usable = [i for i in range(min(vocab_size, len(special) + 64)) if i not in special] or [0]
    pick = torch.randint(0, len(usable), shape, generator=g)
    return torch.tensor(usable)[pick]


def _float(shape, g) -> torch.Tensor:
    return torch.randn(*shape, generator=g)


def _token_shape(kind: str, config, batch: int, shape, seq_len) -> tuple[int, int]:
    if shape is not None:
        check(len(shape) == 2, f"--input-size for a {kind} model is B,T (token ids), got {','.join(map(str, shape))}")
        return tuple(shape)
    return batch, _seq_len(config, seq_len)


def _seq2seq(model, config, batch, shape, seq_len, g):
    B, T = _token_shape("seq2seq", config, batch, shape, seq_len)
    return _ids(config, config.src_vocab_size, (B, T), g), _ids(config, config.tgt_vocab_size, (B, T), g)


def _tokens(model, config, batch, shape, seq_len, g):
    return (_ids(config, config.vocab_size, _token_shape("token", config, batch, shape, seq_len), g),)


def _window(model, config, batch, shape, seq_len, g):
    T = config.context_length if seq_len is None else seq_len
    return (_float(shape or (batch, T, config.input_size), g),)


def _image(model, config, batch, shape, seq_len, g):
    check(seq_len is None, "--seq-len is for sequence models; this model reads images: give --input-size B,C,H,W")
    side = getattr(model, "input_size", None) or getattr(config, "image_size", None) or DEFAULT_IMAGE_SIZE
    return (_float(shape or (batch, config.in_channels, side, side), g),)


def _vector(model, config, batch, shape, seq_len, g):
    check(seq_len is None, "--seq-len is for sequence models; this model reads feature vectors: give --input-size B,F")
    return (_float(shape or (batch, config.in_features), g),)


def _sequence(model, config, batch, shape, seq_len, g):
    return (_float(shape or (batch, seq_len or DEFAULT_SEQ_LEN, config.input_size), g),)


def _table(model, config, batch, shape, seq_len, g):
    check(seq_len is None and shape is None, "--seq-len and --input-size do not apply to a model of table rows: "
                                             "its num_numeric and cat_cardinalities fix the inputs")
    codes = [torch.randint(0, k, (batch,), generator=g) for k in config.cat_cardinalities]
    x_cat = torch.stack(codes, dim=1) if codes else torch.zeros(batch, 0, dtype=torch.long)
    return _float((batch, config.num_numeric), g), x_cat


Maker = Callable[..., tuple[torch.Tensor, ...]]
KINDS: list[tuple[str, Callable[[object], bool], Maker]] = [
    ("table", lambda c: _has(c, "num_numeric", "cat_cardinalities"), _table),
    ("seq2seq", lambda c: _has(c, "src_vocab_size", "tgt_vocab_size"), _seq2seq),
    ("window", lambda c: _has(c, "context_length", "input_size"), _window),
    ("tokens", lambda c: getattr(c, "vocab_size", 0) > 0, _tokens),
    ("image", lambda c: _has(c, "in_channels"), _image),
    ("vector", lambda c: _has(c, "in_features"), _vector),
    ("sequence", lambda c: _has(c, "input_size"), _sequence),
]


def example_inputs(model: nn.Module, *, batch_size: int = 1, shape: tuple[int, ...] | None = None,
                   seq_len: int | None = None, seed: int = 0) -> Example:
    """The arguments of one forward pass of ``model``; ``shape`` or ``seq_len`` replace the defaults.

    ``shape`` is the full shape of the first argument (batch first); for models that read token ids
    it is ``(B, T)``. ``batch_size`` is used when no ``shape`` is given.
    """
    check(batch_size >= 1, f"batch size must be >= 1, got {batch_size}")
    check(seq_len is None or seq_len >= 1, f"sequence length must be >= 1, got {seq_len}")
    check(shape is None or (len(shape) >= 1 and all(s >= 1 for s in shape)),
          f"input size must be positive integers, got {shape}")
    config = getattr(model, "config", None)
    name = getattr(model, "model_name", None) or type(model).__name__
    for kind, matches, make in KINDS:
        if config is not None and matches(config):
            g = torch.Generator().manual_seed(seed)
            return Example(kind, tuple(make(model, config, batch_size, shape, seq_len, g)))
    raise ConfigError(f"cannot tell what {name} reads from its config; pass the inputs to summarize() yourself")
