"""LayerNorm, FeedForward, positional encodings and the Transformer encoder/decoder layers, against torch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import ConfigError
from archlab.nn import (
    FeedForward, LayerNorm, LearnedPositionalEmbedding, PackedTokens, SinusoidalPositionalEncoding,
    TransformerDecoderLayer, TransformerEncoderLayer, set_impl,
)

D, NH, FF, N, T, S = 16, 4, 24, 3, 5, 6
TOL = 1e-5  # float64 parity tolerance with torch
f64 = torch.float64


def _grads(out, tensors, seed=1):
    g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(seed))
    return torch.autograd.grad((out * g).sum(), tensors, allow_unused=True)


# ---------------------------------------------------------------------------------------------- LayerNorm

@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("shape, bias", [((D,), True), ((4, D), True), ((D,), False)])
def test_layernorm_matches_torch(impl, shape, bias):
    ref = nn.LayerNorm(shape, eps=1e-6, bias=bias, dtype=f64)
    with torch.no_grad():
        ref.weight.normal_()
        if bias:
            ref.bias.normal_()
    ours = LayerNorm.from_torch(ref)
    ours.impl = impl
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(N, *shape, dtype=f64, requires_grad=True) * 3 + 1
    out_t, out_o = ref(x), ours(x)
    torch.testing.assert_close(out_o, out_t, atol=TOL, rtol=0)
    for a, b in zip(_grads(out_o, [x, *ours.parameters()]), _grads(out_t, [x, *ref.parameters()])):
        torch.testing.assert_close(a, b, atol=TOL, rtol=0)


def test_layernorm_normalises_each_example_on_its_own():
    ln = LayerNorm(D, elementwise_affine=False)
    ln.impl = "reference"
    y = ln(torch.randn(N, D) * 5 + 3)
    torch.testing.assert_close(y.mean(-1), torch.zeros(N), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(N), atol=1e-3, rtol=0)


def test_layernorm_wrong_feature_size():
    with pytest.raises(ConfigError, match=r"\(8,\).*normalized_shape=\(16,\)"):
        LayerNorm(D)(torch.randn(2, 8))


# ---------------------------------------------------------------------------------------------- FeedForward

def test_feedforward_names_and_function():
    ff = FeedForward(D, FF, activation="gelu", dtype=f64)
    assert list(ff.state_dict()) == ["0.weight", "0.bias", "3.weight", "3.bias"]  # torchvision's ViT MLP names
    x = torch.randn(N, T, D, dtype=f64)
    expected = F.linear(F.gelu(F.linear(x, ff.W_1.weight, ff.W_1.bias)), ff.W_2.weight, ff.W_2.bias)
    torch.testing.assert_close(ff(x), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("activation, fn", [
    ("relu", F.relu), ("gelu", F.gelu), ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")),
    (torch.tanh, torch.tanh),
])
def test_feedforward_activations(activation, fn):
    ff = FeedForward(D, FF, activation=activation, dtype=f64)
    x = torch.randn(N, D, dtype=f64)
    torch.testing.assert_close(ff(x), ff[3](fn(ff[0](x))), atol=1e-12, rtol=0)


def test_feedforward_unknown_activation():
    with pytest.raises(ConfigError, match="activation must be one of.*'swish'"):
        FeedForward(D, FF, activation="swish")


# ---------------------------------------------------------------------------------------------- positions

def test_sinusoidal_encoding_is_the_formula():
    pe = SinusoidalPositionalEncoding(D, max_len=50)
    out = pe(torch.zeros(1, 50, D))[0]
    pos, i = 7, 3
    assert out[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / D)), abs=1e-6)
    assert out[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / D)), abs=1e-6)
    assert list(pe.state_dict()) == []  # computed, not stored


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEmbedding])
def test_positions_with_offset_continue_the_sequence(cls):
    pe = cls(D, 20) if cls is SinusoidalPositionalEncoding else cls(20, D)
    x = torch.randn(2, 8, D)
    whole = pe(x)
    torch.testing.assert_close(torch.cat([pe(x[:, :5]), pe(x[:, 5:], offset=5)], dim=1), whole)
    assert not torch.allclose(pe(x[:, 5:]), whole[:, 5:])  # the offset matters
    with pytest.raises(ConfigError, match="positions up to 21.*max_len=20"):
        pe(x, offset=13)


def test_learned_positions_have_the_embedding_layout():
    pe = LearnedPositionalEmbedding(32, D)
    assert list(pe.state_dict()) == ["weight"] and pe.weight.shape == (32, D)


# ---------------------------------------------------------------------------------------------- layers
# torch's TransformerEncoderLayer takes a "fast path" (a fused C++ kernel with its own numerics) in eval
# mode without gradients; we compare in training mode with dropout=0, where torch runs the readable
# Python composition, and check gradients too.

def _x(batch_first, length, requires_grad=True):
    shape = (N, length, D) if batch_first else (length, N, D)
    return torch.randn(shape, dtype=f64, requires_grad=requires_grad)


def _kpm(length, kind):
    m = torch.zeros(N, length, dtype=torch.bool)
    m[0, -2:] = True
    return m if kind == "bool" else torch.zeros(N, length, dtype=f64).masked_fill(m, float("-inf"))


@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_encoder_layer_matches_torch(impl, norm_first, activation, batch_first):
    ref = nn.TransformerEncoderLayer(D, NH, FF, dropout=0.0, activation=activation, batch_first=batch_first,
                                     norm_first=norm_first, dtype=f64)
    ours = set_impl(TransformerEncoderLayer.from_torch(ref), impl)
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = _x(batch_first, T)
    causal = nn.Transformer.generate_square_subsequent_mask(T, dtype=f64)
    for kw in ({}, {"src_key_padding_mask": _kpm(T, "bool")},
               {"src_mask": causal, "src_key_padding_mask": _kpm(T, "float"), "is_causal": True}):
        out_t, out_o = ref(x, **kw), ours(x, **kw)
        torch.testing.assert_close(out_o, out_t, atol=TOL, rtol=0)
        for a, b in zip(_grads(out_o, [x, *ours.parameters()]), _grads(out_t, [x, *ref.parameters()])):
            torch.testing.assert_close(a, b, atol=TOL, rtol=0)


@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_on_packed_real_tokens_equals_the_padded_batch(impl, norm_first):
    layer = set_impl(TransformerEncoderLayer(D, NH, FF, dropout=0.0, batch_first=True, norm_first=norm_first,
                                             dtype=f64), impl).eval()
    x = torch.randn(4, T, D, dtype=f64)
    keep = torch.ones(4, T, dtype=torch.bool)
    keep[1, 3:] = False
    keep[2, 1:] = False  # a one-token sentence
    keep[3, :] = False   # an empty one: no real token, nothing to compute, no NaN anywhere
    tokens = PackedTokens(keep)
    assert tokens.index.tolist() == [b * T + t for b in range(4) for t in range(T) if keep[b, t]]
    packed = layer.forward_packed(tokens.pack(x), tokens)  # (N, D)
    assert packed.shape == (int(keep.sum()), D)
    padded = layer(x, src_key_padding_mask=~keep)
    torch.testing.assert_close(packed, padded[keep], atol=1e-12, rtol=0)  # float64: the same sums
    back = tokens.unpack(packed)
    assert back.shape == x.shape and (back[~keep] == 0).all() and torch.equal(back[keep], packed)


@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
def test_decoder_layer_matches_torch(impl, norm_first, batch_first):
    ref = nn.TransformerDecoderLayer(D, NH, FF, dropout=0.0, activation="gelu", batch_first=batch_first,
                                     norm_first=norm_first, dtype=f64)
    ours = set_impl(TransformerDecoderLayer.from_torch(ref), impl)
    assert list(ours.state_dict()) == list(ref.state_dict())
    tgt, memory = _x(batch_first, T), _x(batch_first, S)
    kw = dict(tgt_mask=nn.Transformer.generate_square_subsequent_mask(T, dtype=f64), tgt_is_causal=True,
              tgt_key_padding_mask=_kpm(T, "float"), memory_key_padding_mask=_kpm(S, "float"),
              memory_mask=torch.zeros(T, S, dtype=f64))
    out_t, out_o = ref(tgt, memory, **kw), ours(tgt, memory, **kw)
    torch.testing.assert_close(out_o, out_t, atol=TOL, rtol=0)
    for a, b in zip(_grads(out_o, [tgt, memory, *ours.parameters()]), _grads(out_t, [tgt, memory, *ref.parameters()])):
        torch.testing.assert_close(a, b, atol=TOL, rtol=0)


def test_encoder_layer_is_causal_without_a_mask():
    layer = TransformerEncoderLayer(D, NH, FF, dropout=0.0, batch_first=True, dtype=f64)
    x = torch.randn(2, T, D, dtype=f64)
    mask = nn.Transformer.generate_square_subsequent_mask(T, dtype=f64)
    torch.testing.assert_close(layer(x, is_causal=True), layer(x, src_mask=mask), atol=1e-12, rtol=0)
    # The first position cannot see the others: changing them leaves it unchanged.
    y = x.clone()
    y[:, 1:] += 1
    torch.testing.assert_close(layer(y, is_causal=True)[:, 0], layer(x, is_causal=True)[:, 0], atol=1e-12, rtol=0)


def test_state_dict_loads_into_torch_layer():
    ours = TransformerDecoderLayer(D, NH, FF, dropout=0.0, dtype=f64)
    ref = nn.TransformerDecoderLayer(D, NH, FF, dropout=0.0, dtype=f64)
    ref.load_state_dict(ours.state_dict())
    tgt, memory = torch.randn(T, N, D, dtype=f64), torch.randn(S, N, D, dtype=f64)
    torch.testing.assert_close(ours(tgt, memory), ref(tgt, memory), atol=TOL, rtol=0)


def test_layer_rejects_wrong_width():
    layer = TransformerEncoderLayer(D, NH, FF, batch_first=True)
    with pytest.raises(ConfigError, match="embedding size 8.*embed_dim=16"):
        layer(torch.randn(2, T, 8))
    with pytest.raises(ConfigError, match="num_heads must divide embed_dim=16, got num_heads=3"):
        TransformerEncoderLayer(D, 3)
