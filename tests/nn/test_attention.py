"""Scaled dot-product and multi-head attention against torch.nn.MultiheadAttention, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from archlab.errors import ConfigError
from archlab.nn import KVCache, MultiHeadAttention, causal_mask, scaled_dot_product_attention

E, NH, N, L, S = 16, 4, 3, 5, 7
TOL = 1e-5  # float64 parity tolerance with torch
f64 = torch.float64


def _grads(out, inputs, params, seed=1):
    """Gradients of a fixed random projection of ``out`` w.r.t. inputs and parameters."""
    g = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(seed))
    return torch.autograd.grad((out * g).sum(), [*inputs, *params], allow_unused=True)


def _masks(case, batch_first):
    """(key_padding_mask, attn_mask, is_causal, self-attention?) in torch's convention."""
    kpm_bool = torch.zeros(N, S, dtype=torch.bool)
    kpm_bool[1, 4:] = True  # the second example has 3 padded keys
    if case == "self":
        return None, None, False, True
    if case == "causal":
        return None, nn.Transformer.generate_square_subsequent_mask(L, dtype=f64), True, True
    if case == "cross":
        return None, None, False, False
    if case == "kpm_bool":
        return kpm_bool, None, False, False
    if case == "kpm_float":
        return torch.zeros(N, S, dtype=f64).masked_fill(kpm_bool, float("-inf")), None, False, False
    if case == "mask2d_bool":
        return kpm_bool, torch.rand(L, S) > 0.8, False, False
    if case == "mask3d_float":
        return None, torch.randn(N * NH, L, S, dtype=f64), False, False
    raise AssertionError(case)


@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("case", ["self", "causal", "cross", "kpm_bool", "kpm_float", "mask2d_bool", "mask3d_float"])
def test_mha_matches_torch(impl, batch_first, case):
    kpm, attn_mask, is_causal, self_attention = _masks(case, batch_first)
    kdim = None if case != "cross" else 12  # cross-attention from a memory with another width
    ref = nn.MultiheadAttention(E, NH, kdim=kdim, vdim=kdim, batch_first=batch_first, dtype=f64)
    ours = MultiHeadAttention.from_torch(ref)
    ours.impl = impl
    shape = (lambda T, D: (N, T, D)) if batch_first else (lambda T, D: (T, N, D))
    q = torch.randn(shape(L, E), dtype=f64, requires_grad=True)
    if self_attention:
        k = v = q
    else:
        k = torch.randn(shape(S, kdim or E), dtype=f64, requires_grad=True)
        v = torch.randn(shape(S, kdim or E), dtype=f64, requires_grad=True)
    inputs = [q] if self_attention else [q, k, v]
    for average in (True, False):
        kw = dict(key_padding_mask=kpm, attn_mask=attn_mask, is_causal=is_causal, need_weights=True,
                  average_attn_weights=average)
        out_t, w_t = ref(q, k, v, **kw)
        out_o, w_o = ours(q, k, v, **kw)
        assert out_o.shape == out_t.shape and w_o.shape == w_t.shape
        torch.testing.assert_close(out_o, out_t, atol=TOL, rtol=0)
        torch.testing.assert_close(w_o, w_t, atol=TOL, rtol=0)
    # Gradients, through the fused kernel too (need_weights=False).
    kw["need_weights"] = False
    out_t, out_o = ref(q, k, v, **kw)[0], ours(q, k, v, **kw)[0]
    for gt, go in zip(_grads(out_t, inputs, list(ref.parameters())), _grads(out_o, inputs, list(ours.parameters()))):
        torch.testing.assert_close(go, gt, atol=TOL, rtol=0)


def test_unbatched_input_matches_torch():
    ref = nn.MultiheadAttention(E, NH, dtype=f64)
    ours = MultiHeadAttention.from_torch(ref)
    x = torch.randn(L, E, dtype=f64)
    attn_mask = torch.rand(NH, L, L) > 0.7
    attn_mask[:, :, 0] = False  # every row keeps a key, as torch returns NaN otherwise
    out_t, w_t = ref(x, x, x, attn_mask=attn_mask, average_attn_weights=False)
    out_o, w_o = ours(x, x, x, attn_mask=attn_mask, average_attn_weights=False)
    assert out_o.shape == (L, E) and w_o.shape == (NH, L, L)
    torch.testing.assert_close(out_o, out_t, atol=TOL, rtol=0)
    torch.testing.assert_close(w_o, w_t, atol=TOL, rtol=0)


