"""Positional information for attention, which by itself is blind to word order.

Sinusoidal encoding (Vaswani et al. 2017, section 3.5), fixed, no parameters:

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

Learned positional embedding (GPT, BERT): a trainable vector P[pos] per position.

Both add the encoding of positions ``offset .. offset + T - 1`` to x (B, T, d_model); ``offset`` is
the number of positions already processed, so cached decoding places a new token correctly.

Relative position bias (T5: Raffel et al. 2019, section 2.1; after Shaw et al. 2018): instead of
adding positions to the inputs, each head adds a learned scalar to the attention logit of query i
on key j that depends only on the offset n = j - i, seen through a bucket:

    score_ij = q_i . k_j + b[bucket(j - i), head]

Buckets are exact for small offsets and grow logarithmically up to ``max_distance``, beyond which
every offset shares the last bucket (T5: 32 buckets, max_distance 128). Bidirectional attention
(the encoder) gives half of the buckets to keys after the query; causal attention (the decoder)
only ever sees keys at or before the query.
"""

from __future__ import annotations

import math


import torch
import torch.nn as nn

from archlab.errors import check


def _check_positions(x: torch.Tensor, d_model: int, max_len: int, offset: int, name: str) -> None:
    check(x.dim() == 3 and x.size(-1) == d_model,
          f"{name} expects x of shape (batch, length, d_model={d_model}), got {tuple(x.shape)}")
    check(offset >= 0, f"offset must be >= 0, got {offset}")
    check(offset + x.size(1) <= max_len,
          f"positions up to {offset + x.size(1)} (offset {offset} + length {x.size(1)}) exceed "
          f"max_len={max_len} of {name}")


class SinusoidalPositionalEncoding(nn.Module):
    """x + PE[offset : offset + T], PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)."""

    def __init__(self, d_model: int, max_len: int = 5000):
        super().__init__()
        check(d_model > 0 and d_model % 2 == 0, f"d_model must be a positive even number, got {d_model}")
        check(max_len > 0, f"max_len must be positive, got {max_len}")
        self.d_model, self.max_len = d_model, max_len
        pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
        two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (d/2,)
        angle = pos / 10000.0 ** (two_i / d_model)  # (max_len, d/2)
        pe = torch.empty(max_len, d_model, dtype=torch.float64)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle)
        # Computed, not learned: kept out of the state_dict.
        self.register_buffer("pe", pe.float(), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_positions(x, self.d_model, self.max_len, offset, "SinusoidalPositionalEncoding")
        return x + self.pe[offset: offset + x.size(1)].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """x + P[offset : offset + T], with P (max_len, d_model) learned (``weight``, like nn.Embedding)."""

    def __init__(self, max_len: int, d_model: int, *, init_std: float = 0.02, device=None, dtype=None):
        super().__init__()
        check(max_len > 0, f"max_len must be positive, got {max_len}")
        check(d_model > 0, f"d_model must be positive, got {d_model}")
        self.max_len, self.d_model = max_len, d_model
        self.weight = nn.Parameter(torch.empty(max_len, d_model, device=device, dtype=dtype))
        nn.init.normal_(self.weight, std=init_std)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_positions(x, self.d_model, self.max_len, offset, "LearnedPositionalEmbedding")
        return x + self.weight[offset: offset + x.size(1)]


def relative_position_bucket(relative_position: torch.Tensor, *, bidirectional: bool, num_buckets: int = 32,
                             max_distance: int = 128) -> torch.Tensor:
    """The bucket (long tensor, values in [0, num_buckets)) of each offset n = key - query.

        bidirectional: B = num_buckets / 2, offset o = B if n > 0 else 0, distance d = |n|
        causal:        B = num_buckets,     o = 0,                        d = max(-n, 0)
        exact = B / 2
        bucket = o + d                                                       if d < exact
                 o + min(exact + floor(ln(d / exact) / ln(max_distance / exact) * (B - exact)), B - 1)
                                                                             otherwise

    The logarithm is taken in float32, as in T5's code, so bucket edges match its checkpoints.
    """
    n = relative_position
    if bidirectional:
        num_buckets //= 2
        offset = (n > 0).long() * num_buckets  # keys after the query use the upper half
        distance = n.abs()
    else:
        offset = torch.zeros_like(n)
        distance = (-n).clamp(min=0)  # a key after the query (masked anyway) counts as distance 0
    exact = num_buckets // 2
    ratio = distance.float().clamp(min=1) / exact  # clamp: log(0) is never used, but keep it finite
    log_bucket = exact + (torch.log(ratio) / math.log(max_distance / exact) * (num_buckets - exact)).long()
    log_bucket = log_bucket.clamp(max=num_buckets - 1)
    return offset + torch.where(distance < exact, distance, log_bucket)


class RelativePositionBias(nn.Module):
    """b[bucket(j - i), h] for every query i and key j, as an additive attention bias (1, nh, T, S).

    ``weight`` (num_buckets, num_heads) is the learned table (Hugging Face T5's
    ``relative_attention_bias.weight``). ``forward(T, S, offset)``: queries sit at positions
    offset .. offset + T - 1 and keys at 0 .. S - 1, so cached decoding (offset = positions already
    written) gets the same bias as a full pass. T5 computes it in the first layer of each stack and
    every layer adds the same bias.
    """

    def __init__(self, num_buckets: int, num_heads: int, *, max_distance: int = 128, bidirectional: bool = True,
                 device=None, dtype=None):
        super().__init__()
        check(num_buckets >= (4 if bidirectional else 2),
              f"num_buckets must be >= {4 if bidirectional else 2}, got {num_buckets}")
        check(num_heads > 0, f"num_heads must be positive, got {num_heads}")
        exact = (num_buckets // 2 if bidirectional else num_buckets) // 2
        check(max_distance > exact,
              f"max_distance must exceed the {exact} exact buckets, got max_distance={max_distance}")
        self.num_buckets, self.num_heads = num_buckets, num_heads
        self.max_distance, self.bidirectional = max_distance, bidirectional
        self.weight = nn.Parameter(torch.zeros(num_buckets, num_heads, device=device, dtype=dtype))

    def buckets(self, query_length: int, key_length: int, offset: int = 0, device=None) -> torch.Tensor:
        """(T, S) bucket of every (query, key) pair."""
        query = torch.arange(query_length, device=device)[:, None] + offset  # (T, 1)
        key = torch.arange(key_length, device=device)[None, :]  # (1, S)
        return relative_position_bucket(key - query, bidirectional=self.bidirectional,
                                        num_buckets=self.num_buckets, max_distance=self.max_distance)

    def forward(self, query_length: int, key_length: int, offset: int = 0) -> torch.Tensor:
        check(query_length >= 0 and key_length >= 0 and offset >= 0,
              f"lengths and offset must be >= 0, got {query_length}, {key_length}, {offset}")
        b = self.weight[self.buckets(query_length, key_length, offset, self.weight.device)]  # (T, S, nh)
        return b.permute(2, 0, 1).unsqueeze(0)  # (1, nh, T, S)

    def extra_repr(self) -> str:
        return (f"num_buckets={self.num_buckets}, num_heads={self.num_heads}, max_distance={self.max_distance}, "
                f"bidirectional={self.bidirectional}")
