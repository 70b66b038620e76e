"""Convolution and pooling, written as the texts describe them: a window slid over the input.

Convolution (one filter per output channel, the same weights at every position: weight sharing)::

    feature_map[b, o, i, j] = bias[o] + sum_{c, u, v} W[o, c, u, v] * x[b, c, i*s + u*d, j*s + v*d]

The reference path takes that sum one kernel tap ``(u, v)`` at a time. Through tap ``(u, v)``
every output position sees the input shifted by ``(u*d, v*d)`` and read every ``s`` cells -- a
strided view of the (padded) input -- and the sum over the input channels ``c`` is one matrix
product (the channels read last, so it is one product for all positions)::

    x_uv        = x[:, :, u*d :: s, v*d :: s]        # (B, C_in, H_out, W_out)  the map under tap (u, v)
    feature_map = b + sum_{u, v} W[:, :, u, v] . x_uv  # (B, C_out, H_out, W_out)

(``im2col`` -- ``F.unfold`` -- would copy all kh*kw shifted maps into one matrix first; summing the
taps reads the input in place, and its backward pass needs no ``fold``.) With stride 1 and one group
the shifted maps are blocks of one list of pixels, so each tap is a single product with no copy
(``_ShiftedPixels``). With ``groups`` the
channels split into G independent convolutions, each its own matrix product; depthwise (one input
channel per filter) the product is a per-channel scale, ``W[c, 0, u, v] * x_uv[:, c]``, summed a few
images at a time so that the map the taps add into stays in the cache, with its backward pass
written out from the same sum (``_DepthwiseTaps``). Output size per spatial dim:
``H_out = floor((H + pad_total - d*(k-1) - 1)/s) + 1``.

Pooling downsamples a feature map with a fixed rule per window: max pooling keeps the largest value,
average pooling the mean. Adaptive pooling picks the windows so that the output has a given size:
output cell ``i`` of ``n_out`` covers input rows ``floor(i*n_in/n_out) .. ceil((i+1)*n_in/n_out) - 1``;
global pooling is the adaptive pool to 1x1.

Every class here is a drop-in for its ``torch.nn`` namesake (same constructor, parameter names
``weight``/``bias``, forward signature), so torchvision state_dicts load unchanged. ``impl =
"fused"`` (default) calls PyTorch's kernel; ``impl = "reference"`` runs the readable path above.

Dimension letters: B batch, C channels, G groups, H/W height/width, L output positions,
K = (C_in/G)*kh*kw values in one receptive field.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import ConfigError, check
from archlab.nn.checks import _autocast_on, check_input, check_module_type, check_sizes, torch_class
from archlab.nn.twopath import TwoPath

__all__ = [
    "Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
    "conv2d_reference", "unfold_windows",
]


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _check_image(x: torch.Tensor, module: nn.Module, spatial_dims: int, channels: int | None = None) -> bool:
    """Validate a (B, C, *spatial) or unbatched (C, *spatial) input; returns True when batched."""
    name = type(module).__name__
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"{name}: input must be a torch.Tensor, got {type(x).__name__}")
    check(
        x.dim() in (spatial_dims + 1, spatial_dims + 2),
        f"{name} expects a {spatial_dims + 2}-D (batched) or {spatial_dims + 1}-D (unbatched) input, "
        f"got shape {tuple(x.shape)}",
    )
    batched = x.dim() == spatial_dims + 2
    if channels is not None:
        c = x.shape[1 if batched else 0]
        check(c == channels, f"input has {c} channels, {name} expects in_channels={channels}")
    return batched


def unfold_windows(x: torch.Tensor, kernel_size, dilation, stride) -> torch.Tensor:
    """Every window of an already padded (B, C, H, W) map: (B, C, kh*kw, L) with L = H_out*W_out."""
    B, C = x.shape[:2]
    kh, kw = kernel_size
    cols = F.unfold(x, kernel_size, dilation=dilation, stride=stride)  # (B, C*kh*kw, L)
    return cols.view(B, C, kh * kw, -1)  # (B, C, kh*kw, L)


def _out_size(n: int, k: int, s: int, d: int) -> int:
    """Positions of a kernel k (dilation d, stride s) over n already padded cells."""
    return (n - d * (k - 1) - 1) // s + 1


# ----------------------------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------------------------


def conv2d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    groups: int,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """feature_map = b + sum over the taps (u, v) of W[:, :, u, v] . x_uv, for a (B, C_in, H, W) input.

    ``padding`` is explicit per side, in ``F.pad`` order: (left, right, top, bottom).
    """
    C_out, C_g, kh, kw = weight.shape  # C_g = C_in / groups input channels seen by each filter
    depthwise, shifted = C_g == 1, groups == 1 and tuple(stride) == (1, 1)
    if any(padding) and not ((depthwise or shifted) and padding_mode == "zeros"):  # (those place zeros themselves)
        mode = "constant" if padding_mode == "zeros" else padding_mode
        x, padding = F.pad(x, padding, mode=mode), (0, 0, 0, 0)
    B, C_in, H, W = x.shape
    left, right, top, bottom = padding
    G = groups
    (sh, sw), (dh, dw) = stride, dilation
    H_out = _out_size(H + top + bottom, kh, sh, dh)
    W_out = _out_size(W + left + right, kw, sw, dw)
    check(
        H_out > 0 and W_out > 0,
        f"input of padded size {H + top + bottom}x{W + left + right} is smaller than the dilated kernel "
        f"{dh * (kh - 1) + 1}x{dw * (kw - 1) + 1}",
    )
    rows = tap_spans(H, H_out, kh, sh, dh, top)   # per u: (output rows, the input rows they read)
    cols = tap_spans(W, W_out, kw, sw, dw, left)  # per v: (output columns, input columns)

    O_g = C_out // G                                 # filters per group
    W_g = weight.view(G, O_g, C_g, kh, kw)           # the filters of each group
    if depthwise:  # each filter scales its own input channel
        dtype = _matmul_dtype(x)  # the products run where a convolution would (bf16 under autocast)
        b = None if bias is None else bias.to(dtype).view(G, O_g)
        feature_map = _DepthwiseTaps.apply(x.to(dtype), W_g[:, :, 0].to(dtype), b, rows, cols, (H_out, W_out))
        return feature_map.reshape(B, C_out, H_out, W_out)                  # (B, C_out, H_out, W_out)

    if shifted:  # the common case: the taps are shifts of one list of pixels
        dtype = _matmul_dtype(x)
        feature_map = _ShiftedPixels.apply(x.to(dtype), weight.to(dtype), padding, dilation)
    else:
        x_g = x.view(B, G, C_g, H, W).permute(0, 1, 3, 4, 2)  # channels last, a view: (B, G, H, W, C_g)
        feature_map = None
        for u, (_, rows_u) in enumerate(rows):
            for v, (_, cols_v) in enumerate(cols):
                x_uv = x_g[:, :, rows_u, cols_v, :]                         # (B, G, H_out, W_out, C_g)
                W_uv = W_g[:, :, :, u, v].transpose(1, 2)                   # (G, C_g, O_g)
                # The sum over c is one matrix product for all B*H_out*W_out positions (one per group).
                term = x_uv @ (W_uv[0] if G == 1 else W_uv[:, None])        # (B, G, H_out, W_out, O_g)
                feature_map = term if feature_map is None else feature_map.add_(term)
        # Channels back in front, in memory too (as every other layer returns them).
        feature_map = feature_map.permute(0, 1, 4, 2, 3).contiguous()       # (B, G, O_g, H_out, W_out)
        feature_map = feature_map.reshape(B, C_out, H_out, W_out)           # (B, C_out, H_out, W_out)
    if bias is not None:
        feature_map = feature_map + bias.to(feature_map.dtype).view(1, C_out, 1, 1)
    return feature_map


def tap_spans(n_in: int, n_out: int, k: int, s: int, d: int, pad: int) -> list[tuple[slice, slice]]:
    """Along one spatial dim, per kernel offset u: (outputs, inputs). Output i reads input
    ``i*s + u*d - pad``; ``outputs`` are the i for which that lies inside the input (the others
    read zero padding), ``inputs`` what they read, a strided slice. Unpadded: all n_out outputs."""
    spans = []
    for u in range(k):
        offset = u * d - pad
        first = max(0, -(offset // s))                  # the first i with i*s + offset >= 0
        stop = min(n_out, (n_in - offset + s - 1) // s)  # past the last i with i*s + offset < n_in
        stop = max(first, stop)
        spans.append((slice(first, stop), slice(first * s + offset, max(0, (stop - 1) * s + offset + 1), s)))
    return spans


class _ShiftedPixels(torch.autograd.Function):
    """Stride 1, one group: ``feature_map = sum_{u, v} x_uv . W[:, :, u, v]`` with each tap one matrix product.

    Lay the zero-padded batch out channels last as one list of pixels, ``X`` (B*Hp*Wp, C_in), row by
    row. Output pixel (b, i, j) reads, through tap (u, v), input pixel (b, i + u*d, j + v*d): the same
    list ``u*d*Wp + v*d`` rows further on. So tap (u, v) is ONE matrix product of a contiguous block
    of rows of ``X`` with ``W[:, :, u, v]^T`` (C_in, C_out), added to the output list, for every pixel
    of the batch at once; the output's rows at the padding columns and rows (where a shifted read
    wraps past a row's end) are computed and cut away, a few percent more products than needed.
    The backward pass reads the same products the other way::

        dL/dX[rows + shift]  += dL/dY[rows] . W[:, :, u, v]         (C_out -> C_in)
        dL/dW[:, :, u, v]     = (X[rows + shift]^T . dL/dY[rows])^T  (summed over every pixel)
    """

    @staticmethod
    def forward(ctx, x, weight, padding, dilation):
        (B, C_in, H, W), (C_out, _, kh, kw) = x.shape, weight.shape
        (left, right, top, bottom), (dh, dw) = padding, dilation
        Hp, Wp = H + top + bottom, W + left + right
        X = x.new_zeros(B, Hp, Wp, C_in)                                   # padded, channels last
        X[:, top:top + H, left:left + W] = x.permute(0, 2, 3, 1)
        X = X.view(-1, C_in)                                               # (N, C_in): one list of pixels
        N = X.size(0)
        Y = x.new_zeros(N, C_out)
        W_t = weight.permute(2, 3, 1, 0)                                   # (kh, kw, C_in, C_out)
        for u in range(kh):
            for v in range(kw):
                shift = u * dh * Wp + v * dw
                Y[:N - shift].addmm_(X[shift:], W_t[u, v])
        H_out, W_out = Hp - dh * (kh - 1), Wp - dw * (kw - 1)
        ctx.save_for_backward(X, weight)
        ctx.geometry = (x.shape, padding, dilation, (Hp, Wp), (H_out, W_out))
        Y = Y.view(B, Hp, Wp, C_out)[:, :H_out, :W_out]                    # cut the wrapped pixels away
        return Y.permute(0, 3, 1, 2).contiguous()                          # (B, C_out, H_out, W_out)

    @staticmethod
    def backward(ctx, grad_map):
        X, weight = ctx.saved_tensors
        (B, C_in, H, W), (left, _, top, _), (dh, dw), (Hp, Wp), (H_out, W_out) = ctx.geometry
        C_out, _, kh, kw = weight.shape
        N = X.size(0)
        G = grad_map.new_zeros(B, Hp, Wp, C_out)                           # zero at the cut pixels
        G[:, :H_out, :W_out] = grad_map.permute(0, 2, 3, 1)
        G = G.view(-1, C_out)
        grad_X = X.new_zeros(N, C_in)
        grad_W = weight.new_empty(kh, kw, C_out, C_in)
        for u in range(kh):
            for v in range(kw):
                shift = u * dh * Wp + v * dw
                grad_X[shift:].addmm_(G[:N - shift], weight[:, :, u, v])
                grad_W[u, v] = G[:N - shift].t() @ X[shift:]
        grad_x = grad_X.view(B, Hp, Wp, C_in)[:, top:top + H, left:left + W].permute(0, 3, 1, 2).contiguous()
        return grad_x, grad_W.permute(2, 3, 0, 1).contiguous(), None, None


class _DepthwiseTaps(torch.autograd.Function):
    """Depthwise: ``feature_map[b, c, o] = bias[c, o] + sum_{u, v} W[c, o, u, v] * x_uv[b, c]``.

    ``x`` is (B, C, H, W), ``W`` (C, O_g, kh, kw): O_g filters per channel; ``rows``/``cols`` from
    ``tap_spans``. Each tap adds into the outputs whose input lies inside the image, so the zero
    padding is never materialised. A few images at a time, the maps all kh*kw taps add into stay
    in the cache (the whole batch at once would stream through memory once per tap). The backward
    pass is the same sum read the other way::

        dL/dx_uv[b, c]    += W[c, o, u, v] * dL/dfeature_map[b, c, o]  each tap hands its share back
                                                                       to the inputs it read
        dL/dW[c, o, u, v]  = sum_{b, i, j} dL/dfeature_map[b, c, o, i, j] * x_uv[b, c, i, j]
        dL/dbias[c, o]     = sum_{b, i, j} dL/dfeature_map[b, c, o, i, j]
    """

    CHUNK_BYTES = 2 << 20  # input bytes per chunk of images: about what a core's cache holds

    @staticmethod
    def chunks(x: torch.Tensor) -> list[slice]:
        n = max(1, _DepthwiseTaps.CHUNK_BYTES // max(1, x[0].numel() * x.element_size()))
        return [slice(b, b + n) for b in range(0, x.shape[0], n)]

    @staticmethod
    def taps(weight, rows, cols):
        """(o, u, v, W[:, o, u, v] as a (C, 1, 1) scale, output rows, output cols, input rows, input cols)."""
        C, O_g = weight.shape[:2]
        for o in range(O_g):
            for u, (out_rows, in_rows) in enumerate(rows):
                for v, (out_cols, in_cols) in enumerate(cols):
                    yield o, u, v, weight[:, o, u, v].view(C, 1, 1), out_rows, out_cols, in_rows, in_cols

    @staticmethod
    def forward(ctx, x, weight, bias, rows, cols, size):
        (B, C), O_g = x.shape[:2], weight.shape[1]
        feature_map = x.new_empty(B, C, O_g, *size)
        if bias is None:
            feature_map.zero_()
        else:
            feature_map.copy_(bias.view(1, C, O_g, 1, 1).expand_as(feature_map))
        for images in _DepthwiseTaps.chunks(x):
            for o, u, v, W_uv, out_rows, out_cols, in_rows, in_cols in _DepthwiseTaps.taps(weight, rows, cols):
                feature_map[images, :, o, out_rows, out_cols].addcmul_(x[images, :, in_rows, in_cols], W_uv)
        ctx.save_for_backward(x, weight)
        ctx.spans, ctx.has_bias = (rows, cols), bias is not None
        return feature_map

    @staticmethod
    def backward(ctx, grad_map):
        x, weight = ctx.saved_tensors
        rows, cols = ctx.spans
        grad_x = torch.zeros_like(x) if ctx.needs_input_grad[0] else None
        acc = torch.promote_types(weight.dtype, torch.float32)  # the sums over the batch: fp32 at least
        grad_W = torch.zeros(weight.shape, dtype=acc, device=weight.device)
        for images in _DepthwiseTaps.chunks(x):
            for o, u, v, W_uv, out_rows, out_cols, in_rows, in_cols in _DepthwiseTaps.taps(weight, rows, cols):
                g = grad_map[images, :, o, out_rows, out_cols]
                x_uv = x[images, :, in_rows, in_cols]
                if grad_x is not None:
                    grad_x[images, :, in_rows, in_cols].addcmul_(g, W_uv)
                grad_W[:, o, u, v] += (g * x_uv).sum((0, 2, 3), dtype=acc)
        grad_bias = grad_map.sum((0, 3, 4), dtype=acc).to(weight.dtype) if ctx.has_bias else None
        return grad_x, grad_W.to(weight.dtype), grad_bias, None, None, None


def _matmul_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a matrix product (or convolution) of ``x`` computes in: autocast's, when it is on."""
    if not _autocast_on(x):
        return x.dtype
    if hasattr(torch, "get_autocast_dtype"):
        return torch.get_autocast_dtype(x.device.type)
    return torch.get_autocast_cpu_dtype() if x.device.type == "cpu" else torch.get_autocast_gpu_dtype()


