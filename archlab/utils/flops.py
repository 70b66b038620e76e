"""Counting the FLOPs of a forward pass, with PyTorch's ``FlopCounterMode``.

A FLOP is one floating-point multiply or add, so a multiply-add counts 2. ``FlopCounterMode``
watches every aten operation a forward pass dispatches and applies a formula to the ones that carry
the arithmetic:

    matrix products (mm, addmm, bmm, baddbmm)   2 * M * K * N    (Linear, attention written as matmuls)
    convolutions                                 2 * (output elements) * C_in / groups * prod(kernel)
    fused attention (SDPA on CUDA)               2 * B * h * T_q * T_k * (d_k + d_v)

Element-wise work (activations, normalisation, softmax, pooling, residual adds, biases) is not
counted: it is small next to the products and bound by memory, not arithmetic.

Two kernels that the CPU (and cuDNN) dispatch for archlab's fused paths have no formula in
PyTorch, so a model's LSTM or attention would silently count 0; ``EXTRA_FORMULAS`` adds them,
with the same products the step-by-step equations make:

- ``_scaled_dot_product_flash_attention_for_cpu`` (fused attention on CPU): Q K^T and A V,
  2 * B * h * T_q * T_k * (d_k + d_v), as PyTorch counts SDPA on CUDA (a causal mask is not discounted).
- the fused recurrent kernels (``mkldnn_rnn_layer`` on CPU, ``_cudnn_rnn`` / ``miopen_rnn`` on GPUs):
  every step multiplies the input by W_ih and the previous state by W_hh (and W_hr for a projected
  LSTM), so a layer costs 2 * (tokens) * (numel W_ih + numel W_hh [+ numel W_hr]) -- exactly what
  the step-by-step path counts through its matmuls. Gate non-linearities are element-wise: not counted.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

from archlab.utils.runtime import eval_mode

aten = torch.ops.aten


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Q K^T (B, h, T_q, T_k) and A V (B, h, T_q, d_v): 2 * B * h * T_q * T_k * (d_k + d_v)."""
    *batch, t_q, d_k = query_shape
    t_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * math.prod(batch) * t_q * t_k * (d_k + d_v)


def _tokens(input_shape) -> int:
    """Steps x sequences of a recurrent input: (T, B, F), (B, T, F) or packed data (N, F)."""
    return math.prod(input_shape[:-1])


def _mkldnn_rnn_layer_flop(input_shape, weight_ih_shape, weight_hh_shape, *args, out_shape=None, **kwargs) -> int:
    """One layer, one direction: 2 * tokens * (numel W_ih + numel W_hh)."""
    return 2 * _tokens(input_shape) * (math.prod(weight_ih_shape) + math.prod(weight_hh_shape))


def _rnn_flop(input_shape, weight_shapes, *args, out_shape=None, **kwargs) -> int:
    """All layers and directions of a cuDNN / MIOpen RNN: 2 * tokens * (numel of every weight matrix).

    ``weight_shapes`` lists, per layer and direction, W_ih, W_hh, the biases (1-D, not counted:
    additions) and W_hr for a projected LSTM.
    """
    return 2 * _tokens(input_shape) * sum(math.prod(s) for s in weight_shapes if len(s) == 2)


def _extra_formulas() -> dict:
    table = {
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_cpu_flop,
        "mkldnn_rnn_layer": _mkldnn_rnn_layer_flop,
        "_cudnn_rnn": _rnn_flop,
        "miopen_rnn": _rnn_flop,
    }
    # An operator missing from this build of PyTorch is simply not needed here.
    return {getattr(aten, name): f for name, f in table.items() if hasattr(aten, name)}


EXTRA_FORMULAS = _extra_formulas()


class _TotalOnly:
    """Stands in for ``FlopCounterMode``'s module tracker: every count goes to ``"Global"`` only.

    The tracker's hooks raise on a view of a parameter made under ``no_grad`` (``query.expand(B, -1)``
    in a forward pass: "Expected gradient function to be set") and import ``torch._dynamo`` (seconds)
    on first use. Counts per module come from ``archlab.inspect.summary``'s own hooks instead.
    """

    parents = frozenset({"Global"})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def flop_counter() -> FlopCounterMode:
    """A silent ``FlopCounterMode`` that also knows ``EXTRA_FORMULAS`` and counts totals only."""
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    if hasattr(counter, "mod_tracker"):
        counter.mod_tracker = _TotalOnly()
    return counter


@contextlib.contextmanager
def counting_flops(model: torch.nn.Module) -> Iterator[FlopCounterMode]:
    """Count the FLOPs of what runs inside, with ``model`` in eval mode, without autograd.

    The RNG state is restored afterwards (dropout or sampling inside must not shift a training run),
    and so is the model's training flag. ``counter.get_total_flops()`` reads the count so far.
    """
    with eval_mode(model), torch.no_grad(), torch.random.fork_rng(devices=[]), flop_counter() as counter:
        yield counter
