"""TransformerEncoder, TransformerDecoder and the encoder-decoder Transformer, against torch."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from archlab.errors import ConfigError
from archlab.nn import (
    LayerNorm, SinusoidalPositionalEncoding, Transformer, TransformerDecoder, TransformerDecoderLayer,
    TransformerEncoder, TransformerEncoderLayer,
    set_impl,
)
from archlab.utils.runtime import count_parameters

D, NH, FF, N, T, S = 16, 4, 24, 2, 5, 6
TOL = 1e-5  # float64 parity tolerance with torch
f64 = torch.float64
# torch warns that its own inference fast path is off for these configurations; irrelevant here.
pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")


def _grads(out, tensors, seed=1):
    g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(seed))
    return torch.autograd.grad((out * g).sum(), tensors, allow_unused=True)


def _assert_same(out_o, out_t, ours_inputs, torch_inputs):
    torch.testing.assert_close(out_o, out_t, atol=TOL, rtol=0)
    for a, b in zip(_grads(out_o, ours_inputs), _grads(out_t, torch_inputs)):
        torch.testing.assert_close(a, b, atol=TOL, rtol=0)


def test_generate_square_subsequent_mask_equals_torch():
    for sz in (1, 4):
        ours, ref = Transformer.generate_square_subsequent_mask(sz), nn.Transformer.generate_square_subsequent_mask(sz)
        assert torch.equal(ours, ref)
    assert Transformer.generate_square_subsequent_mask(3, dtype=f64).dtype == f64


# Training mode with dropout 0 throughout: torch's eval "fast path" (fused kernels, nested tensors that
# zero padded positions) computes with other numerics; in training mode it runs the composed modules.

@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_stack_matches_torch(impl, norm_first):
    layer = nn.TransformerEncoderLayer(D, NH, FF, dropout=0.0, batch_first=True, norm_first=norm_first, dtype=f64)
    ref = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(D, dtype=f64), enable_nested_tensor=False)
    ours = set_impl(TransformerEncoder.from_torch(ref), impl)
    assert list(ours.state_dict()) == list(ref.state_dict())
    x = torch.randn(N, T, D, dtype=f64, requires_grad=True)
    kpm = torch.tensor([[False] * T, [False] * (T - 2) + [True] * 2])
    out_t = ref(x, src_key_padding_mask=kpm)
    out_o = ours(x, src_key_padding_mask=kpm)
    _assert_same(out_o, out_t, [x, *ours.parameters()], [x, *ref.parameters()])


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_decoder_stack_matches_torch(impl):
    layer = nn.TransformerDecoderLayer(D, NH, FF, dropout=0.0, dtype=f64)
    ref = nn.TransformerDecoder(layer, 2, norm=nn.LayerNorm(D, dtype=f64))
    ours = set_impl(TransformerDecoder.from_torch(ref), impl)
    tgt = torch.randn(T, N, D, dtype=f64, requires_grad=True)
    memory = torch.randn(S, N, D, dtype=f64, requires_grad=True)
    mask = nn.Transformer.generate_square_subsequent_mask(T, dtype=f64)
    out_t = ref(tgt, memory, tgt_mask=mask, tgt_is_causal=True)
    out_o = ours(tgt, memory, tgt_mask=mask, tgt_is_causal=True)
    _assert_same(out_o, out_t, [tgt, memory, *ours.parameters()], [tgt, memory, *ref.parameters()])


@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("batch_first, norm_first", [(False, False), (True, True)])
def test_full_transformer_matches_torch(impl, batch_first, norm_first):
    ref = nn.Transformer(D, NH, 2, 2, FF, dropout=0.0, batch_first=batch_first, norm_first=norm_first, dtype=f64)
    ours = set_impl(Transformer.from_torch(ref), impl)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert count_parameters(ours) == count_parameters(ref)
    shape = (lambda L: (N, L, D)) if batch_first else (lambda L: (L, N, D))
    src = torch.randn(shape(S), dtype=f64, requires_grad=True)
    tgt = torch.randn(shape(T), dtype=f64, requires_grad=True)
    src_kpm = torch.zeros(N, S, dtype=torch.bool)
    src_kpm[1, -1] = True
    kw = dict(tgt_mask=nn.Transformer.generate_square_subsequent_mask(T, dtype=f64), tgt_is_causal=True,
              src_key_padding_mask=src_kpm, memory_key_padding_mask=src_kpm)
    out_t, out_o = ref(src, tgt, **kw), ours(src, tgt, **kw)
    _assert_same(out_o, out_t, [src, tgt, *ours.parameters()], [src, tgt, *ref.parameters()])


def test_paper_base_shape_parameter_count():
    # nn.Transformer(d_model=512, nhead=8, 6+6 layers): the base model of "Attention Is All You Need".
    with torch.device("meta"):
        ours, ref = Transformer(), nn.Transformer()
    assert count_parameters(ours) == count_parameters(ref) == 44_140_544


def test_state_dict_loads_into_torch_transformer():
    ours = Transformer(D, NH, 1, 1, FF, dropout=0.0, dtype=f64)
    ref = nn.Transformer(D, NH, 1, 1, FF, dropout=0.0, dtype=f64)
    ref.load_state_dict(ours.state_dict())
    src, tgt = torch.randn(S, N, D, dtype=f64), torch.randn(T, N, D, dtype=f64)
    torch.testing.assert_close(ours(src, tgt), ref(src, tgt), atol=TOL, rtol=0)


def test_layers_are_independent_copies():
    enc = TransformerEncoder(TransformerEncoderLayer(D, NH, FF), 3, norm=LayerNorm(D))
    assert len(enc.layers) == 3
    assert enc.layers[0].linear1.weight.data_ptr() != enc.layers[1].linear1.weight.data_ptr()
    with pytest.raises(ConfigError, match="num_layers must be >= 1, got 0"):
        TransformerDecoder(TransformerDecoderLayer(D, NH, FF), 0)


def test_a_small_transformer_learns_to_copy():
    # Loss must really fall: a 1+1-layer model learns to reproduce its source sequence.
    torch.manual_seed(0)
    V, L = 8, 6
    emb, model, head = nn.Embedding(V, D), Transformer(D, NH, 1, 1, 32, dropout=0.0, batch_first=True), nn.Linear(D, V)
    params = [*emb.parameters(), *model.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=3e-3)
    mask = Transformer.generate_square_subsequent_mask(L)
    losses = []
    pe = SinusoidalPositionalEncoding(D, max_len=L)
    for _ in range(100):
        src = torch.randint(1, V, (16, L))
        tgt_in = torch.cat([torch.zeros(16, 1, dtype=torch.long), src[:, :-1]], dim=1)  # 0 = start token
        logits = head(model(pe(emb(src)), pe(emb(tgt_in)), tgt_mask=mask, tgt_is_causal=True))
        loss = nn.functional.cross_entropy(logits.reshape(-1, V), src.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses


def test_batch_mismatch_is_a_config_error():
    model = Transformer(D, NH, 1, 1, FF)
    with pytest.raises(ConfigError, match="same batch size, got 2 and 3"):
        model(torch.randn(S, 2, D), torch.randn(T, 3, D))
    with pytest.raises(ConfigError, match="d_model=16 features, got 16 and 8"):
        model(torch.randn(S, 2, D), torch.randn(T, 2, 8))


@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("batch_first, norm_first", [(False, False), (True, True)])
def test_decoder_step_by_step_with_cache_equals_full_pass(impl, batch_first, norm_first):
    decoder = set_impl(TransformerDecoder(TransformerDecoderLayer(D, NH, FF, dropout=0.0, batch_first=batch_first,
                                                                  norm_first=norm_first, dtype=f64), 2,
                                          norm=LayerNorm(D, dtype=f64)), impl).eval()
    seq = 1 if batch_first else 0  # the length dimension
    tgt = torch.randn((N, T, D) if batch_first else (T, N, D), dtype=f64)
    memory = torch.randn((N, S, D) if batch_first else (S, N, D), dtype=f64)
    memory_kpm = torch.zeros(N, S, dtype=torch.bool)
    memory_kpm[1, -2:] = True
    full = decoder(tgt, memory, tgt_is_causal=True, memory_key_padding_mask=memory_kpm)
    caches = decoder.new_cache()
    # A 2-position prefix, then one position at a time.
    steps = [decoder(tgt.narrow(seq, 0, 2), memory, tgt_is_causal=True, memory_key_padding_mask=memory_kpm,
                     kv_caches=caches)]
    steps += [decoder(tgt.narrow(seq, t, 1), memory, tgt_is_causal=True, memory_key_padding_mask=memory_kpm,
                      kv_caches=caches) for t in range(2, T)]
    torch.testing.assert_close(torch.cat(steps, dim=seq), full, atol=1e-10, rtol=0)
    assert len(caches[0][0]) == T and len(caches[0][1]) == S
