"""Backpropagation through time (BPTT): whole, truncated, and watched step by step.

Whole-sequence BPTT is ordinary autograd: run the layer over the sequence, ``loss.backward()``; the
gradient flows back through every step. Its cost grows with the sequence length, and on long
sequences the gradient of a simple RNN vanishes or explodes on the way back (seed 003).

Truncated BPTT cuts a long sequence into chunks of ``k`` steps. The state is carried from one chunk
to the next, so the forward pass is the same as one pass over the whole sequence, but it is
*detached* at every boundary, so gradients flow back at most ``k`` steps::

    state = None
    for x_chunk, y_chunk in zip(time_chunks(x, k), time_chunks(y, k)):
        output, state = rnn(x_chunk, detach_state(state))
        loss = loss_fn(head(output), y_chunk)
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm_(model.parameters(), max_norm=1.0)   # torch.nn.utils.clip_grad_norm_
        optimizer.step()

``truncated_bptt(rnn, x, k)`` is that loop's forward half as a generator of ``(output, state)``.
Gradient clipping (rescale all gradients so their global L2 norm is at most ``max_norm``) is
``torch.nn.utils.clip_grad_norm_``, re-exported here.

Watching the gradient through time: every recurrent layer of ``archlab.nn`` calls its step hooks
(``layer.register_step_hook(fn)``) with a :class:`StepRecord` per time step, holding h_t, c_t and
the gates as the equations computed them, still in the autograd graph. ``record_steps(model)``
collects them; ``hidden_grad_norms(loss, records)`` turns them into ||dL/dh_t|| over t: the
curve that shrinks towards the start of the sequence in a simple RNN (vanishing gradients).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.utils import clip_grad_norm_

from archlab.errors import check

__all__ = ["detach_state", "time_chunks", "truncated_bptt", "clip_grad_norm_", "StepRecord",
           "record_steps", "hidden_grad_norms"]


def detach_state(state):
    """The state with its history cut: a tensor, a tuple/list of them (LSTM's (h, c)) or None."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    raise TypeError(f"state must be a tensor, a tuple/list of tensors or None, got {type(state).__name__}")


def time_chunks(x: Tensor, chunk_len: int, batch_first: bool = False) -> tuple[Tensor, ...]:
    """Split ``x`` along its time dimension (0, or 1 with ``batch_first``) into chunks of
    ``chunk_len`` steps (the last may be shorter). The chunks are views of ``x``."""
    check(isinstance(chunk_len, int) and chunk_len > 0,
          f"chunk_len must be a positive integer, got {chunk_len!r}")
    time_dim = 1 if batch_first else 0
    check(x.dim() > time_dim, f"x must have a time dimension {time_dim}, got shape {tuple(x.shape)}")
    return x.split(chunk_len, dim=time_dim)


def truncated_bptt(module: nn.Module, x: Tensor, chunk_len: int, state=None,
                   batch_first: bool | None = None) -> Iterator[tuple[Tensor, object]]:
    """Run ``module`` (an RNN/LSTM/GRU layer) over ``x`` chunk by chunk, yielding ``(output, state)``.

    The state enters each chunk detached: a loss on one chunk's output back-propagates through that
    chunk only (at most ``chunk_len`` steps), never into earlier ones. ``batch_first`` defaults to
    the module's own setting.
    """
    if batch_first is None:
        batch_first = bool(getattr(module, "batch_first", False))
    for chunk in time_chunks(x, chunk_len, batch_first):
        output, state = module(chunk, detach_state(state))
        yield output, state


# --------------------------------------------------------------------------------------------------
# Step hooks: what happens inside a recurrent layer at every time step.
# --------------------------------------------------------------------------------------------------


@dataclass
class StepRecord:
    """One time step of one direction of one layer, as the reference path computed it.

    ``h_t`` (and ``c_t`` for the LSTM) is the very tensor that feeds the next step and the output,
    so ``torch.autograd.grad(loss, record.h_t)`` is dL/dh_t. Rows are the sequences active at step
    ``t``: the whole batch for a padded input; for a packed input the first ``batch_sizes[t]``
    sequences in the packed (longest first) order.
    """

    layer: int
    direction: int                 # 0 forward, 1 reverse
    t: int                         # time index in the sequence (reverse steps run t = T-1 .. 0)
    h_t: Tensor                    # (b_t, P)
    c_t: Tensor | None             # (b_t, H), LSTM only
    gates: dict[str, Tensor] = field(default_factory=dict)  # name -> (b_t, H)
    source: str = ""               # name of the recurrent module inside the recorded model


@contextmanager
def record_steps(module: nn.Module) -> Iterator[list[StepRecord]]:
    """Collect a :class:`StepRecord` for every time step of every recurrent layer in ``module``.

    Recording runs the reference path (the fused kernels do not expose their steps)::

        with record_steps(lstm) as steps:
            output, (h_n, c_n) = lstm(x)
        loss = output.sum()
        norms = hidden_grad_norms(loss, [s for s in steps if s.layer == 0])   # ||dL/dh_t|| by t
    """
    records: list[StepRecord] = []
    handles = []
    for name, m in module.named_modules():
        if hasattr(m, "register_step_hook"):  # archlab's RNN, LSTM, GRU
            def hook(_m, rec, _name=name):
                rec.source = _name
                records.append(rec)
            handles.append(m.register_step_hook(hook))
    try:
        yield records
    finally:
        for h in handles:
            h.remove()


def hidden_grad_norms(loss: Tensor, records: list[StepRecord], retain_graph: bool = True) -> Tensor:
    """||dL/dh_t|| for each record, in the order given (0 where h_t does not reach the loss).

    Ordered by t for a single layer and direction, this is the curve of the vanishing-gradient
    claim: how much the loss at the end still depends on the state many steps back.
    """
    grads = torch.autograd.grad(loss, [r.h_t for r in records], retain_graph=retain_graph,
                                allow_unused=True)
    return torch.stack([g.norm() if g is not None else loss.new_zeros(()) for g in grads])
