"""The position-wise feed-forward network of a Transformer block (Vaswani et al. 2017, eq. 2).

    FFN(x) = Dropout(W_2 Dropout(act(W_1 x + b_1)) + b_2),   act = ReLU (2017) or GELU (BERT, GPT, ViT)

Applied to every position separately: the d_model -> d_ff -> d_model expansion is where a
Transformer block spends most of its parameters.

The gated variant (Shazeer 2020, "GLU Variants Improve Transformer"; T5 v1.1 uses GEGLU) multiplies
the activated branch by a second, linear one, and has no biases:

    FFN_GEGLU(x) = Dropout((GELU(x W_1) * x V) W_2)
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from archlab.errors import check
from archlab.nn.activations import ACTIVATIONS, make_activation  # noqa: F401  (re-exported)
from archlab.nn.checks import check_input, check_sizes


class FeedForward(nn.Sequential):
    """Linear(d_model, d_ff) -> act -> Dropout -> Linear(d_ff, d_model) -> Dropout.

    A ``Sequential``: parameters are ``0.weight``, ``0.bias``, ``3.weight``, ``3.bias``, the names
    of torchvision's ViT MLP block.
    """

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float = 0.0,
                 activation: str | nn.Module | Callable = "gelu", bias: bool = True, device=None, dtype=None):
        check_sizes("FeedForward", d_model=d_model, dim_feedforward=dim_feedforward)
        check(0.0 <= dropout < 1.0, f"dropout must be in [0, 1), got {dropout}")
        factory = {"device": device, "dtype": dtype}
        super().__init__(
            nn.Linear(d_model, dim_feedforward, bias=bias, **factory),  # W_1, b_1
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(dim_feedforward, d_model, bias=bias, **factory),  # W_2, b_2
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, "FeedForward", self.W_1.weight)
        return super().forward(x)

    @property
    def W_1(self) -> nn.Linear:
        return self[0]

    @property
    def W_2(self) -> nn.Linear:
        return self[3]


class GatedFeedForward(nn.Module):
    """FFN(x) = Dropout((act(x W_1) * x V) W_2), no biases: GEGLU with act = GELU (T5 v1.1).

    ``W_1`` is the activated branch, ``V`` the linear gate it is multiplied with (Shazeer's names),
    ``W_2`` the projection back to d_model. Dropout sits after the product, as in T5, and after
    ``W_2``.
    """

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float = 0.0,
                 activation: str | nn.Module | Callable = "gelu_tanh", device=None, dtype=None):
        super().__init__()
        check(d_model > 0, f"d_model must be positive, got {d_model}")
        check(dim_feedforward > 0, f"dim_feedforward must be positive, got {dim_feedforward}")
        check(0.0 <= dropout < 1.0, f"dropout must be in [0, 1), got {dropout}")
        factory = {"device": device, "dtype": dtype}
        self.W_1 = nn.Linear(d_model, dim_feedforward, bias=False, **factory)
        self.V = nn.Linear(d_model, dim_feedforward, bias=False, **factory)
        self.W_2 = nn.Linear(dim_feedforward, d_model, bias=False, **factory)
        self.activation = make_activation(activation)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.activation(self.W_1(x)) * self.V(x)  # (..., d_ff): the gated hidden layer
        return self.dropout(self.W_2(self.dropout(h)))