@pytest.mark.parametrize("kdim", [None, 12])
def test_state_dict_interchanges_with_torch(kdim):
    ours = MultiHeadAttention(E, NH, kdim=kdim, vdim=kdim, batch_first=True, dtype=f64)
    ref = nn.MultiheadAttention(E, NH, kdim=kdim, vdim=kdim, batch_first=True, dtype=f64)
    assert list(ours.state_dict()) == list(ref.state_dict())
    assert [p.shape for p in ours.parameters()] == [p.shape for p in ref.parameters()]
    ref.load_state_dict(ours.state_dict())  # ours -> torch
    q, kv = torch.randn(N, L, E, dtype=f64), torch.randn(N, S, kdim or E, dtype=f64)
    torch.testing.assert_close(ours(q, kv, kv)[0], ref(q, kv, kv)[0], atol=TOL, rtol=0)
    fresh = MultiHeadAttention(E, NH, kdim=kdim, vdim=kdim, batch_first=True, dtype=f64)
    fresh.load_state_dict(ref.state_dict())  # torch -> ours
    torch.testing.assert_close(fresh(q, kv, kv)[0], ref(q, kv, kv)[0], atol=TOL, rtol=0)


def test_readable_names_are_views_of_the_packed_weight():
    m = MultiHeadAttention(E, NH)
    assert torch.equal(torch.cat([m.W_q, m.W_k, m.W_v]), m.in_proj_weight)
    assert m.W_o is m.out_proj
    assert m.W_q.data_ptr() == m.in_proj_weight.data_ptr()  # a view, not a copy


@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_reference_and_fused_agree_forward_and_backward(mask_kind):
    q, k, v = (torch.randn(2, NH, L, 8, dtype=f64, requires_grad=True) for _ in range(3))
    keep = torch.rand(2, 1, L, L) > 0.4
    keep[..., 0] = True
    mask = keep if mask_kind == "bool" else torch.randn(2, 1, L, L, dtype=f64).masked_fill(~keep, float("-inf"))
    results = []
    for impl in ("reference", "fused"):
        out, w = scaled_dot_product_attention(q, k, v, mask=mask, is_causal=True, impl=impl)
        results.append((out, *_grads(out, [q, k, v], [])))
        assert w is None
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=TOL, rtol=0)


@pytest.mark.parametrize("mask_kind", ["none", "bool", "float", "causal", "causal+bool"])
def test_cpu_inference_products_equal_the_fused_kernel(mask_kind, monkeypatch):
    # Without gradients on a CPU, short attention runs as baddbmm + softmax + bmm: the same function
    # as torch's fused kernel, dead rows included; with gradients, or past the size limit, the kernel.
    import torch.nn.functional as F

    from archlab.nn import attention

    q = torch.randn(2, NH, L, 8, dtype=f64)
    k, v = torch.randn(2, NH, L, 8, dtype=f64), torch.randn(2, NH, L, 6, dtype=f64)
    keep = torch.rand(2, 1, 1, L) > 0.4
    keep[0] = False  # the first example attends to nothing: zeros on every path
    mask = {"bool": keep, "float": torch.randn(2, NH, L, L, dtype=f64), "causal+bool": keep}.get(mask_kind)
    causal = mask_kind.startswith("causal")
    calls = []
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda *a, _f=F.scaled_dot_product_attention, **kw: calls.append(1) or _f(*a, **kw))
    with torch.no_grad():
        products, _ = scaled_dot_product_attention(q, k, v, mask=mask, is_causal=causal, training=False)
        assert not calls  # no kernel call: the products did it
        reference, _ = scaled_dot_product_attention(q, k, v, mask=mask, is_causal=causal, impl="reference")
        monkeypatch.setattr(attention, "PRODUCTS_MAX_KEYS_DEFAULT", L - 1)  # too many keys: the kernel
        kernel, _ = scaled_dot_product_attention(q, k, v, mask=mask, is_causal=causal, training=False)
        assert calls
    torch.testing.assert_close(products, reference, atol=1e-12, rtol=0)
    torch.testing.assert_close(products, kernel, atol=1e-12, rtol=0)
    calls.clear()
    scaled_dot_product_attention(q.requires_grad_(), k, v, mask=mask, is_causal=causal)
    assert calls  # gradients wanted: the kernel


def test_reference_path_is_the_written_equation():
    q, k, v = (torch.randn(1, 1, 4, 8, dtype=f64) for _ in range(3))
    out, w = scaled_dot_product_attention(q, k, v, need_weights=True, impl="reference")
    expected_w = torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5, dim=-1)
    torch.testing.assert_close(w, expected_w, atol=1e-12, rtol=0)
    torch.testing.assert_close(out, expected_w @ v, atol=1e-12, rtol=0)


