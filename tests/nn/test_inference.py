"""archlab.nn.inference.linear: the packed, fused CPU product is act(F.linear(x, W, b)), and only where it may be."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.nn import inference

needs_onednn = pytest.mark.skipif(not inference.ONEDNN, reason="this torch has no oneDNN packed linear")


@needs_onednn
@pytest.mark.parametrize("activation", [None, nn.ReLU(), nn.GELU(), nn.GELU(approximate="tanh"), nn.SiLU()])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_packed_product_equals_linear_then_activation(activation, dtype):
    torch.manual_seed(0)
    x, w, b = torch.randn(37, 48, dtype=dtype), torch.randn(64, 48, dtype=dtype) / 7, torch.randn(64, dtype=dtype)
    expected = F.linear(x.double(), w.double(), b.double())
    expected = expected if activation is None else activation(expected)
    with torch.inference_mode():
        got = inference.linear(x, w, b, activation)
    assert got.dtype == dtype and got.shape == (37, 64)
    tol = 1e-5 if dtype == torch.float32 else 3e-2  # bf16: one rounding of values up to ~4
    torch.testing.assert_close(got.double(), expected, atol=tol, rtol=tol)


@needs_onednn
def test_a_changed_weight_is_packed_again():
    x, w = torch.randn(5, 8), torch.randn(4, 8)
    with torch.no_grad():
        first = inference.linear(x, w)
        w.mul_(2)  # in place, as an optimiser step or load_state_dict would
        torch.testing.assert_close(inference.linear(x, w), 2 * first)
        w2 = w.to(torch.bfloat16)  # another tensor, another dtype
        torch.testing.assert_close(inference.linear(x.bfloat16(), w2).float(), 2 * first, atol=0.1, rtol=0.02)


def test_gradients_and_the_readable_path_use_f_linear(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(a), raising=False)
    x = torch.randn(3, 8, requires_grad=True)
    lin = nn.Linear(8, 5)
    y = inference.linear(x, lin.weight, lin.bias, nn.GELU())
    y.sum().backward()  # gradients wanted: F.linear and the module, differentiable
    torch.testing.assert_close(x.grad, torch.autograd.grad(F.gelu(lin(x)).sum(), x)[0])
    with torch.no_grad():
        inference.linear(x, lin.weight, lin.bias, fused=False)
        inference.linear(x.double(), lin.weight.double(), lin.bias.double())  # float64: not packed
    assert not calls
