"""Layer normalisation (Ba et al. 2016): normalise each example over its features, not over the batch.

    mu      = mean(x)                 over the last dims (normalized_shape)
    sigma^2 = mean((x - mu)^2)        biased variance
    y       = (x - mu) / sqrt(sigma^2 + eps) * gamma + beta

Unlike batch norm, the statistics do not depend on the other examples of the batch nor on the
sequence length, and training and evaluation compute the same function.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import check
from archlab.nn.checks import check_input, check_module_type, check_sizes
from archlab.nn.twopath import TwoPath


class LayerNorm(TwoPath, nn.Module):
    """A drop-in for ``torch.nn.LayerNorm``: same constructor, parameter names ``weight`` (gamma), ``bias`` (beta)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        check_sizes("LayerNorm", normalized_shape=tuple(normalized_shape) if isinstance(normalized_shape, (tuple, list, torch.Size)) else normalized_shape)
        self.normalized_shape = tuple(int(n) for n in normalized_shape)
        check(isinstance(eps, (int, float)) and eps > 0, f"LayerNorm: eps must be > 0, got {eps!r}")
        self.eps, self.elementwise_affine = eps, elementwise_affine
        factory = {"device": device, "dtype": dtype}
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape, **factory))  # gamma
            if bias:
                self.bias = nn.Parameter(torch.zeros(self.normalized_shape, **factory))  # beta
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, "LayerNorm", self.weight)
        n = len(self.normalized_shape)
        check(tuple(x.shape[-n:]) == self.normalized_shape,
              f"input's last dims are {tuple(x.shape[-n:])}, "
              f"LayerNorm expects normalized_shape={self.normalized_shape}")
        if self.impl == "fused":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        dims = tuple(range(-n, 0))
        mu = x.mean(dim=dims, keepdim=True)
        var = ((x - mu) ** 2).mean(dim=dims, keepdim=True)  # biased, as in the equation
        y = (x - mu) / torch.sqrt(var + self.eps)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"

    @classmethod
    def from_torch(cls, m: nn.LayerNorm) -> "LayerNorm":
        check_module_type(cls, m, nn.LayerNorm)
        p = m.weight
        new = cls(m.normalized_shape, eps=m.eps, elementwise_affine=m.elementwise_affine,
                  bias=getattr(m, "bias", None) is not None,
                  device=None if p is None else p.device, dtype=None if p is None else p.dtype)
        new.load_state_dict(m.state_dict())
        return new