def test_scale_replaces_one_over_sqrt_dk_on_both_paths():
    # T5 attends without the 1/sqrt(d_k) factor and adds a float bias (its relative positions) to the scores.
    q, k, v = (torch.randn(2, NH, L, 8, dtype=f64, requires_grad=True) for _ in range(3))
    bias = torch.randn(1, NH, L, L, dtype=f64)
    expected_w = torch.softmax(q @ k.transpose(-2, -1) + bias, dim=-1)
    results = []
    for impl in ("reference", "fused"):
        out, _ = scaled_dot_product_attention(q, k, v, mask=bias, is_causal=True, scale=1.0, impl=impl)
        results.append((out, *_grads(out, [q, k, v], [])))
    expected = expected_w.masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), 0.0)
    expected = expected / expected.sum(-1, keepdim=True)  # the causal mask, then renormalised
    torch.testing.assert_close(results[0][0], expected @ v, atol=1e-12, rtol=0)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=TOL, rtol=0)


@pytest.mark.parametrize("impl", ["reference", "fused"])
@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_fully_masked_rows_give_zeros_not_nan(impl, mask_kind):
    q, k, v = (torch.randn(2, 2, 3, 4, dtype=f64, requires_grad=True) for _ in range(3))
    keep = torch.ones(2, 1, 3, 3, dtype=torch.bool)
    keep[0, :, 1, :] = False  # query 1 of example 0 may attend to nothing
    mask = keep if mask_kind == "bool" else torch.zeros(keep.shape, dtype=f64).masked_fill(~keep, float("-inf"))
    out, w = scaled_dot_product_attention(q, k, v, mask=mask, impl=impl, need_weights=impl == "reference")
    assert torch.equal(out[0, :, 1], torch.zeros_like(out[0, :, 1]))
    assert out[0, :, 0].abs().sum() > 0
    if w is not None:
        assert torch.equal(w[0, :, 1], torch.zeros_like(w[0, :, 1]))
    grads = torch.autograd.grad(out.sum(), [q, k, v])
    assert all(torch.isfinite(g).all() for g in grads)


def test_fully_padded_example_through_the_module_gives_zeros():
    m = MultiHeadAttention(E, NH, batch_first=True)
    x = torch.randn(2, L, E, requires_grad=True)
    kpm = torch.zeros(2, L, dtype=torch.bool)
    kpm[1] = True  # every key of example 1 is padding
    out, w = m(x, x, x, key_padding_mask=kpm)
    # Output of a query that attends to nothing: W_o applied to zeros, i.e. the output bias.
    torch.testing.assert_close(out[1], m.out_proj.bias.expand(L, E))
    assert torch.isfinite(out).all() and torch.equal(w[1], torch.zeros(L, L))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_kv_cache_steps_equal_full_causal_attention(impl):
    m = MultiHeadAttention(E, NH, batch_first=True, dtype=f64).eval()
    m.impl = impl
    x = torch.randn(2, 6, E, dtype=f64)
    full, _ = m.attend(x, is_causal=True)
    cache = KVCache()
    first, _ = m.attend(x[:, :3], is_causal=True, kv_cache=cache)  # a prompt of 3 ...
    # ... then one token at a time
    steps = [first] + [m.attend(x[:, t: t + 1], is_causal=True, kv_cache=cache)[0] for t in range(3, 6)]
    assert len(cache) == 6
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-12, rtol=0)


def test_cross_attention_cache_reuses_the_context():
    m = MultiHeadAttention(E, NH, batch_first=True, dtype=f64).eval()
    x, memory = torch.randn(2, 3, E, dtype=f64), torch.randn(2, S, E, dtype=f64)
    cache = KVCache()
    a, _ = m.attend(x, memory, kv_cache=cache)
    b, _ = m.attend(x, torch.zeros_like(memory), kv_cache=cache)  # cached K, V are used, not this context
    torch.testing.assert_close(a, m.attend(x, memory)[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    assert len(cache) == S


def test_causal_mask_is_bottom_right_aligned():
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    assert torch.equal(causal_mask(1, 4), torch.ones(1, 4, dtype=torch.bool))  # a new token sees all the past


def test_attention_weights_never_look_at_the_future():
    m = MultiHeadAttention(E, NH, batch_first=True)
    _, w = m.attend(torch.randn(2, L, E), is_causal=True, need_weights=True, average_attn_weights=False)
    assert w.shape == (2, NH, L, L)
    assert torch.equal(w.triu(diagonal=1), torch.zeros_like(w))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, NH, L))


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_bf16_autocast(impl):
    m = MultiHeadAttention(E, NH, batch_first=True)
    m.impl = impl
    x = torch.randn(2, L, E)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = m.attend(x, is_causal=True)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), m.attend(x, is_causal=True)[0], atol=0.1, rtol=0.05)


def test_dropout_on_weights_in_training_only():
    m = MultiHeadAttention(E, NH, dropout=0.5, batch_first=True)
    x = torch.randn(2, L, E)
    m.eval()
    torch.testing.assert_close(m.attend(x)[0], m.attend(x)[0])
    m.train()
    assert not torch.allclose(m.attend(x)[0], m.attend(x)[0])


