"""Recurrent layers by name, and running them over right-padded batches.

Every sequence model of archlab (language models, classifiers, encoder-decoders, forecasters)
builds its RNN / LSTM / GRU through ``recurrent_layer(cell, ...)`` and runs padded batches through
``run_padded``, so padded steps never enter the recurrence.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_packed_sequence

from archlab.errors import check
from archlab.nn.recurrent import GRU, LSTM, RNN, pack_padded

CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def check_cell(cell: str) -> None:
    check(cell in CELLS, f"cell must be one of {tuple(CELLS)}, got {cell!r}")


def recurrent_layer(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                    dropout: float = 0.0, bidirectional: bool = False) -> nn.Module:
    """A batch-first RNN / LSTM / GRU; dropout applies between stacked layers only."""
    check_cell(cell)
    return CELLS[cell](input_size, hidden_size, num_layers=num_layers, batch_first=True,
                       dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)


def run_padded(rnn: nn.Module, x: torch.Tensor, lengths: torch.Tensor, state=None):
    """Run a batch-first ``rnn`` over right-padded ``x`` (B, T, F) whose rows have ``lengths`` (B,).

    The batch is packed, so padded steps never enter the recurrence: the output is zero there and
    the final state of row b is the state after its step ``lengths[b] - 1`` (for the backward
    direction, after step 0). Returns output (B, T, D * H) and the final state.
    """
    out, state = rnn(pack_padded(x, lengths, batch_first=True), state)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, D * H)
    return out, state


def lengths_from_mask(mask: torch.Tensor, shape: tuple[int, int], name: str = "mask") -> torch.Tensor:
    """(B,) lengths of a right-padded batch from its (B, T) boolean mask (True = real step)."""
    check(mask.dtype == torch.bool and tuple(mask.shape) == tuple(shape),
          f"{name} must be a boolean {tuple(shape)} tensor (True = real step), got {mask.dtype} {tuple(mask.shape)}")
    lengths = mask.sum(1)
    steps = torch.arange(mask.shape[1], device=mask.device)
    check(bool((mask == (steps[None, :] < lengths[:, None])).all()),
          f"{name} must mark a prefix of every row (right padding), got a gap inside a row")
    return lengths


def check_token_ids(ids: torch.Tensor, vocab_size: int, name: str = "input_ids") -> None:
    check(ids.dim() == 2 and not ids.is_floating_point(),
          f"{name} must be a (B, T) integer tensor, got {ids.dtype} of shape {tuple(ids.shape)}")
    check(ids.numel() > 0, f"{name} must not be empty, got shape {tuple(ids.shape)}")
    lo, hi = int(ids.min()), int(ids.max())
    check(lo >= 0 and hi < vocab_size, f"{name} must lie in [0, {vocab_size - 1}] (vocab_size={vocab_size}), "
          f"got values in [{lo}, {hi}]")
