"""Recurrent language models: predict the next token from every token so far.

The seed texts' example is next-word prediction ("The quick brown ..." -> "fox"). An RNN reads the
tokens one step at a time and carries its memory in the hidden state (Elman 1990; with LSTM cells
Hochreiter & Schmidhuber 1997, Zaremba et al. 2014; with GRU cells Cho et al. 2014):

    x_t = E[w_t]                                       embedding of token w_t
    h_t = f(W_hh h_{t-1} + W_xh x_t + b_h)             rnn: f = tanh; lstm / gru: gated cells
    y_t = W_hy h_t + b_y                               logits of w_{t+1}
    p(w_{t+1} | w_1..w_t) = softmax(y_t)

With ``tie_weights`` the output matrix W_hy is the embedding E (Press & Wolf 2017; Inan et al.
2017), which needs embed_dim == hidden_size.

The final state (h_T, or (h_T, c_T) for an LSTM) comes back with ``return_state=True``: a trainer
passes it into the next chunk of a long text, detached, for truncated backpropagation through
time; ``generate`` carries it from token to token so the prefix is read only once.

This module is also the recurrent family's single import point for the layers: every sequence
model builds its RNN / LSTM / GRU through ``recurrent_layer`` and runs padded batches through
``run_padded``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_packed_sequence

from archlab.checkpoint import PretrainedMixin
from archlab.errors import check
from archlab.models.decoding import check_sampling_args, sample_next
from archlab.nn import GRU, LSTM, RNN, pack_padded
from archlab.registry import build_config, register_model

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


@dataclass
class RNNLMConfig:
    cell: str = "lstm"              # "rnn" | "lstm" | "gru"
    vocab_size: int = 256           # characters (bytes) by default; a word vocabulary works the same
    embed_dim: int = 256
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.2            # on embeddings, between layers and before the output layer
    tie_weights: bool = False       # W_hy = E (needs embed_dim == hidden_size)

    def __post_init__(self):
        check_cell(self.cell)
        for name in ("vocab_size", "embed_dim", "hidden_size", "num_layers"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        check(not self.tie_weights or self.embed_dim == self.hidden_size,
              f"tie_weights needs embed_dim == hidden_size, got embed_dim={self.embed_dim}, "
              f"hidden_size={self.hidden_size}")


class RNNLM(PretrainedMixin, nn.Module):
    def __init__(self, config: RNNLMConfig):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim)            # E
        self.drop = nn.Dropout(config.dropout)
        self.rnn = recurrent_layer(config.cell, config.embed_dim, config.hidden_size,
                                   config.num_layers, config.dropout)                 # h_t
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)               # W_hy, b_y
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight

    def forward(self, input_ids: torch.Tensor, state=None, return_state: bool = False):
        """input_ids (B, T) -> logits (B, T, vocab_size) of the next token at every step.

        ``state``: the final state of the previous chunk (None = zeros). ``return_state=True``
        also returns this chunk's final state: h_n (L, B, H), or (h_n, c_n) for an LSTM.
        """
        check_token_ids(input_ids, self.config.vocab_size)
        x = self.drop(self.embedding(input_ids))   # (B, T, E)
        h, state = self.rnn(x, state)              # (B, T, H)
        logits = self.decoder(self.drop(h))        # (B, T, V)
        return (logits, state) if return_state else logits

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, *, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue ``input_ids`` (B, T) by ``max_new_tokens``; returns (B, T + max_new_tokens).

        The prefix is read once; each new token is one step of the recurrence from the carried
        state. Greedy by default; ``do_sample`` draws with temperature / top-k / top-p
        (``archlab.models.decoding.sample_next``). Call ``model.eval()`` first to turn dropout off.
        """
        check(max_new_tokens >= 0, f"max_new_tokens must be >= 0, got {max_new_tokens}")
        check_sampling_args(temperature, top_k, top_p)
        tokens = input_ids
        logits, state = self(input_ids, return_state=True)
        for i in range(max_new_tokens):
            next_id = sample_next(logits[:, -1], do_sample=do_sample, temperature=temperature,
                                  top_k=top_k, top_p=top_p, generator=generator)  # (B,)
            tokens = torch.cat([tokens, next_id[:, None]], dim=1)
            if i + 1 < max_new_tokens:
                logits, state = self(next_id[:, None], state, return_state=True)
        return tokens


def _language_model(cell: str, config: dict) -> RNNLM:
    check_cell(config.get("cell", cell))
    check(config.get("cell", cell) == cell,
          f"{cell}_lm has cell={cell!r}; got cell={config.get('cell')!r} (use {config.get('cell')}_lm)")
    return RNNLM(build_config(RNNLMConfig, {"cell": cell}, config))


@register_model("rnn_lm", family="rnn", description="Language model with a simple (Elman) RNN core")
def rnn_lm(**config) -> RNNLM:
    return _language_model("rnn", config)


@register_model("lstm_lm", family="rnn", description="Language model with an LSTM core")
def lstm_lm(**config) -> RNNLM:
    return _language_model("lstm", config)


@register_model("gru_lm", family="rnn", description="Language model with a GRU core")
def gru_lm(**config) -> RNNLM:
    return _language_model("gru", config)