def _explicit_padding(module) -> tuple[int, ...]:
    """The module's padding per side in ``F.pad`` order (last dim first), resolving 'same'/'valid'."""
    if isinstance(module.padding, str):
        pads = []
        for k, d in zip(module.kernel_size, module.dilation):
            if module.padding == "valid":
                pads.append((0, 0))
            else:  # "same": total d*(k-1); the odd one out goes after, as in PyTorch
                total = d * (k - 1)
                pads.append((total // 2, total - total // 2))
    else:
        pads = [(p, p) for p in module.padding]
    return tuple(v for lo_hi in reversed(pads) for v in lo_hi)


def _bound_args(module, args, kwargs) -> dict:
    """The constructor's arguments by name, as the torch class it derives from names them."""
    init = torch_class(module).__init__
    try:
        bound = inspect.signature(init).bind(module, *args, **kwargs)
    except TypeError as e:
        raise TypeError(f"{type(module).__name__}: {e}") from None
    bound.apply_defaults()
    return bound.arguments


class _Conv(TwoPath):
    """What Conv1d and Conv2d share: the constructor's checks and the input check both paths run first."""

    def __init__(self, *args, **kwargs):
        a, name = _bound_args(self, args, kwargs), type(self).__name__
        check_sizes(name, in_channels=a["in_channels"], out_channels=a["out_channels"],
                    kernel_size=a["kernel_size"], stride=a["stride"], dilation=a["dilation"], groups=a["groups"])
        if not isinstance(a["padding"], str):
            check_sizes(name, minimum=0, padding=a["padding"])
        super().__init__(*args, **kwargs)

    def _check_input(self, x: torch.Tensor) -> bool:
        """ConfigError for a wrong rank, channel count, dtype or an input smaller than the kernel; True if batched."""
        spatial = len(self.kernel_size)
        batched = _check_image(x, self, spatial, self.in_channels)
        check_input(x, type(self).__name__, self.weight)
        pads = _explicit_padding(self)[::-1]  # (hi, lo) per dim, first spatial dim first
        sizes = tuple(x.shape[-spatial:])
        padded = tuple(n + pads[2 * i] + pads[2 * i + 1] for i, n in enumerate(sizes))
        kernel = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))
        check(
            all(n >= k for n, k in zip(padded, kernel)),
            f"input of spatial size {sizes} (padded {padded}) is smaller than the dilated kernel {kernel} "
            f"of {type(self).__name__}",
        )
        return batched


