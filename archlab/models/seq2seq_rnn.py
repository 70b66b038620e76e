"""Sequence-to-sequence RNN encoder-decoder with attention (Sutskever et al. 2014; Bahdanau et al.
2015; Luong et al. 2015).

Encoder: a bidirectional RNN reads the source x_1..x_S; each position gets both directions'
states, h_j = [h_j^fwd ; h_j^bwd] (hidden_size // 2 each, so h_j has hidden_size features).

Bridge: the decoder starts from the encoder's final states, layer by layer,

    s_0 = tanh(W_b [h_n^fwd ; h_n^bwd] + b_b)           (and the same, with its own W, for c_0)

Decoder, at each target step t (teacher forcing feeds the true y_{t-1}):

    s_t       = RNN(E_tgt[y_{t-1}], s_{t-1})             decoder state
    alpha_t   = softmax_j(score(s_t, h_j))               over the real (unpadded) source positions
    c_t       = sum_j alpha_t,j h_j                      context vector
    ~h_t      = tanh(W_c [c_t ; s_t])                    attentional state
    p(y_t)    = softmax(W_s ~h_t + b_s)

``score`` is additive (Bahdanau: v^T tanh(W_1 s + W_2 h)) or multiplicative (Luong: dot s^T h,
general s^T W_a h); see ``archlab.nn.seq_attention``. Attention reads the *current* state s_t
(Luong's order, without input feeding), so under teacher forcing the decoder RNN runs over the
whole target in one call and attention over all steps at once.

Padding: the source is packed before the encoder and masked in attention, so padded positions
change nothing. ``translate`` decodes with ``archlab.models.decoding`` (greedy, or beam search)
from the one-step function ``step``; ``return_attention=True`` also gives alpha for inspection.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from archlab.checkpoint import PretrainedMixin
from archlab.errors import check
from archlab.models.decoding import search
from archlab.models.interfaces import Seq2SeqModel
from archlab.nn.sequence import check_cell, check_token_ids, lengths_from_mask, recurrent_layer, run_padded
from archlab.nn.seq_attention import SCORES, SeqAttention, lengths_to_mask
from archlab.registry import build_config, register_model
from archlab.utils.runtime import eval_mode


@dataclass
class Seq2SeqRNNConfig:
    src_vocab_size: int = 64
    tgt_vocab_size: int = 64
    embed_dim: int = 128
    hidden_size: int = 256          # decoder state size; the encoder uses hidden_size // 2 per direction
    num_layers: int = 1
    cell: str = "gru"               # "rnn" | "lstm" | "gru"
    attention: str = "additive"     # "additive" | "dot" | "general"
    dropout: float = 0.1
    pad_id: int = 0                 # shared by both vocabularies
    bos_id: int = 1                 # target start token
    eos_id: int = 2                 # target end token

    def __post_init__(self):
        check_cell(self.cell)
        check(self.attention in SCORES, f"attention must be one of {SCORES}, got {self.attention!r}")
        for name in ("src_vocab_size", "tgt_vocab_size", "embed_dim", "hidden_size", "num_layers"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        check(self.hidden_size % 2 == 0,
              f"hidden_size must be even (split between the encoder's two directions), got {self.hidden_size}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        for name in ("pad_id", "bos_id", "eos_id"):
            v = getattr(self, name)
            check(0 <= v < min(self.src_vocab_size, self.tgt_vocab_size),
                  f"{name} must lie in [0, {min(self.src_vocab_size, self.tgt_vocab_size) - 1}], got {v}")


class Seq2SeqRNN(Seq2SeqModel, PretrainedMixin, nn.Module):
    config_class = Seq2SeqRNNConfig

    def __init__(self, config: Seq2SeqRNNConfig):
        super().__init__()
        self.config = config
        E, H, L = config.embed_dim, config.hidden_size, config.num_layers
        self.src_embedding = nn.Embedding(config.src_vocab_size, E)
        self.tgt_embedding = nn.Embedding(config.tgt_vocab_size, E)
        self.encoder = recurrent_layer(config.cell, E, H // 2, L, config.dropout, bidirectional=True)
        # one bridge per state component: h (and c for an LSTM)
        self.bridge = nn.ModuleList(nn.Linear(H, H) for _ in range(2 if config.cell == "lstm" else 1))
        self.decoder = recurrent_layer(config.cell, E, H, L, config.dropout)
        self.attention = SeqAttention(H, H, config.attention)
        self.W_c = nn.Linear(2 * H, H, bias=False)
        self.W_s = nn.Linear(H, config.tgt_vocab_size)
        self.drop = nn.Dropout(config.dropout)

    # ---- encoder ---------------------------------------------------------------------------------
    def encode(self, src_ids: torch.Tensor, src_lengths: torch.Tensor | None = None,
               src_mask: torch.Tensor | None = None):
        """src_ids (B, S) -> memory h_j (B, S, H), mask (B, S) (True = real), decoder state s_0."""
        cfg = self.config
        check_token_ids(src_ids, cfg.src_vocab_size, "src_ids")
        B, S = src_ids.shape
        if src_mask is not None:
            src_lengths = lengths_from_mask(src_mask, (B, S), "src_mask")
        elif src_lengths is None:
            src_lengths = lengths_from_mask(src_ids != cfg.pad_id, (B, S), "src_ids != pad_id")
        src_lengths = torch.as_tensor(src_lengths, device=src_ids.device)
        x = self.drop(self.src_embedding(src_ids))                     # (B, S, E)
        memory, final = run_padded(self.encoder, x, src_lengths)       # (B, S, H)
        finals = final if isinstance(final, tuple) else (final,)
        L, Hh = cfg.num_layers, cfg.hidden_size // 2
        # (L * 2, B, H/2) -> (L, 2, B, H/2) -> (L, B, 2, H/2) -> (L, B, H) = [h_n^fwd ; h_n^bwd]
        both = [f.reshape(L, 2, B, Hh).permute(0, 2, 1, 3).reshape(L, B, 2 * Hh) for f in finals]
        s_0 = tuple(torch.tanh(W_b(f)) for W_b, f in zip(self.bridge, both))
        return memory, lengths_to_mask(src_lengths, S), s_0 if cfg.cell == "lstm" else s_0[0]

    # ---- decoder ---------------------------------------------------------------------------------
    def decode(self, tgt_in_ids: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor, state):
        """Teacher-forced decoder over tgt_in_ids (B, T): logits (B, T, V), alpha (B, T, S), state."""
        check_token_ids(tgt_in_ids, self.config.tgt_vocab_size, "tgt_in_ids")
        y = self.drop(self.tgt_embedding(tgt_in_ids))                  # (B, T, E)
        s, state = self.decoder(y, state)                              # s_t: (B, T, H)
        c, alpha = self.attention(s, memory, mask=mask)                # c_t: (B, T, H), alpha: (B, T, S)
        h_tilde = torch.tanh(self.W_c(torch.cat([c, s], dim=-1)))      # (B, T, H)
        return self.W_s(self.drop(h_tilde)), alpha, state

    def forward(self, src_ids: torch.Tensor, tgt_in_ids: torch.Tensor, src_lengths: torch.Tensor | None = None,
                src_mask: torch.Tensor | None = None, return_attention: bool = False):
        """Teacher forcing: logits (B, T, tgt_vocab_size) for target inputs ``tgt_in_ids`` (bos first).

        Source padding: ``src_lengths`` (B,), or ``src_mask`` (B, S) with True on real tokens, or
        else every ``pad_id`` in ``src_ids``. ``return_attention=True`` adds alpha (B, T, S).
        """
        memory, mask, s_0 = self.encode(src_ids, src_lengths, src_mask)
        check(tgt_in_ids.shape[0] == src_ids.shape[0],
              f"tgt_in_ids has batch size {tgt_in_ids.shape[0]}, src_ids has {src_ids.shape[0]}")
        logits, alpha, _ = self.decode(tgt_in_ids, memory, mask, s_0)
        return (logits, alpha) if return_attention else logits

    # ---- decoding --------------------------------------------------------------------------------
    def init_decode_state(self, src_ids, src_lengths=None, src_mask=None) -> dict:
        """The state ``step`` carries; every tensor has the batch first, as beam search needs."""
        memory, mask, s_0 = self.encode(src_ids, src_lengths, src_mask)
        parts = s_0 if isinstance(s_0, tuple) else (s_0,)
        return {"memory": memory, "mask": mask, "s": tuple(p.transpose(0, 1) for p in parts)}  # s: (B, L, H)

    def step(self, tokens: torch.Tensor, state: dict):
        """One decoder step from the last token of ``tokens`` (N, t): (log p(y_t) (N, V), new state)."""
        parts = tuple(p.transpose(0, 1).contiguous() for p in state["s"])  # (L, N, H)
        s_prev = parts if self.config.cell == "lstm" else parts[0]
        logits, _, s_new = self.decode(tokens[:, -1:], state["memory"], state["mask"], s_prev)
        s_new = s_new if isinstance(s_new, tuple) else (s_new,)
        new_state = {**state, "s": tuple(p.transpose(0, 1) for p in s_new)}
        return logits[:, -1].log_softmax(-1), new_state

    def start_decoding(self, src_ids: torch.Tensor):
        """``(step, state)`` before the first target token; source padding read from ``pad_id``."""
        return self.step, self.init_decode_state(src_ids)

    @torch.no_grad()
    def translate(self, src_ids: torch.Tensor, src_lengths: torch.Tensor | None = None,
                  src_mask: torch.Tensor | None = None, *, max_len: int = 50, beam_size: int = 1,
                  length_penalty: float = 1.0, return_attention: bool = False):
        """Decode target tokens (B, L) (bos excluded; eos then eos-padding) greedily or by beam search.

        ``return_attention=True`` also returns alpha (B, L, S) for the chosen output (zero after
        its eos). Runs in evaluation mode (no dropout) and restores the previous mode.
        """
        cfg = self.config
        with eval_mode(self):
            state = self.init_decode_state(src_ids, src_lengths, src_mask)
            out = search(self.step, state, bos_id=cfg.bos_id, eos_id=cfg.eos_id, batch_size=src_ids.shape[0],
                         max_len=max_len, beam_size=beam_size, length_penalty=length_penalty, device=src_ids.device)
            if not return_attention:
                return out
            # The weights behind the chosen tokens: one teacher-forced pass over [bos, y_1 .. y_{L-1}].
            bos = torch.full_like(out[:, :1], cfg.bos_id)
            _, alpha = self(src_ids, torch.cat([bos, out[:, :-1]], 1), src_lengths, src_mask, return_attention=True)
            after_eos = (out == cfg.eos_id).long().cumsum(1) - (out == cfg.eos_id).long() > 0  # (B, L)
            return out, alpha.masked_fill(after_eos[..., None], 0.0)


@register_model("seq2seq_rnn", family="rnn",
                description="RNN encoder-decoder: bidirectional encoder, bridge, attention (additive/dot/general)")
def seq2seq_rnn(**config) -> Seq2SeqRNN:
    return Seq2SeqRNN(build_config(Seq2SeqRNNConfig, {}, config))
