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


# The gates that decide how much of the memory a step keeps and how much it writes: the LSTM's
# forget and input gates (c_t = f_t * c_{t-1} + i_t * g_t) and the GRU's update gate
# (h_t = (1 - z_t) * n_t + z_t * h_{t-1}: z_t keeps, 1 - z_t writes).
MEMORY_GATES = {"lstm": {"forget_gate": 1.0, "input_gate": -1.0}, "gru": {"update_gate": 1.0}}


def check_memory_bias(cell: str, memory_bias: float | None) -> None:
    check(memory_bias is None or cell in MEMORY_GATES,
          f"memory_bias sets the initial biases of the LSTM's forget and input gates or the GRU's update gate; "
          f"cell {cell!r} has no such gate, got memory_bias={memory_bias}")


def recurrent_layer(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                    dropout: float = 0.0, bidirectional: bool = False, memory_bias: float | None = None) -> nn.Module:
    """A batch-first RNN / LSTM / GRU; dropout applies between stacked layers only.

    ``memory_bias`` b: start every layer and direction remembering, instead of torch's
    U(-1/sqrt(H), 1/sqrt(H)) biases: the LSTM's forget gate at sigma(b) and its input gate at
    sigma(-b), the GRU's update gate at sigma(b) (b_ih = +-b, b_hh = 0). A memory then lasts
    about 1 / (1 - sigma(b)) steps from the start (b = 5: ~150 steps; torch's init: ~2) and little
    is written over it until the cell learns what to write. Hochreiter & Schmidhuber 1997 started
    input gates closed (and had no forget gate: it never forgot), Gers et al. 2000 forget gates
    open; Tallec & Ollivier 2018 ("chrono" initialisation) tie the two as b_i = -b_f.
    """
    check_cell(cell)
    check_memory_bias(cell, memory_bias)
    layer = CELLS[cell](input_size, hidden_size, num_layers=num_layers, batch_first=True,
                        dropout=dropout if num_layers > 1 else 0.0, bidirectional=bidirectional)
    if memory_bias is not None:
        with torch.no_grad():
            for k in range(num_layers):
                for direction in range(2 if bidirectional else 1):
                    gates = layer.gate_weights(k, direction)
                    for name, sign in MEMORY_GATES[cell].items():
                        gates[name]["bias_ih"].fill_(sign * memory_bias)
                        gates[name]["bias_hh"].zero_()
    return layer


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
