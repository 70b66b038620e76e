"""Backpropagation through time (BPTT), whole or truncated.

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
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.utils import clip_grad_norm_

from archlab.errors import check

__all__ = ["detach_state", "time_chunks", "truncated_bptt", "clip_grad_norm_"]


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