class Conv2d(_Conv, nn.Conv2d):
    """2-D convolution: ``feature_map = W * x + b`` (see module docstring). Drop-in for ``nn.Conv2d``.

    Arguments as ``nn.Conv2d``: in_channels, out_channels, kernel_size, stride=1, padding=0 (int,
    tuple, "same" or "valid"), dilation=1, groups=1, bias=True, padding_mode="zeros".
    Parameters: ``weight`` (C_out, C_in/groups, kh, kw), ``bias`` (C_out).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batched = self._check_input(x)
        if self.impl == "fused":
            return super().forward(x)
        x4 = x if batched else x.unsqueeze(0)  # (B, C, H, W)
        y = conv2d_reference(
            x4, self.weight, self.bias, self.stride, _explicit_padding(self), self.dilation,
            self.groups, self.padding_mode,
        )
        return y if batched else y.squeeze(0)

    @classmethod
    def from_torch(cls, m: nn.Conv2d) -> "Conv2d":
        return _conv_from_torch(cls, m)


class Conv1d(_Conv, nn.Conv1d):
    """1-D convolution over a sequence (B, C, T): a filter slid along time. Drop-in for ``nn.Conv1d``.

    The reference path is the 2-D one on a map of height 1: (B, C, T) -> (B, C, 1, T).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batched = self._check_input(x)
        if self.impl == "fused":
            return super().forward(x)
        x4 = (x if batched else x.unsqueeze(0)).unsqueeze(2)  # (B, C, 1, T)
        y = conv2d_reference(
            x4, self.weight.unsqueeze(2), self.bias, (1, self.stride[0]),  # weight (C_out, C_g, 1, k)
            _explicit_padding(self) + (0, 0), (1, self.dilation[0]), self.groups, self.padding_mode,
        )
        y = y.squeeze(2)  # (B, C_out, T_out)
        return y if batched else y.squeeze(0)

    @classmethod
    def from_torch(cls, m: nn.Conv1d) -> "Conv1d":
        return _conv_from_torch(cls, m)


