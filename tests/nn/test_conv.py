"""Convolution and pooling: the readable reference path equals PyTorch, forward and backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from archlab.errors import ConfigError
from archlab.nn import (
    AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, Conv1d, Conv2d, MaxPool2d, set_impl,
)

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def _grads(module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> list[torch.Tensor]:
    """Gradients of a fixed random projection of ``out`` w.r.t. the input and every parameter."""
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    params = [x] + list(module.parameters())
    return list(torch.autograd.grad((out * g).sum(), params))


def _assert_parity(ours: nn.Module, theirs: nn.Module, x: torch.Tensor, dtype: torch.dtype) -> None:
    """ours (reference path) vs torch's module: outputs and all gradients within TOL[dtype]."""
    tol = TOL[dtype]
    ours.impl = "reference"
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    y1, y2 = ours(x1), theirs(x2)
    assert y1.shape == y2.shape
    assert torch.allclose(y1, y2, atol=tol, rtol=tol), f"forward differs by {(y1 - y2).abs().max():.3g} > {tol}"
    for a, b in zip(_grads(ours, x1, y1), _grads(theirs, x2, y2)):
        assert torch.allclose(a, b, atol=tol, rtol=tol), f"gradient differs by {(a - b).abs().max():.3g} > {tol}"


CONV2D_CASES = [
    # in, out, kernel, kwargs, input H x W
    (3, 8, 3, {}, (9, 9)),
    (3, 8, 3, dict(stride=2, padding=1), (10, 11)),
    (4, 6, (3, 5), dict(stride=(2, 1), padding=(1, 2)), (9, 12)),
    (3, 5, 3, dict(padding="same", dilation=2), (10, 10)),
    (3, 5, 4, dict(padding="same"), (8, 9)),  # even kernel: the extra pad goes after
    (3, 5, 3, dict(padding="valid", bias=False), (7, 7)),
    (4, 8, 3, dict(groups=2, padding=1), (8, 8)),
    (6, 6, 3, dict(groups=6, padding=1, stride=2), (9, 9)),  # depthwise
    (6, 12, 5, dict(groups=6, padding=2), (8, 8)),  # depthwise with channel multiplier 2
    (3, 4, 3, dict(padding=1, padding_mode="reflect"), (6, 6)),
    (3, 4, 3, dict(padding=2, padding_mode="circular"), (6, 7)),
    (3, 4, 11, dict(stride=4, padding=2), (35, 35)),  # AlexNet's first layer, small
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("cin,cout,k,kw,hw", CONV2D_CASES)
def test_conv2d_reference_equals_torch(cin, cout, k, kw, hw, dtype):
    theirs = nn.Conv2d(cin, cout, k, **kw).to(dtype)
    ours = Conv2d.from_torch(theirs)
    _assert_parity(ours, theirs, torch.randn(2, cin, *hw, dtype=dtype), dtype)


# Depthwise taps add only into the outputs whose input lies inside the image (the zero padding is
# never built): borders, strides that skip the last row, padding wider than the kernel reaches,
# the extra 'same' pad of an even kernel, a padding mode that is copied, a batch split into chunks.
DEPTHWISE_CASES = [
    (3, dict(padding=1)), (3, dict(padding=1, stride=2)), (4, dict(padding="same")), (5, dict(padding=2, stride=3)),
    (3, dict(padding=4)), (3, dict(padding=2, dilation=2)), (2, dict(padding=0, bias=False)), (1, dict(padding=1)),
    (3, dict(padding=1, padding_mode="reflect")), (3, dict(padding=(0, 2), stride=(2, 1))),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("multiplier", [1, 2])
@pytest.mark.parametrize("k,kw", DEPTHWISE_CASES)
def test_depthwise_reference_equals_torch(k, kw, multiplier, monkeypatch):
    from archlab.nn.conv import _DepthwiseTaps
    monkeypatch.setattr(_DepthwiseTaps, "CHUNK_BYTES", 1)  # one image per chunk: the chunks must add up
    theirs = nn.Conv2d(4, 4 * multiplier, k, groups=4, **kw).double()
    _assert_parity(Conv2d.from_torch(theirs), theirs, torch.randn(3, 4, 9, 10, dtype=torch.double), torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "cin,cout,k,kw",
    [(3, 5, 3, {}), (4, 8, 5, dict(stride=2, padding=2, groups=2)), (3, 6, 4, dict(padding="same", dilation=3)),
     (2, 2, 3, dict(padding=1, padding_mode="replicate", bias=False))],
)
def test_conv1d_reference_equals_torch(cin, cout, k, kw, dtype):
    theirs = nn.Conv1d(cin, cout, k, **kw).to(dtype)
    ours = Conv1d.from_torch(theirs)
    _assert_parity(ours, theirs, torch.randn(3, cin, 17, dtype=dtype), dtype)


def test_conv_is_a_drop_in_for_torch_state_dicts():
    theirs = nn.Conv2d(3, 8, 3, padding=1)
    ours = Conv2d(3, 8, 3, padding=1)
    ours.load_state_dict(theirs.state_dict(), strict=True)  # same names: weight, bias
    assert [n for n, _ in ours.named_parameters()] == ["weight", "bias"]
    assert isinstance(ours, nn.Conv2d)
    x = torch.randn(1, 3, 6, 6)
    assert torch.allclose(ours(x), theirs(x), atol=1e-6)  # fused path is torch's own kernel


def test_conv_weight_sharing_one_filter_everywhere():
    """The same 3x3 pattern gives the same response wherever it sits (before the border)."""
    conv = Conv2d(1, 1, 3, bias=False)
    conv.impl = "reference"
    img = torch.zeros(1, 1, 10, 10)
    img[0, 0, 1:4, 1:4] = torch.randn(3, 3)
    shifted = torch.roll(img, shifts=(4, 5), dims=(2, 3))
    a, b = conv(img), conv(shifted)
    assert torch.allclose(a[0, 0, 1, 1], b[0, 0, 5, 6], atol=1e-6)
    assert torch.allclose(torch.roll(a, shifts=(4, 5), dims=(2, 3))[..., 4:, 5:], b[..., 4:, 5:], atol=1e-6)


def test_conv_unbatched_input_and_impl_switch():
    conv = Conv2d(3, 4, 3, padding=1)
    x = torch.randn(3, 5, 5)
    fused = conv(x)
    set_impl(conv, "reference")
    assert conv.impl == "reference"
    ref = conv(x)
    assert ref.shape == (4, 5, 5)
    assert torch.allclose(ref, fused, atol=1e-5)


def test_conv_errors_name_the_argument():
    conv = Conv2d(3, 4, 3)
    with pytest.raises(ConfigError, match="input has 5 channels, Conv2d expects in_channels=3"):
        conv(torch.randn(1, 5, 8, 8))
    with pytest.raises(ConfigError, match="4-D .* got shape \\(8, 8\\)"):
        conv(torch.randn(8, 8))
    for impl in ("fused", "reference"):  # both paths check before computing
        conv.impl = impl
        with pytest.raises(ConfigError, match=r"spatial size \(2, 8\) \(padded \(2, 8\)\) is smaller than the dilated kernel \(3, 3\)"):
            conv(torch.randn(1, 3, 2, 8))
    with pytest.raises(ConfigError, match=r"spatial size \(4,\) \(padded \(6,\)\) is smaller than the dilated kernel \(7,\)"):
        Conv1d(2, 2, 4, padding=1, dilation=2)(torch.randn(1, 2, 4))
    with pytest.raises(ConfigError, match="impl must be one of"):
        conv.impl = "fast"


POOL_CASES = [
    (nn.MaxPool2d, MaxPool2d, dict(kernel_size=2)),
    (nn.MaxPool2d, MaxPool2d, dict(kernel_size=3, stride=2)),
    (nn.MaxPool2d, MaxPool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (nn.MaxPool2d, MaxPool2d, dict(kernel_size=(2, 3), stride=(1, 2), dilation=2)),
    (nn.AvgPool2d, AvgPool2d, dict(kernel_size=2)),
    (nn.AvgPool2d, AvgPool2d, dict(kernel_size=3, stride=2, padding=1)),
    (nn.AvgPool2d, AvgPool2d, dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    (nn.AvgPool2d, AvgPool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (nn.AvgPool2d, AvgPool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    (nn.AvgPool2d, AvgPool2d, dict(kernel_size=2, ceil_mode=True, divisor_override=3)),
    (nn.AdaptiveAvgPool2d, AdaptiveAvgPool2d, dict(output_size=1)),  # global average pooling
    (nn.AdaptiveAvgPool2d, AdaptiveAvgPool2d, dict(output_size=(3, 4))),  # overlapping windows
    (nn.AdaptiveAvgPool2d, AdaptiveAvgPool2d, dict(output_size=(3, 5))),  # 3x2 tiles of the 9x10 map
    (nn.AdaptiveAvgPool2d, AdaptiveAvgPool2d, dict(output_size=(None, 2))),
    (nn.AdaptiveAvgPool2d, AdaptiveAvgPool2d, dict(output_size=12)),  # larger than the input
    (nn.AdaptiveMaxPool2d, AdaptiveMaxPool2d, dict(output_size=1)),
    (nn.AdaptiveMaxPool2d, AdaptiveMaxPool2d, dict(output_size=(3, 4))),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("torch_cls,our_cls,kw", POOL_CASES)
def test_pooling_reference_equals_torch(torch_cls, our_cls, kw, dtype):
    theirs = torch_cls(**kw)
    ours = our_cls.from_torch(theirs)
    _assert_parity(ours, theirs, torch.randn(2, 3, 9, 10, dtype=dtype), dtype)


@pytest.mark.parametrize(
    "torch_cls,our_cls,kw",
    [(nn.MaxPool2d, MaxPool2d, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, return_indices=True)),
     (nn.MaxPool2d, MaxPool2d, dict(kernel_size=2, dilation=2, return_indices=True)),
     (nn.AdaptiveMaxPool2d, AdaptiveMaxPool2d, dict(output_size=(3, 4), return_indices=True))],
)
def test_max_pool_indices_equal_torch(torch_cls, our_cls, kw):
    x = torch.randn(2, 3, 9, 10, dtype=torch.float64)
    ours = our_cls.from_torch(torch_cls(**kw))
    ours.impl = "reference"
    (y1, i1), (y2, i2) = ours(x), torch_cls(**kw)(x)
    assert torch.equal(y1, y2)
    assert torch.equal(i1, i2)
    assert torch.equal(x.flatten(-2).gather(-1, i1.flatten(-2)).view_as(y1), y1)  # indices point at the maxima


def test_pooling_unbatched_and_errors():
    pool = MaxPool2d(2)
    pool.impl = "reference"
    x = torch.randn(3, 6, 6)
    assert torch.equal(pool(x), nn.MaxPool2d(2)(x))
    with pytest.raises(ConfigError, match="padding must be at most half the kernel size"):
        _ref(MaxPool2d(2, padding=2))(x)
    with pytest.raises(ConfigError, match="spatial size 2x2 is too small for AvgPool2d with kernel_size=\\(3, 3\\)"):
        AvgPool2d(3)(torch.randn(1, 1, 2, 2))
    with pytest.raises(ConfigError, match="4-D .* got shape"):
        AdaptiveAvgPool2d(1)(torch.randn(4, 4))


def _ref(module):
    module.impl = "reference"
    return module


def test_both_paths_agree_on_a_small_cnn_under_bf16_autocast():
    net = nn.Sequential(
        Conv2d(3, 8, 3, padding=1), nn.ReLU(), MaxPool2d(2), Conv2d(8, 8, 3, groups=8, padding=1),
        AvgPool2d(2), AdaptiveAvgPool2d(1),
    )
    x = torch.randn(2, 3, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = net(x)
        set_impl(net, "reference")
        ref = net(x)
    assert ref.dtype == fused.dtype == torch.bfloat16
    assert torch.allclose(ref.float(), fused.float(), atol=3e-2), (ref.float() - fused.float()).abs().max()


@pytest.mark.parametrize(
    "module",
    [Conv2d(4, 6, 3, padding=1, groups=2), MaxPool2d(3, 2, 1), AvgPool2d(2, ceil_mode=True),
     AdaptiveAvgPool2d(3), AdaptiveMaxPool2d(2)],
    ids=lambda m: type(m).__name__,
)
def test_reference_path_takes_channels_last_and_permuted_inputs(module):
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    module.double()
    module.impl = "fused"
    expected = module(x)
    module.impl = "reference"
    for layout in (x.to(memory_format=torch.channels_last), x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)):
        assert torch.allclose(module(layout), expected, atol=1e-10)
