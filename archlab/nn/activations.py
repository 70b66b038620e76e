"""The activation functions every block and model picks from, by name: one table.

    relu(x)      = max(0, x)                                    AlexNet, VGG, ResNet, the 2017 Transformer
    gelu(x)      = x * Phi(x)                                   BERT, ViT (Phi: the normal CDF)
    gelu_tanh(x) = x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   GPT-2's "gelu_new"
    silu(x)      = x * sigmoid(x)                               EfficientNet ("swish")
    sigmoid(x)   = 1 / (1 + e^-x)                               squeeze-excitation gates
    tanh(x)                                                      LeNet-5, Elman RNNs
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from archlab.errors import check

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": nn.SiLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
}

# Hugging Face's names (config.json's hidden_act / activation_function) -> ours.
HF_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                  "silu": "silu", "swish": "silu", "tanh": "tanh"}


def check_activation(name: str, also: str = "") -> None:
    """ConfigError unless ``name`` is in ``ACTIVATIONS`` (``also``: what else the caller accepts)."""
    check(isinstance(name, str) and name in ACTIVATIONS,
          f"activation must be one of {sorted(ACTIVATIONS)}{also}, got {name!r}")


def make_activation(activation: str | nn.Module | Callable) -> nn.Module:
    """An activation module from a name in ``ACTIVATIONS``, a module, or a function of one tensor."""
    if isinstance(activation, nn.Module):
        return activation
    if isinstance(activation, str):
        check_activation(activation, " (or a module, or a callable)")
        return ACTIVATIONS[activation]()
    check(callable(activation), f"activation must be one of {sorted(ACTIVATIONS)} or a callable, got {activation!r}")
    return _Lambda(activation)


class _Lambda(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)
