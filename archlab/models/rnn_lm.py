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

Every sequence model builds its RNN / LSTM / GRU through ``archlab.nn.sequence.recurrent_layer``
and runs padded batches through ``run_padded``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from archlab.checkpoint import PretrainedMixin
from archlab.errors import check
from archlab.models.decoding import check_sampling_args, sample_next
from archlab.models.interfaces import LanguageModel
from archlab.nn.sequence import check_cell, check_token_ids, recurrent_layer
from archlab.registry import build_config, register_model

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


class RNNLM(LanguageModel, PretrainedMixin, nn.Module):
    config_class = RNNLMConfig

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
