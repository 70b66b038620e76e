"""FLOPs of a forward pass: the fused CPU kernels count what the step-by-step equations count."""

from __future__ import annotations

import pytest
import torch

import archlab.nn as anl
from archlab.registry import create_model
from archlab.train.mfu import forward_flops


@pytest.mark.parametrize("cls,gates", [(anl.LSTM, 4), (anl.GRU, 3), (anl.RNN, 1)])
def test_fused_recurrent_layers_count_what_the_equations_count(cls, gates):
    """The fused CPU LSTM kernel (oneDNN) has no formula in PyTorch: ours matches the step-by-step path."""
    T, B, F, H = 5, 2, 3, 4
    layer = cls(F, H, batch_first=True, num_layers=2, bidirectional=True)
    x = torch.randn(B, T, F)
    by_formula = 2 * T * B * gates * H * ((F + H) + (2 * H + H)) * 2  # layer 1 reads F, layer 2 2H; 2 directions
    fused = forward_flops(layer, lambda: layer(x))
    anl.set_impl(layer, "reference")  # step by step: every product is a visible matmul
    assert fused == forward_flops(layer, lambda: layer(x)) == by_formula


def test_fused_attention_on_cpu_counts_like_the_reference_matmuls():
    gpt = create_model("gpt", vocab_size=32, block_size=16, n_layer=1, n_head=2, d_model=16)
    ids = torch.randint(0, 32, (1, 16))
    fused = forward_flops(gpt, lambda: gpt(ids))
    anl.set_impl(gpt, "reference")
    assert fused == forward_flops(gpt, lambda: gpt(ids))
    attention = 2 * 2 * 16 * 16 * (8 + 8)  # Q K^T and A V: 2 * heads * T * T * (d_k + d_v)
    matmuls = 2 * 16 * (16 * 48 + 16 * 16 + 16 * 64 + 64 * 16 + 16 * 32)  # qkv, out, ffn, head
    assert fused == attention + matmuls


def test_a_parameter_view_made_under_no_grad_is_counted():
    """Attention pooling expands its learned query in the forward pass; PyTorch's module tracker fails on it."""
    clf = create_model("rnn_classifier", input_size=5, hidden_size=8, pooling="attention")
    x = torch.randn(2, 6, 5)
    H = 8
    # LSTM (4 gates) over 6 steps; additive attention: W_1 q, W_2 h_t, v^T tanh(.), sum_t alpha_t h_t; the head.
    expected = 2 * 2 * 6 * 4 * H * (5 + H) + 2 * 2 * (H * H + 6 * H * H + 6 * H + 6 * H) + 2 * 2 * H * 10
    assert forward_flops(clf, lambda: clf(x)) == expected
