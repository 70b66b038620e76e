"""Layer normalisation (Ba et al. 2016): normalise each example over its features, not over the batch.

    mu      = mean(x)                 over the last dims (normalized_shape)
    sigma^2 = mean((x - mu)^2)        biased variance
    y       = (x - mu) / sqrt(sigma^2 + eps) * gamma + beta

Unlike batch norm, the statistics do not depend on the other examples of the batch nor on the
sequence length, and training and evaluation compute the same function.

The reference path writes out the backward pass too (``LayerNormEquations``): with
x_hat = (x - mu) / sigma and g = dL/dy * gamma, means over the normalised dims,

    dL/dbeta  = sum dL/dy               dL/dgamma = sum dL/dy * x_hat      (sums over every position)
    dL/dx     = (g - mean(g) - x_hat * mean(g * x_hat)) / sigma

(mu and sigma depend on every x of the example: the two means are their share of the gradient).
Left to autograd, the same function takes three times as many passes over the tensor.

RMS norm (Zhang & Sennrich 2019), T5's layer norm, keeps only the rescaling: no mean is
subtracted and there is no bias beta,

    RMS(x) = sqrt(mean(x^2) + eps)
    y      = x / RMS(x) * g
"""

from __future__ import annotations

import numbers

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import check
from archlab.nn.checks import check_input, check_module_type, check_sizes
from archlab.nn.twopath import TwoPath


class LayerNormEquations(torch.autograd.Function):
    """The reference path: y = x_hat * gamma + beta, forward and backward from the module's equations."""

    @staticmethod
    def forward(ctx, x, weight, bias, dims: tuple[int, ...], eps: float):
        mu = x.mean(dim=dims, keepdim=True)
        x_c = x - mu                                           # centred once, used twice
        var = (x_c * x_c).mean(dim=dims, keepdim=True)         # biased, as in the equation
        rstd = torch.rsqrt(var + eps)                          # 1 / sigma = 1 / sqrt(var + eps)
        x_hat = x_c * rstd
        ctx.save_for_backward(x_hat, rstd, weight)
        ctx.dims, ctx.bias_dtype = dims, None if bias is None else bias.dtype
        y = x_hat if weight is None else x_hat * weight
        return y if bias is None else y + bias

    @staticmethod
    def backward(ctx, dy):
        x_hat, rstd, weight = ctx.saved_tensors
        dims = ctx.dims
        positions = tuple(range(dy.dim() - len(dims)))        # every position shares gamma and beta
        d_bias = None if ctx.bias_dtype is None else dy.sum(positions).to(ctx.bias_dtype)
        d_weight = None if weight is None else (dy * x_hat).sum(positions).to(weight.dtype)
        g = dy if weight is None else dy * weight              # dL/dx_hat
        dx = rstd * (g - g.mean(dims, keepdim=True) - x_hat * (g * x_hat).mean(dims, keepdim=True))
        return dx.to(x_hat.dtype), d_weight, d_bias, None, None


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
        return LayerNormEquations.apply(x, self.weight, self.bias, tuple(range(-n, 0)), self.eps)

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


class RMSNorm(TwoPath, nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * g: layer norm without the mean and without a bias (T5).

    A drop-in for ``torch.nn.RMSNorm``: same constructor (``eps=None`` takes the machine epsilon
    of the input's dtype, as torch does), parameter name ``weight`` (g). The mean of squares is
    taken in at least float32, so a bf16/fp16 input is normalised as precisely as T5 does it.
    """

    def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True,
                 device=None, dtype=None):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(n) for n in normalized_shape)
        check(all(n > 0 for n in self.normalized_shape), f"normalized_shape must be positive, got {normalized_shape}")
        check(eps is None or eps > 0, f"eps must be > 0 or None, got {eps}")
        self.eps, self.elementwise_affine = eps, elementwise_affine
        if elementwise_affine:
            self.weight = nn.Parameter(torch.ones(self.normalized_shape, device=device, dtype=dtype))  # g
        else:
            self.register_parameter("weight", None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(self.normalized_shape)
        check(tuple(x.shape[-n:]) == self.normalized_shape,
              f"input's last dims are {tuple(x.shape[-n:])}, RMSNorm expects normalized_shape={self.normalized_shape}")
        if self.impl == "fused":
            # Under autocast the weight stays float32 while x is bf16: one dtype for the kernel.
            w = None if self.weight is None else self.weight.to(x.dtype)
            return F.rms_norm(x, self.normalized_shape, w, self.eps)
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        wide = x.to(torch.promote_types(x.dtype, torch.float32))
        mean_square = wide.square().mean(dim=tuple(range(-n, 0)), keepdim=True)
        y = wide * torch.rsqrt(mean_square + eps)  # x / RMS(x)
        if self.weight is not None:
            y = y * self.weight
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"

    @classmethod
    def from_torch(cls, m: nn.RMSNorm) -> "RMSNorm":
        p = m.weight
        new = cls(m.normalized_shape, eps=m.eps, elementwise_affine=m.elementwise_affine,
                  device=None if p is None else p.device, dtype=None if p is None else p.dtype)
        new.load_state_dict(m.state_dict())
        return new
