"""Positional information for attention, which by itself is blind to word order.

Sinusoidal encoding (Vaswani et al. 2017, section 3.5), fixed, no parameters:

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

Learned positional embedding (GPT, BERT): a trainable vector P[pos] per position.

Both add the encoding of positions ``offset .. offset + T - 1`` to x (B, T, d_model); ``offset`` is
the number of positions already processed, so cached decoding places a new token correctly.
"""

from __future__ import annotations


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
