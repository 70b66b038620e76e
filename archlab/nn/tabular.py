"""A table row as vectors: embeddings of categorical columns, and the FT-Transformer's feature tokens.

Dimension letters: B batch, n numeric columns, m categorical columns, k = n + m features, d width.

``CategoricalEmbedding``: categorical column j with K_j codes has its own table E_j (K_j x d);
code c_j picks row c_j. All tables are stored in one (sum_j K_j) x d matrix, table j starting at
offset_j = K_1 + ... + K_{j-1}, so one lookup serves every column::

    e_j = E[offset_j + c_j]                              (B, m, d)

``FeatureTokenizer`` (Gorishniy et al. 2021, "Revisiting Deep Learning Models for Tabular Data",
eq. 1): every feature becomes one d-dimensional token, whatever its type::

    numerical x_j     T_j = b_j + x_j W_j                 W_j, b_j in R^d
    categorical c_j   T_j = b_j + e_{c_j}^T W_j           W_j in R^{K_j x d}, a lookup table
    T = stack(T_1, ..., T_k)                              (B, k, d)

Weights and biases start uniform in [-1/sqrt(d), 1/sqrt(d)], as in the paper.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from archlab.errors import check


class CategoricalEmbedding(nn.Module):
    """Codes (B, m) of m categorical columns -> their embeddings (B, m, d)."""

    def __init__(self, cardinalities: tuple[int, ...], embed_dim: int, device=None, dtype=None):
        super().__init__()
        check(all(k >= 1 for k in cardinalities), f"every cardinality must be >= 1, got {tuple(cardinalities)}")
        check(embed_dim > 0, f"embed_dim must be positive, got {embed_dim}")
        self.cardinalities = tuple(int(k) for k in cardinalities)
        offsets = torch.tensor((0, *self.cardinalities[:-1]), device=device).cumsum(0) if cardinalities \
            else torch.zeros(0, dtype=torch.long, device=device)
        self.register_buffer("offsets", offsets, persistent=False)
        self.weight = nn.Parameter(torch.empty(sum(self.cardinalities), embed_dim, device=device, dtype=dtype))
        bound = 1 / math.sqrt(embed_dim)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        m = len(self.cardinalities)
        check(codes.dim() == 2 and codes.shape[1] == m,
              f"expected category codes of shape (batch, {m}), got {tuple(codes.shape)}")
        if codes.numel():
            limits = torch.tensor(self.cardinalities, device=codes.device)
            check(bool(((codes >= 0) & (codes < limits)).all()),
                  f"category codes must be in 0..K_j - 1 for cardinalities {self.cardinalities}")
        return self.weight[codes + self.offsets]  # (B, m, d)


class FeatureTokenizer(nn.Module):
    """(x_num (B, n), x_cat (B, m)) -> tokens T (B, n + m, d): one per feature (module docstring)."""

    def __init__(self, num_numeric: int, cardinalities: tuple[int, ...], d_token: int, device=None, dtype=None):
        super().__init__()
        check(num_numeric >= 0, f"num_numeric must be >= 0, got {num_numeric}")
        check(num_numeric + len(cardinalities) > 0, "a table needs at least one feature column, got none")
        factory = {"device": device, "dtype": dtype}
        bound = 1 / math.sqrt(d_token)
        self.num_numeric = num_numeric
        self.W_num = nn.Parameter(torch.empty(num_numeric, d_token, **factory).uniform_(-bound, bound))  # W_j
        self.W_cat = CategoricalEmbedding(cardinalities, d_token, **factory) if cardinalities else None
        self.bias = nn.Parameter(torch.empty(num_numeric + len(cardinalities), d_token, **factory).uniform_(-bound, bound))

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        check(x_num.dim() == 2 and x_num.shape[1] == self.num_numeric,
              f"expected numeric features of shape (batch, {self.num_numeric}), got {tuple(x_num.shape)}")
        tokens = [x_num[:, :, None] * self.W_num[None]]  # x_j W_j: (B, n, 1) * (1, n, d) -> (B, n, d)
        if self.W_cat is not None:
            tokens.append(self.W_cat(x_cat))  # e_{c_j}^T W_j: (B, m, d)
        return torch.cat(tokens, dim=1) + self.bias[None]  # (B, k, d)
