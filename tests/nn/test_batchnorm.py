"""Batch norm from its equation equals nn.BatchNorm, outputs, gradients and running statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from archlab.errors import ConfigError
from archlab.nn import BatchNorm1d, BatchNorm2d, set_impl

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _pair(torch_cls, our_cls, dtype, **kw):
    theirs = torch_cls(4, **kw).to(dtype)
    if theirs.affine:  # non-trivial gamma, beta
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 1.5)
            theirs.bias.uniform_(-0.5, 0.5)
    ours = our_cls.from_torch(theirs)
    ours.impl = "reference"
    return ours, theirs


def _step(m, x):
    x = x.clone().requires_grad_(True)
    y = m(x)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
    grads = torch.autograd.grad((y * g).sum(), [x] + list(m.parameters()))
    return y, grads


def _close(a, b, tol, what):
    assert torch.allclose(a, b, atol=tol, rtol=tol), f"{what} differs by {(a - b).abs().max():.3g} > {tol}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "torch_cls,our_cls,shape",
    [(nn.BatchNorm2d, BatchNorm2d, (5, 4, 6, 7)), (nn.BatchNorm1d, BatchNorm1d, (8, 4)),
     (nn.BatchNorm1d, BatchNorm1d, (3, 4, 9))],
)
@pytest.mark.parametrize(
    "kw", [{}, dict(momentum=0.3, eps=1e-3), dict(momentum=None), dict(affine=False), dict(track_running_stats=False)]
)
def test_train_then_eval_equals_torch(torch_cls, our_cls, shape, kw, dtype):
    tol = TOL[dtype]
    ours, theirs = _pair(torch_cls, our_cls, dtype, **kw)
    for step in range(3):  # training: batch statistics, running statistics updated each step
        x = torch.randn(shape, dtype=dtype) * (step + 1) + step
        (y1, g1), (y2, g2) = _step(ours, x), _step(theirs, x)
        _close(y1, y2, tol, "training output")
        for a, b in zip(g1, g2):
            _close(a, b, tol, "training gradient")
        for name in BUFFERS:
            if getattr(theirs, name) is not None:
                _close(getattr(ours, name).to(dtype), getattr(theirs, name).to(dtype), tol, name)
    ours.eval(), theirs.eval()  # evaluation: the running statistics (or batch ones if none are tracked)
    x = torch.randn(shape, dtype=dtype) + 2
    (y1, g1), (y2, g2) = _step(ours, x), _step(theirs, x)
    _close(y1, y2, tol, "eval output")
    for a, b in zip(g1, g2):
        _close(a, b, tol, "eval gradient")


def test_running_statistics_follow_the_momentum_rule():
    bn = BatchNorm2d(2, momentum=0.1)
    bn.impl = "reference"
    x = torch.randn(4, 2, 3, 3) * 3 + 5
    bn(x)
    mean = x.mean(dim=(0, 2, 3))
    unbiased_var = x.var(dim=(0, 2, 3), unbiased=True)
    assert torch.allclose(bn.running_mean, 0.1 * mean, atol=1e-6)  # started at 0
    assert torch.allclose(bn.running_var, 0.9 + 0.1 * unbiased_var, atol=1e-5)  # started at 1
    assert int(bn.num_batches_tracked) == 1
    y = bn(x)  # training output is normalized with the biased variance: zero mean, variance var/(var+eps)
    biased_var = x.var(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(y.var(dim=(0, 2, 3), unbiased=False), biased_var / (biased_var + bn.eps), atol=1e-5)
    assert int(bn.num_batches_tracked) == 2


def test_state_dict_names_match_torch():
    ours, theirs = BatchNorm2d(3), nn.BatchNorm2d(3)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == [
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked",
    ]
    ours.load_state_dict(theirs.state_dict(), strict=True)


def test_bf16_autocast_and_both_paths_agree():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), BatchNorm2d(4))
    x = torch.randn(2, 3, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused = net(x)
        set_impl(net, "reference")
        ref = net(x)
    assert ref.dtype == fused.dtype
    assert torch.allclose(ref.float(), fused.float(), atol=5e-2), (ref.float() - fused.float()).abs().max()


def test_errors_name_the_argument():
    bn = BatchNorm2d(4)
    with pytest.raises(ConfigError, match="input has 3 channels, BatchNorm2d expects num_features=4"):
        bn(torch.randn(2, 3, 5, 5))
    with pytest.raises(ConfigError, match="BatchNorm2d expects a 4-D input, got shape \\(2, 4, 5\\)"):
        bn(torch.randn(2, 4, 5))
    with pytest.raises(ConfigError, match="more than 1 value per channel in training, got input shape \\(1, 4\\)"):
        BatchNorm1d(4)(torch.randn(1, 4))
    BatchNorm1d(4).eval()(torch.randn(1, 4))  # fine with running statistics
