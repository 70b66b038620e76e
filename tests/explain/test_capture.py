"""One watched forward pass: attention weights as the models themselves report them, nothing left behind."""

from __future__ import annotations

import torch

from archlab.explain.capture import capture
from archlab.registry import create_model


def _no_hooks_left(model):
    for m in model.modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, type(m).__name__
        assert not getattr(m, "_weights_hooks", {}), type(m).__name__
        assert "attend" not in vars(m)


def test_gpt_attention_equals_return_attentions_and_the_fused_path_is_kept(monkeypatch):
    import archlab.nn.attention as attention

    gpt = create_model("gpt", vocab_size=40, block_size=16, n_layer=2, n_head=2, d_model=16).train()
    ids = torch.randint(0, 40, (1, 10))
    got = capture(gpt, lambda: gpt(ids))
    assert gpt.training  # the mode it was in
    _no_hooks_left(gpt)
    _, expected = gpt.eval()(ids, return_attentions=True)
    assert [a.name for a in got.attention] == ["h.0.attn", "h.1.attn"]
    for a, w in zip(got.attention, expected):
        assert a.kind == "multi-head" and a.weights.shape == (2, 10, 10)
        torch.testing.assert_close(a.weights, w[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(got.output, gpt(ids), rtol=0, atol=1e-5)  # the same function
    # Every layer ran and has statistics; the attention module counts as called (through attend).
    names = [n for n, _, _ in got.order]
    assert "h.0.attn" in names and "h.0.attn.out_proj" in names and "lm_head" in names
    assert got.stats["h.0.mlp.1"].shape == (1, 10, 64)
    # Afterwards the fused kernel serves ordinary calls again.
    calls = []
    kernel = attention.F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or kernel(*a, **k))
    gpt(ids)
    assert len(calls) == 2


def test_recurrent_inputs_and_seq2seq_alignment():
    m = create_model("seq2seq_rnn", src_vocab_size=20, tgt_vocab_size=20, embed_dim=8, hidden_size=12,
                     cell="lstm").eval()
    src, tgt = torch.randint(3, 20, (1, 6)), torch.randint(3, 20, (1, 4))
    got = capture(m, lambda: m(src, tgt))
    _no_hooks_left(m)
    (alpha,) = [a for a in got.attention if a.name == "attention"]
    _, expected = m(src, tgt, return_attention=True)
    assert alpha.kind == "additive" and alpha.weights.shape == (1, 4, 6)
    torch.testing.assert_close(alpha.weights[0], expected[0], rtol=0, atol=1e-6)
    enc, dec = got.recurrent["encoder"], got.recurrent["decoder"]
    torch.testing.assert_close(enc.x, m.src_embedding(src)[0], rtol=0, atol=0)  # packed, one sequence
    assert enc.output.shape == (6, 12) and dec.x.shape == (4, 8) and dec.h0.shape == (1, 12) and dec.c0.shape == (1, 12)


def test_relu_zeros_and_tanh_saturation_are_counted():
    lenet = create_model("lenet5", activation="relu").eval()
    got = capture(lenet, lambda: lenet(torch.randn(1, 1, 32, 32)))
    relu = got.stats["features.1"]
    assert 0.0 < relu.zeros < 1.0 and relu.saturated is None
    assert got.maps["features.0"].shape == (6, 28, 28) and got.maps["features.5"].shape == (16, 5, 5)
    assert "classifier.0" not in got.maps  # a dense layer's output is not a feature map
    tanh = create_model("lenet5").eval()
    big = capture(tanh, lambda: tanh(100 * torch.randn(1, 1, 32, 32)))
    assert big.stats["features.1"].saturated > 0.5
