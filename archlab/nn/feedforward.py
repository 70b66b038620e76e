"""The position-wise feed-forward network of a Transformer block (Vaswani et al. 2017, eq. 2).

    FFN(x) = Dropout(W_2 Dropout(act(W_1 x + b_1)) + b_2),   act = ReLU (2017) or GELU (BERT, GPT, ViT)

Applied to every position separately: the d_model -> d_ff -> d_model expansion is where a
Transformer block spends most of its parameters.
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