@pytest.mark.parametrize("kwargs, words", [
    (dict(embed_dim=16, num_heads=5), ["num_heads", "embed_dim=16", "5"]),
    (dict(embed_dim=16, num_heads=4, add_bias_kv=True), ["add_bias_kv"]),
    (dict(embed_dim=16, num_heads=4, dropout=1.5), ["dropout", "1.5"]),
])
def test_bad_constructor_arguments(kwargs, words):
    with pytest.raises(ConfigError) as e:
        MultiHeadAttention(**kwargs)
    assert all(w in str(e.value) for w in words)


@pytest.mark.parametrize("call, words", [
    (lambda m, x: m(torch.randn(2, L, 8), torch.randn(2, L, 8), torch.randn(2, L, 8)), ["embed_dim=16", "8"]),
    (lambda m, x: m(x, x, x, attn_mask=torch.zeros(L, L + 1, dtype=torch.bool)), ["attn_mask", "(5, 5)", "(5, 6)"]),
    (lambda m, x: m(x, x, x, attn_mask=torch.zeros(3, L, L, dtype=torch.bool)),
     ["attn_mask", "(8, 5, 5)", "(3, 5, 5)"]),
    (lambda m, x: m(x, x, x, key_padding_mask=torch.zeros(2, L - 1, dtype=torch.bool)),
     ["key_padding_mask", "(2, 5)", "(2, 4)"]),
    (lambda m, x: m.attend(x, mask=torch.ones(3, 1, L, L, dtype=torch.bool)), ["mask", "(2, 4, 5, 5)", "(3, 1, 5, 5)"]),
    (lambda m, x: m.attend(x, torch.randn(2, L, 8)), ["context", "kdim=16", "(2, 5, 8)"]),
])
def test_bad_inputs_name_argument_expected_and_given(call, words):
    m = MultiHeadAttention(E, NH, batch_first=True)
    with pytest.raises(ConfigError) as e:
        call(m, torch.randn(2, L, E))
    assert all(w in str(e.value) for w in words), str(e.value)


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_float_mask_in_another_dtype_follows_the_scores(impl):
    m = MultiHeadAttention(E, NH, batch_first=True, dtype=f64)
    m.impl = impl
    x = torch.randn(2, L, E, dtype=f64)
    bias32 = torch.randn(L, L)  # float32 additive mask, float64 scores
    out, _ = m(x, x, x, attn_mask=bias32, need_weights=False)
    expected, _ = m(x, x, x, attn_mask=bias32.double(), need_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_bf16, _ = m.float()(x.float(), x.float(), x.float(), key_padding_mask=torch.zeros(2, L), attn_mask=bias32)
    assert out_bf16.dtype == torch.bfloat16 and torch.isfinite(out_bf16).all()


def test_kv_cache_reorder_keeps_the_chosen_rows():
    cache = KVCache()
    k, v = torch.randn(3, NH, 2, 4), torch.randn(3, NH, 2, 4)
    cache.update(k, v)
    cache.reorder(torch.tensor([2, 2, 0]))  # beam search: rows 2, 2 and 0 survive
    assert torch.equal(cache.k, k[[2, 2, 0]]) and torch.equal(cache.v, v[[2, 2, 0]])
    cache.update(k, v)
    assert len(cache) == 4


def test_weights_hook_sees_every_call_and_the_fused_kernel_serves_the_rest(monkeypatch):
    import archlab.nn.attention as attention

    fused_calls = []
    kernel = attention.F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention",
                        lambda *a, **kw: fused_calls.append(1) or kernel(*a, **kw))
    m = MultiHeadAttention(E, NH, batch_first=True).to(f64).eval()
    x, ctx = torch.randn(2, L, E, dtype=f64), torch.randn(2, S, E, dtype=f64)
    plain = m.attend(x, is_causal=True)[0]
    assert len(fused_calls) == 1  # no hook: the fused kernel

    seen = []
    handle = m.register_weights_hook(lambda module, w: seen.append((module, w)))
    watched, none = m.attend(x, is_causal=True)
    assert none is None and len(fused_calls) == 1  # the weights were computed, on the reference path
    torch.testing.assert_close(watched, plain, rtol=0, atol=1e-12)  # float64: the same function
    _, expected = m.attend(x, is_causal=True, need_weights=True, average_attn_weights=False)
    assert seen[0][0] is m and seen[0][1].shape == (2, NH, L, L)
    torch.testing.assert_close(seen[0][1], expected, rtol=0, atol=0)
    m(x, ctx, ctx, need_weights=False)  # torch's entry point, cross-attention
    assert seen[-1][1].shape == (2, NH, L, S) and len(seen) == 3
    handle.remove()
    m.attend(x)
    assert len(seen) == 3 and len(fused_calls) == 2
