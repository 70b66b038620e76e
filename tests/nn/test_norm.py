"""RMSNorm (T5's layer norm) against torch.nn.RMSNorm and Hugging Face's T5LayerNorm."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn

from archlab.errors import ConfigError
from archlab.nn import RMSNorm

TOL = 1e-10  # float64 parity tolerance
f64 = torch.float64


def _grads(out, tensors, seed=1):
    g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(seed))
    return torch.autograd.grad((out * g).sum(), tensors)


@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("shape, eps", [(8, 1e-6), ((3, 8), None)])
def test_rmsnorm_matches_torch_forward_and_backward(impl, shape, eps):
    ref = nn.RMSNorm(shape, eps=eps, dtype=f64)
    with torch.no_grad():
        ref.weight.normal_()
    ours = RMSNorm.from_torch(ref)
    ours.impl = impl
    assert list(ours.state_dict()) == ["weight"]  # g only: no bias
    x = torch.randn(2, 5, *((shape,) if isinstance(shape, int) else shape), dtype=f64, requires_grad=True)
    out_o, out_t = ours(x), ref(x)
    torch.testing.assert_close(out_o, out_t, atol=TOL, rtol=0)
    for a, b in zip(_grads(out_o, [x, ours.weight]), _grads(out_t, [x, ref.weight])):
        torch.testing.assert_close(a, b, atol=TOL, rtol=0)


def test_reference_path_is_the_written_equation_no_mean_subtracted():
    m = RMSNorm(4, eps=1e-6, dtype=f64)
    m.impl = "reference"
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=f64)  # mean 2.5: a LayerNorm would centre it
    rms = (x.square().mean() + 1e-6).sqrt()  # sqrt(7.5 + eps)
    torch.testing.assert_close(m(x), x / rms, atol=1e-12, rtol=0)
    assert (m(x) > 0).all()  # nothing subtracted: signs are kept


def test_matches_hugging_face_t5_layer_norm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    ref = t5.T5LayerNorm(16, eps=1e-6)
    with torch.no_grad():
        ref.weight.normal_()
    ours = RMSNorm(16, eps=1e-6)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 7, 16)
    for impl in ("reference", "fused"):
        ours.impl = impl
        torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=0)  # float32


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_bf16_autocast_keeps_the_input_dtype(impl):
    m = RMSNorm(16, eps=1e-6)
    m.impl = impl
    lin = nn.Linear(16, 16)
    x = torch.randn(4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(lin(x))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), m(lin(x)), atol=0.05, rtol=0.05)


def test_bad_input_names_expected_and_given():
    with pytest.raises(ConfigError, match=r"input's last dims are \(8,\), RMSNorm expects normalized_shape=\(16,\)"):
        RMSNorm(16)(torch.randn(2, 8))
    with pytest.raises(ConfigError, match="eps must be > 0 or None, got 0"):
        RMSNorm(16, eps=0)