def _conv_from_torch(cls, m):
    check_module_type(cls, m, nn.Conv2d if issubclass(cls, nn.Conv2d) else nn.Conv1d)
    new = cls(
        m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
        dilation=m.dilation, groups=m.groups, bias=m.bias is not None, padding_mode=m.padding_mode,
        device=m.weight.device, dtype=m.weight.dtype,
    )
    new.load_state_dict(m.state_dict())
    return new.train(m.training)


# ----------------------------------------------------------------------------------------------
# Pooling over fixed windows
# ----------------------------------------------------------------------------------------------


def _pool_geometry(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> tuple[int, int]:
    """(n_out, extra right padding) of a pooling window sweep, PyTorch's rule.

    With ``ceil_mode`` the sweep may run past the end, but the last window must start inside the
    input or the left padding.
    """
    span = n + 2 * p - d * (k - 1) - 1
    n_out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (n_out - 1) * s >= n + p:
        n_out -= 1
    extra = max(0, (n_out - 1) * s + d * (k - 1) + 1 - (n + 2 * p))
    return n_out, extra


class _Pool2d(TwoPath):
    """Shared window bookkeeping of MaxPool2d and AvgPool2d."""

    def __init__(self, *args, **kwargs):
        a, name = _bound_args(self, args, kwargs), type(self).__name__
        check_sizes(name, kernel_size=a["kernel_size"], dilation=a.get("dilation", 1))
        if a["stride"] is not None:
            check_sizes(name, stride=a["stride"])
        check_sizes(name, minimum=0, padding=a["padding"])
        k, p = _pair(a["kernel_size"]), _pair(a["padding"])
        check(all(pi <= ki // 2 for pi, ki in zip(p, k)),
              f"{name}: padding must be at most half the kernel size {k}, got padding={a['padding']!r}")
        super().__init__(*args, **kwargs)

    def _geometry(self, x: torch.Tensor):
        """Check ``x`` (both paths) and return the output size and the padding the windows need.

        The padding is in ``F.pad`` order (left, right, top, bottom); right/bottom include
        ceil_mode's overhang.
        """
        batched = _check_image(x, self, 2)
        k, s, p = _pair(self.kernel_size), _pair(self.stride), _pair(self.padding)
        d = _pair(getattr(self, "dilation", 1))
        check(
            all(pi <= ki // 2 for pi, ki in zip(p, k)),
            f"{type(self).__name__} padding must be at most half the kernel size {k}, got padding={p}",
        )
        H, W = x.shape[-2:]
        H_out, extra_h = _pool_geometry(H, k[0], s[0], p[0], d[0], self.ceil_mode)
        W_out, extra_w = _pool_geometry(W, k[1], s[1], p[1], d[1], self.ceil_mode)
        check(
            H_out > 0 and W_out > 0,
            f"input of spatial size {H}x{W} is too small for {type(self).__name__} with kernel_size={k}",
        )
        return batched, (H_out, W_out), (p[1], p[1] + extra_w, p[0], p[0] + extra_h)

    def _windows(self, x: torch.Tensor, pad: tuple[int, ...], fill: float) -> torch.Tensor:
        """Pad ``x`` (B, C, H, W) with ``fill`` and cut out every window: (B, C, kh*kw, L)."""
        x = F.pad(x, pad, value=fill)
        dilation = _pair(getattr(self, "dilation", 1))
        return unfold_windows(x, _pair(self.kernel_size), dilation, _pair(self.stride))


def _window_max(x: torch.Tensor, dim: int, k: int, s: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Max over windows of ``k`` cells (dilation ``d``) every ``s`` cells along ``dim`` of ``x``:
    (values, offset in the window of the first maximum), the window axis replacing ``dim``'s cells."""
    windows = x.unfold(dim, d * (k - 1) + 1, s)  # (..., n_out, ..., span): a view, nothing copied
    if d > 1:
        windows = windows[..., ::d]  # the k dilated cells of each window
    return windows.max(dim=-1)


class MaxPool2d(_Pool2d, nn.MaxPool2d):
    """Max pooling: ``y[b, c, i, j] = max over the window at (i*s, j*s) of x``. Drop-in for ``nn.MaxPool2d``.

    The max over a kh x kw window is the max over its rows of the max over its columns, so the
    reference path takes it in two passes of 1-D windows (views of the padded input, nothing
    copied): ``m = max over column windows``, then ``y = max over row windows of m``. Padding counts
    as -inf (never the max); ``return_indices`` gives the flat ``h*W + w`` position of each maximum
    in the unpadded input, as PyTorch does (the first in row-major order when there are ties).
    """

    def forward(self, x: torch.Tensor):
        batched, (H_out, W_out), pad = self._geometry(x)
        if self.impl == "fused":
            return super().forward(x)
        x4 = x if batched else x.unsqueeze(0)  # (B, C, H, W)
        W = x4.shape[-1]
        (kh, kw), (sh, sw), (dh, dw) = _pair(self.kernel_size), _pair(self.stride), _pair(self.dilation)
        padded = F.pad(x4, pad, value=float("-inf"))
        m, col = _window_max(padded, 3, kw, sw, dw)  # (B, C, H_pad, W_out): max of each row's column window
        y, row = _window_max(m, 2, kh, sh, dh)       # (B, C, H_out, W_out): max of those over the row window
        y = y[..., :H_out, :W_out]
        if not self.return_indices:
            return y if batched else y.squeeze(0)
        # Window offsets -> (row, col) in the unpadded input -> flat index row*W + col.
        i = torch.arange(H_out, device=x.device).view(H_out, 1)
        j = torch.arange(W_out, device=x.device).view(1, W_out)
        row = row[..., :H_out, :W_out]
        r = i * sh + row * dh                                              # row in the padded input
        c = col.gather(2, r)                                               # the column offset found in that row
        idx = (r - pad[2]) * W + j * sw + c * dw - pad[0]                  # (B, C, H_out, W_out)
        return (y, idx) if batched else (y.squeeze(0), idx.squeeze(0))

    @classmethod
    def from_torch(cls, m: nn.MaxPool2d) -> "MaxPool2d":
        check_module_type(cls, m, nn.MaxPool2d)
        return cls(m.kernel_size, m.stride, m.padding, m.dilation, m.return_indices, m.ceil_mode)


class AvgPool2d(_Pool2d, nn.AvgPool2d):
    """Average pooling: ``y = sum(window) / divisor``. Drop-in for ``nn.AvgPool2d``.

    The divisor is the number of window cells that hold input, plus the zero padding cells when
    ``count_include_pad`` (cells that ``ceil_mode`` adds past the padding never count), or
    ``divisor_override`` when given.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batched, (H_out, W_out), pad = self._geometry(x)
        if self.impl == "fused":
            return super().forward(x)
        x4 = x if batched else x.unsqueeze(0)  # (B, C, H, W)
        B, C, H, W = x4.shape
        windows = self._windows(x4, pad, 0.0)  # (B, C, kh*kw, L)
        left, right, top, bottom = pad
        total = windows.sum(dim=2)  # (B, C, L)
        if self.divisor_override:
            divisor = float(self.divisor_override)
        else:
            # Mark the cells that count (1) on the padded grid and pool that map the same way.
            ph, pw = _pair(self.padding)
            counted = torch.zeros(1, 1, top + H + bottom, left + W + right, device=x.device, dtype=x.dtype)
            if self.count_include_pad:
                counted[..., : H + 2 * ph, : W + 2 * pw] = 1.0  # input and padding, not the overhang
            else:
                counted[..., ph : ph + H, pw : pw + W] = 1.0  # input only
            divisor = unfold_windows(counted, _pair(self.kernel_size), (1, 1), _pair(self.stride)).sum(2)  # (1, 1, L)
        y = (total / divisor).view(B, C, H_out, W_out)  # (B, C, H_out, W_out)
        return y if batched else y.squeeze(0)

    @classmethod
    def from_torch(cls, m: nn.AvgPool2d) -> "AvgPool2d":
        check_module_type(cls, m, nn.AvgPool2d)
        return cls(m.kernel_size, m.stride, m.padding, m.ceil_mode, m.count_include_pad, m.divisor_override)


# ----------------------------------------------------------------------------------------------
# Adaptive pooling: windows chosen so the output has a given size
# ----------------------------------------------------------------------------------------------


def adaptive_windows(n_in: int, n_out: int) -> list[tuple[int, int]]:
    """[start, end) of each of the ``n_out`` windows over ``n_in`` positions (they may overlap)."""
    return [((i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)) for i in range(n_out)]


def _check_output_size(module, output_size) -> None:
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,)
    check(all(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1) for v in sizes),
          f"{type(module).__name__}: output_size must be a positive integer, None or a tuple of them, "
          f"got {output_size!r}")


def _adaptive_size(module, x: torch.Tensor) -> tuple[int, int]:
    H, W = x.shape[-2:]
    oh, ow = _pair(module.output_size)
    return (H if oh is None else oh, W if ow is None else ow)


class AdaptiveAvgPool2d(TwoPath, nn.AdaptiveAvgPool2d):
    """Adaptive average pooling to ``output_size`` (1 = global average pooling). Drop-in for torch's.

    When the output size divides the input's, the windows tile the map and ``y`` is the mean of
    each tile. Otherwise windows overlap or differ in size; averaging over them is linear and
    separable, so it is two small matrix products::

        y = P_h . x . P_w^T      P[i, h] = 1/len(window i) if h in window i else 0
    """

    def __init__(self, output_size, *args, **kwargs):
        _check_output_size(self, output_size)
        super().__init__(output_size, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, self, 2)
        if self.impl == "fused":
            return super().forward(x)
        H, W = x.shape[-2:]
        H_out, W_out = _adaptive_size(self, x)
        if H % H_out == 0 and W % W_out == 0:
            # The windows tile the map (global pooling among them): the mean of each tile.
            tiles = x.unflatten(-1, (W_out, W // W_out)).unflatten(-3, (H_out, H // H_out))  # (..., H_out, kh, W_out, kw)
            return tiles.mean(dim=(-3, -1))
        P_h = self._averaging_matrix(H, H_out, x)  # (H_out, H)
        P_w = self._averaging_matrix(W, W_out, x)  # (W_out, W)
        y = x @ P_w.T                                       # (..., H, W_out): one matrix product for every row
        return (y.transpose(-2, -1) @ P_h.T).transpose(-2, -1)  # (..., H_out, W_out) = P_h . x . P_w^T

    @staticmethod
    def _averaging_matrix(n_in: int, n_out: int, x: torch.Tensor) -> torch.Tensor:
        """P[i, h] = 1 / len(window i) where position h is in output i's window, else 0."""
        i = torch.arange(n_out, device=x.device)
        start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)  # floor and ceil
        h = torch.arange(n_in, device=x.device)
        inside = (h >= start[:, None]) & (h < end[:, None])  # (n_out, n_in)
        return inside.to(x.dtype) / (end - start).to(x.dtype)[:, None]

    @classmethod
    def from_torch(cls, m: nn.AdaptiveAvgPool2d) -> "AdaptiveAvgPool2d":
        check_module_type(cls, m, nn.AdaptiveAvgPool2d)
        return cls(m.output_size)


class AdaptiveMaxPool2d(TwoPath, nn.AdaptiveMaxPool2d):
    """Adaptive max pooling to ``output_size``: the max of each adaptive window. Drop-in for torch's.

    As for ``MaxPool2d``, the max over a window is the max over its rows of the max over its
    columns: one pass over the column windows, one over the row windows.
    """

    def __init__(self, output_size, *args, **kwargs):
        _check_output_size(self, output_size)
        super().__init__(output_size, *args, **kwargs)

    def forward(self, x: torch.Tensor):
        batched = _check_image(x, self, 2)
        if self.impl == "fused":
            return super().forward(x)
        H, W = x.shape[-2:]
        H_out, W_out = _adaptive_size(self, x)
        # Max over each column window, for every row: (..., H, W_out), and where in the window.
        col_max, col_arg = zip(*[x[..., w0:w1].max(dim=-1) for w0, w1 in adaptive_windows(W, W_out)])
        col_max = torch.stack(col_max, dim=-1)
        col_idx = torch.stack([a + w0 for a, (w0, _) in zip(col_arg, adaptive_windows(W, W_out))], dim=-1)
        # Then over each row window: (..., H_out, W_out).
        values, rows = zip(*[col_max[..., h0:h1, :].max(dim=-2) for h0, h1 in adaptive_windows(H, H_out)])
        y = torch.stack(values, dim=-2)
        if not self.return_indices:
            return y
        row = torch.stack([r + h0 for r, (h0, _) in zip(rows, adaptive_windows(H, H_out))], dim=-2)
        return y, row * W + col_idx.gather(-2, row)  # (..., H_out, W_out): flat index of each maximum

    @classmethod
    def from_torch(cls, m: nn.AdaptiveMaxPool2d) -> "AdaptiveMaxPool2d":
        check_module_type(cls, m, nn.AdaptiveMaxPool2d)
        return cls(m.output_size, m.return_indices)
