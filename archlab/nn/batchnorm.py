"""Batch normalization (Ioffe & Szegedy 2015), per channel, from its equation.

    mean_c = E[x_c],  var_c = Var[x_c]             over the batch and every spatial position
    y      = (x - mean) / sqrt(var + eps) * gamma + beta

``gamma`` and ``beta`` are PyTorch's ``weight`` and ``bias``. In training the batch statistics are
used, and the running statistics move towards them (PyTorch's momentum rule)::

    running_mean = (1 - momentum) * running_mean + momentum * mean
    running_var  = (1 - momentum) * running_var  + momentum * var * n / (n - 1)    # unbiased
    (momentum=None: a cumulative average, momentum = 1 / num_batches_tracked)

In evaluation the running statistics replace the batch ones, so the layer is a fixed affine map.
Normalizing each layer's input stabilises training and tolerates higher learning rates (seed 003).

Drop-ins for ``nn.BatchNorm1d`` / ``nn.BatchNorm2d``: same constructor and state (``weight``,
``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked``). ``impl = "fused"`` (default)
calls ``F.batch_norm``; ``impl = "reference"`` runs the equations above.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from archlab.errors import check
from archlab.nn.checks import check_input, check_module_type, check_sizes
from archlab.nn.twopath import TwoPath

__all__ = ["BatchNorm1d", "BatchNorm2d", "batch_norm_reference"]


def batch_norm_reference(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """The equations of the module docstring for ``x`` of shape (B, C, *spatial); updates ``bn``'s buffers."""
    use_batch_stats = bn.training or bn.running_mean is None
    dims = [d for d in range(x.dim()) if d != 1]  # every axis but the channel axis
    shape = [1, -1] + [1] * (x.dim() - 2)  # per-channel values broadcast as (1, C, 1, ...)
    # Statistics in at least float32: under bf16 autocast the input may be bf16.
    xf = x.to(torch.promote_types(x.dtype, torch.float32))

    if use_batch_stats:
        n = x.numel() // x.shape[1]  # values per channel
        mean = xf.mean(dim=dims)  # (C,)
        x_c = xf - mean.view(shape)  # centred once, used for the variance and for x_hat
        var = (x_c * x_c).mean(dim=dims)  # (C,) the biased variance normalizes
        if bn.training and bn.track_running_stats:
            with torch.no_grad():
                bn.num_batches_tracked.add_(1)
                momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
                bn.running_mean.mul_(1 - momentum).add_(momentum * mean.detach().to(bn.running_mean.dtype))
                bn.running_var.mul_(1 - momentum).add_(momentum * var.detach().to(bn.running_var.dtype) * n / (n - 1))
    else:
        mean, var = bn.running_mean, bn.running_var
        x_c = xf - mean.view(shape)

    x_hat = x_c * torch.rsqrt(var.view(shape) + bn.eps)  # (x - mean) / sqrt(var + eps)
    y = x_hat * bn.weight.view(shape) + bn.bias.view(shape) if bn.affine else x_hat
    return y.to(x.dtype)


class _BatchNorm(TwoPath):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, *args, **kwargs):
        name = type(self).__name__
        check_sizes(name, num_features=num_features)
        check(isinstance(eps, (int, float)) and eps > 0, f"{name}: eps must be > 0, got {eps!r}")
        check(momentum is None or (isinstance(momentum, (int, float)) and 0.0 <= momentum <= 1.0),
              f"{name}: momentum must be in [0, 1] or None (a cumulative average), got {momentum!r}")
        super().__init__(num_features, eps, momentum, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, type(self).__name__, self.weight if self.affine else self.running_mean)
        self._check_input_dim(x)
        check(
            x.shape[1] == self.num_features,
            f"input has {x.shape[1]} channels, {type(self).__name__} expects num_features={self.num_features}",
        )
        if self.training:
            check(
                x.numel() // x.shape[1] > 1,
                f"{type(self).__name__} needs more than 1 value per channel in training, got input shape "
                f"{tuple(x.shape)}",
            )
        if self.impl == "fused":
            return super().forward(x)
        return batch_norm_reference(self, x)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        check(
            x.dim() in self._dims,
            f"{type(self).__name__} expects a {' or '.join(f'{d}-D' for d in self._dims)} input, "
            f"got shape {tuple(x.shape)}",
        )

    @classmethod
    def from_torch(cls, m: nn.modules.batchnorm._BatchNorm):
        check_module_type(cls, m, nn.BatchNorm2d if issubclass(cls, nn.BatchNorm2d) else nn.BatchNorm1d)
        new = cls(
            m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
            track_running_stats=m.track_running_stats, device=_device_of(m), dtype=_dtype_of(m),
        )
        new.load_state_dict(m.state_dict())
        return new.train(m.training)


def _tensor_of(m) -> torch.Tensor | None:
    """A parameter or buffer of ``m``, to copy its device and dtype (None for an empty module)."""
    return next(iter(m.parameters()), m.running_mean)


def _device_of(m):
    t = _tensor_of(m)
    return None if t is None else t.device


def _dtype_of(m):
    t = _tensor_of(m)
    return None if t is None else t.dtype


class BatchNorm2d(_BatchNorm, nn.BatchNorm2d):
    """Batch norm over (B, C, H, W) feature maps: statistics per channel over B, H and W."""

    _dims = (4,)


class BatchNorm1d(_BatchNorm, nn.BatchNorm1d):
    """Batch norm over (B, C) features or (B, C, T) sequences: statistics per channel over B (and T)."""

    _dims = (2, 3)
