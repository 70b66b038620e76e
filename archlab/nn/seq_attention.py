"""Attention for recurrent encoder-decoders: additive (Bahdanau) and multiplicative (Luong) scores.

A decoder state s (the query) looks at every encoder state h_j (the keys and values) and takes a
weighted average of them, the context vector:

    e_j      = score(s, h_j)                       one number per source position j
    alpha_j  = exp(e_j) / sum_k exp(e_k)           softmax over the valid (unpadded) positions
    c        = sum_j alpha_j h_j                   the context vector

The score functions:

    additive  (Bahdanau et al. 2015, "Neural Machine Translation by Jointly Learning to Align
               and Translate"):        e_j = v^T tanh(W_1 s + W_2 h_j)
    dot       (Luong et al. 2015, "Effective Approaches to Attention-based NMT"):  e_j = s^T h_j
    general   (Luong et al. 2015):    e_j = s^T W_a h_j

Masks follow archlab's convention: boolean, ``True`` = may attend. A query whose every key is
masked gets a zero context and zero weights, never NaN.

Dimension letters: B batch, T query steps (decoder), S key steps (source), D_q / D_k sizes.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from archlab.errors import check

SCORES = ("additive", "dot", "general")


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_len) boolean mask, ``True`` on the first ``lengths[b]`` steps."""
    steps = torch.arange(max_len, device=lengths.device)
    return steps[None, :] < lengths[:, None]  # (B, S)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last dim where ``mask`` is True; rows with nothing to attend to are all zero."""
    if mask is None:
        return scores.softmax(dim=-1)
    scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    # A fully masked row is softmax(-inf, ..., -inf) = NaN: make it zeros instead.
    return weights.masked_fill(~mask.any(dim=-1, keepdim=True), 0.0)


class SeqAttention(nn.Module):
    """``forward(query, keys, values=None, mask=None) -> (context, weights)``.

    query: (B, D_q) for one decoder step, or (B, T, D_q) for T steps at once (teacher forcing).
    keys:  (B, S, D_k); values default to the keys (the encoder states h_j).
    mask:  (B, S) boolean, ``True`` = a real source position.
    Returns context (B, [T,] D_v) and weights alpha (B, [T,] S).
    """

    def __init__(self, query_size: int, key_size: int, score: str = "additive", attn_size: int | None = None):
        super().__init__()
        check(score in SCORES, f"score must be one of {SCORES}, got {score!r}")
        check(query_size > 0 and key_size > 0,
              f"query_size and key_size must be positive, got query_size={query_size}, key_size={key_size}")
        if score == "dot":
            check(query_size == key_size,
                  f"dot attention needs query_size == key_size, got query_size={query_size}, key_size={key_size}")
        self.score_name, self.query_size, self.key_size = score, query_size, key_size
        if score == "additive":
            attn_size = attn_size or query_size
            self.W_1 = nn.Linear(query_size, attn_size, bias=False)   # decoder state s
            self.W_2 = nn.Linear(key_size, attn_size, bias=True)      # encoder states h_j
            self.v = nn.Linear(attn_size, 1, bias=False)
        elif score == "general":
            self.W_a = nn.Linear(key_size, query_size, bias=False)

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """e (B, T, S) for query (B, T, D_q) and keys (B, S, D_k)."""
        if self.score_name == "additive":
            # W_1 s: (B, T, 1, A) + W_2 h: (B, 1, S, A) -> tanh -> v^T: (B, T, S)
            hidden = torch.tanh(self.W_1(query).unsqueeze(2) + self.W_2(keys).unsqueeze(1))
            return self.v(hidden).squeeze(-1)
        if self.score_name == "general":
            keys = self.W_a(keys)  # W_a h_j: (B, S, D_q)
        return query @ keys.transpose(1, 2)  # s^T h_j: (B, T, S)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        values = keys if values is None else values
        single_step = query.dim() == 2
        if single_step:
            query = query.unsqueeze(1)  # (B, 1, D_q)
        check(query.dim() == 3 and query.shape[-1] == self.query_size,
              f"query must be (B, D_q) or (B, T, D_q) with D_q={self.query_size}, got shape {tuple(query.shape)}")
        check(keys.dim() == 3 and keys.shape[-1] == self.key_size,
              f"keys must be (B, S, D_k) with D_k={self.key_size}, got shape {tuple(keys.shape)}")
        check(values.shape[:2] == keys.shape[:2],
              f"values must have the keys' (B, S)={tuple(keys.shape[:2])}, got {tuple(values.shape[:2])}")
        check(query.shape[0] == keys.shape[0],
              f"query has batch size {query.shape[0]}, keys have {keys.shape[0]}")
        if mask is not None:
            check(mask.dtype == torch.bool and mask.shape == keys.shape[:2],
                  f"mask must be a boolean (B, S)={tuple(keys.shape[:2])} tensor (True = attend), "
                  f"got {mask.dtype} {tuple(mask.shape)}")
            mask = mask.unsqueeze(1)  # (B, 1, S): the same source mask for every query step

        e = self.score(query, keys)                        # (B, T, S)
        alpha = masked_softmax(e, mask)                    # (B, T, S)
        context = alpha.to(values.dtype) @ values          # c = sum_j alpha_j h_j: (B, T, D_v)
        if single_step:
            return context.squeeze(1), alpha.squeeze(1)    # (B, D_v), (B, S)
        return context, alpha


class AdditiveAttention(SeqAttention):
    """Bahdanau attention: e_j = v^T tanh(W_1 s + W_2 h_j)."""

    def __init__(self, query_size: int, key_size: int, attn_size: int | None = None):
        super().__init__(query_size, key_size, "additive", attn_size)


class MultiplicativeAttention(SeqAttention):
    """Luong attention: ``"dot"`` e_j = s^T h_j, or ``"general"`` e_j = s^T W_a h_j."""

    def __init__(self, query_size: int, key_size: int, score: str = "general"):
        check(score in ("dot", "general"), f"multiplicative score must be 'dot' or 'general', got {score!r}")
        super().__init__(query_size, key_size, score)
