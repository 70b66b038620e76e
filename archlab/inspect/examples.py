"""A sensible example input for any registered model: the one its interface declares.

Every model implements an interface of ``archlab.models.interfaces``, and every interface declares
``example_input(batch_size, seq_len)``: an image of the model's documented size, token ids that
avoid the special ids, a history window, a source and a target sequence... This module only names
what came back and lets a caller replace the first argument's shape:

    kind        forward(...) gets
    seq2seq     source ids (B, T), target ids (B, T)
    window      a history (B, T = context_length, input_size) (forecasters)
    tokens      token ids (B, T)
    image       an image (B, C, S, S)
    vector      features (B, in_features)
    sequence    a feature sequence (B, T, input_size)
    table       a table row: numbers (B, n), category codes (B, m) (tabular models)

Values are drawn from a fixed seed, so the same call gives the same tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from archlab.errors import ConfigError, check
from archlab.models.interfaces import Capability, Forecaster, TabularModel, example_floats


@dataclass
class Example:
    kind: str                       # see the module docstring
    args: tuple[torch.Tensor, ...]  # model(*args)

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(a.shape) for a in self.args]


def _kind(model: nn.Module, args: tuple[torch.Tensor, ...]) -> str:
    first = args[0]
    if not first.is_floating_point():
        return "seq2seq" if len(args) == 2 else "tokens"
    if isinstance(model, Forecaster):
        return "window"
    if isinstance(model, TabularModel):
        return "table"
    return {4: "image", 3: "sequence", 2: "vector"}.get(first.dim(), "tensor")


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
    name = getattr(model, "model_name", None) or type(model).__name__
    if not isinstance(model, Capability):
        raise ConfigError(f"{name} declares no interface of archlab.models.interfaces, so its input is unknown; "
                          "pass the inputs to summarize() yourself")
    check(shape is None or not isinstance(model, TabularModel),
          f"--input-size does not apply to {name}: a table model's num_numeric and cat_cardinalities fix its inputs")
    args = model.example_input(shape[0] if shape else batch_size, seq_len)
    if shape is not None:
        if args[0].is_floating_point():
            args = (example_floats(tuple(shape), seed), *args[1:])
        else:
            check(len(shape) == 2, f"--input-size for a model that reads token ids is B,T, got "
                                   f"{','.join(map(str, shape))}")
            args = model.example_input(shape[0], shape[1])
    return Example(_kind(model, args), tuple(args))
