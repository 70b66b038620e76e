"""The gated feed-forward network (GEGLU, T5 v1.1) and CLIP's quick GELU."""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn

from archlab.errors import ConfigError
from archlab.nn import GatedFeedForward, QuickGELU
from archlab.nn.feedforward import make_activation

f64 = torch.float64


def test_gated_ffn_is_the_written_equation():
    ffn = GatedFeedForward(6, 10, activation="gelu", dtype=f64)
    x = torch.randn(2, 3, 6, dtype=f64)
    W_1, V, W_2 = ffn.W_1.weight, ffn.V.weight, ffn.W_2.weight
    expected = (nn.functional.gelu(x @ W_1.T) * (x @ V.T)) @ W_2.T
    torch.testing.assert_close(ffn(x), expected, atol=1e-12, rtol=0)
    assert all(m.bias is None for m in (ffn.W_1, ffn.V, ffn.W_2))  # no biases
    assert sum(p.numel() for p in ffn.parameters()) == 3 * 6 * 10


def test_gated_ffn_matches_hugging_face_t5_gated_dense():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    transformers = pytest.importorskip("transformers")
    from transformers.models.t5.modeling_t5 import T5DenseGatedActDense

    ref = T5DenseGatedActDense(transformers.T5Config(d_model=8, d_ff=12, feed_forward_proj="gated-gelu",
                                                     dropout_rate=0.0)).eval()
    ours = GatedFeedForward(8, 12, activation="gelu_tanh")
    ours.load_state_dict({"W_1.weight": ref.wi_0.weight, "V.weight": ref.wi_1.weight, "W_2.weight": ref.wo.weight})
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(ours(x), ref(x), atol=1e-6, rtol=0)  # float32


def test_quick_gelu_is_x_sigmoid_1702x_and_near_gelu():
    x = torch.linspace(-4, 4, 101, dtype=f64)
    torch.testing.assert_close(QuickGELU()(x), x * torch.sigmoid(1.702 * x), atol=1e-15, rtol=0)
    assert isinstance(make_activation("quick_gelu"), QuickGELU)
    assert (QuickGELU()(x) - nn.functional.gelu(x)).abs().max() < 0.03  # an approximation of GELU


def test_dropout_after_the_gate_in_training_only():
    ffn = GatedFeedForward(8, 16, dropout=0.5)
    x = torch.randn(4, 8)
    ffn.eval()
    assert torch.equal(ffn(x), ffn(x))
    ffn.train()
    assert not torch.equal(ffn(x), ffn(x))


def test_bad_arguments():
    with pytest.raises(ConfigError, match="dim_feedforward must be positive, got 0"):
        GatedFeedForward(8, 0)
    with pytest.raises(ConfigError, match="activation must be one of"):
        GatedFeedForward(8, 4, activation="swishy")
