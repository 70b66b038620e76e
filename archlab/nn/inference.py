"""Inference on a CPU: a linear layer whose weight is packed once, with its activation fused.

    y = act(x W^T + b)

``F.linear`` hands the weight to the matrix-product kernel in its stored (out, in) layout on every
call, and the kernel first copies it into the blocked layout it reads. When no gradient is wanted
the weight does not change between calls, so oneDNN's blocked copy can be made once and kept
(what ``torch.compile``'s freezing does on a CPU), and the activation that follows -- ReLU or GELU
-- can run inside the same kernel, on each tile of ``y`` while it is still in cache. Same function
as ``act(F.linear(x, W, b))`` to rounding; used for fp32 and bf16 on a CPU whose torch has oneDNN,
only without gradients; every other call is ``F.linear`` and the activation module.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn as nn
import torch.nn.functional as F

# The fused activations: (module type, its ``approximate``) -> oneDNN's post-op and its algorithm.
_FUSED = {(nn.ReLU, None): ("relu", ""), (nn.GELU, "none"): ("gelu", "none"), (nn.GELU, "tanh"): ("gelu", "tanh")}
_PACKED: dict[int, tuple] = {}  # id(W) -> (weak reference to W, what W was when packed, packed W)


def _onednn() -> bool:
    ops = torch.ops.mkldnn
    return (torch.backends.mkldnn.is_available() and hasattr(ops, "_linear_pointwise")
            and hasattr(ops, "_reorder_linear_weight"))


ONEDNN = _onednn()


def _post_op(activation: nn.Module | None) -> tuple[str, str] | None:
    if activation is None:
        return "none", ""
    return _FUSED.get((type(activation), getattr(activation, "approximate", None)))


def _packed(weight: torch.Tensor) -> torch.Tensor:
    """oneDNN's blocked copy of ``weight``, made again whenever the weight changes (in place or moved)."""
    key = (weight._version, weight.data_ptr(), weight.dtype)
    found = _PACKED.get(id(weight))
    if found is None or found[0]() is not weight or found[1] != key:
        forget = weakref.ref(weight, lambda _, i=id(weight): _PACKED.pop(i, None))  # dropped with the weight
        found = (forget, key, torch.ops.mkldnn._reorder_linear_weight(weight.detach(), None))
        _PACKED[id(weight)] = found
    return found[2]


def no_gradient_wanted(*tensors: torch.Tensor | None) -> bool:
    """True when autograd will record nothing for these tensors: grad mode off, or none requires grad."""
    return not torch.is_grad_enabled() or not any(t is not None and t.requires_grad for t in tensors)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
           activation: nn.Module | None = None, fused: bool = True) -> torch.Tensor:
    """``activation(F.linear(x, weight, bias))`` for ``x`` (N, in); packed and fused where it pays
    (``fused=False``: never, the readable path's choice)."""
    post = _post_op(activation)
    if (not (fused and ONEDNN) or post is None or not no_gradient_wanted(x, weight, bias)
            or x.device.type != "cpu" or x.dim() != 2
            or x.dtype not in (torch.float32, torch.bfloat16) or weight.dtype != x.dtype
            or (bias is not None and bias.dtype != x.dtype)):
        y = F.linear(x, weight, bias)
        return y if activation is None else activation(y)
    attr, algorithm = post
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), _packed(weight), bias, attr, [], algorithm)
