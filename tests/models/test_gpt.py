"""GPT: shapes, exact parameter counts, causality, KV cache, generation, and Hugging Face GPT-2 weights."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab.errors import CheckpointError, ConfigError
from archlab.models.gpt import GPT2_COMMON, GPT2_SIZES
from archlab.nn import set_impl
from archlab.utils.runtime import count_parameters

TINY = dict(vocab_size=50, block_size=32, n_layer=2, n_head=4, d_model=32)


def tiny(**kw):
    return archlab.create_model("gpt", **{**TINY, **kw})


def test_create_and_forward_shape():
    model = tiny()
    logits = model(torch.randint(0, 50, (3, 10)))
    assert logits.shape == (3, 10, 50)
    assert model.lm_head.weight is model.wte.weight  # tied head


def test_exact_parameter_counts():
    # wte 50*32 + wpe 32*32 + 2 blocks * (2 LN 2*64 + qkv 32*96+96 + W_o 32*32+32 + FFN 32*128+128+128*32+32) + ln_f 64
    assert count_parameters(tiny()) == 1600 + 1024 + 2 * (128 + 3168 + 1056 + 8352) + 64 == 28_096
    with torch.device("meta"):
        gpt2 = archlab.create_model("gpt", **GPT2_COMMON, **GPT2_SIZES["gpt2"])
    assert count_parameters(gpt2) == 124_439_808  # GPT-2 small, as published by Hugging Face


def test_future_tokens_never_change_past_logits():
    model = tiny().eval()
    x = torch.randint(0, 50, (2, 12))
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % 50
    a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :6], b[:, :6], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_without_the_causal_mask_future_tokens_change_past_logits():
    masked, open_ = tiny().double().eval(), tiny(causal=False).double().eval()
    open_.load_state_dict(masked.state_dict())  # the same weights: the mask is the only difference
    x = torch.randint(0, 50, (2, 12))
    y = x.clone()
    y[:, 6:] = (y[:, 6:] + 1) % 50
    assert torch.equal(masked(x)[:, :6], masked(y)[:, :6])  # exactly: the future's weights are 0
    assert (open_(x)[:, :6] - open_(y)[:, :6]).abs().max() > 1e-3


@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_cached_logits_equal_uncached(impl):
    model = set_impl(tiny().double().eval(), impl)
    x = torch.randint(0, 50, (2, 9))
    full = model(x)
    caches = model.new_cache()
    steps = [model(x[:, :4], kv_caches=caches)] + [model(x[:, t: t + 1], kv_caches=caches) for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-10, rtol=0)


def test_reference_and_fused_paths_agree():
    model = tiny(dropout=0.0).double()
    x = torch.randint(0, 50, (2, 8))
    fused = model(x)
    reference = set_impl(model, "reference")(x)
    torch.testing.assert_close(reference, fused, atol=1e-10, rtol=0)


@pytest.mark.parametrize("prompt_len, new", [(3, 10), (5, 40)])  # the second slides past block_size=32
def test_greedy_generation_same_with_and_without_cache(prompt_len, new):
    model = tiny().double()
    prompt = torch.randint(0, 50, (2, prompt_len))
    with_cache = model.generate(prompt, new, use_cache=True)
    without = model.generate(prompt, new, use_cache=False)
    assert with_cache.shape == (2, prompt_len + new)
    assert torch.equal(with_cache[:, :prompt_len], prompt)
    assert torch.equal(with_cache, without)
    assert model.training  # the mode is restored after generating in eval mode


def test_sampling_is_seeded_and_top_k_1_is_greedy():
    model = tiny().eval()
    prompt = torch.randint(0, 50, (2, 3))
    kw = dict(do_sample=True, temperature=1.5, top_p=0.9)
    a = model.generate(prompt, 8, **kw, generator=torch.Generator().manual_seed(1))
    b = model.generate(prompt, 8, **kw, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert torch.equal(model.generate(prompt, 8, do_sample=True, top_k=1), model.generate(prompt, 8))


def test_attention_weights_on_request():
    model = tiny().eval()
    x = torch.randint(0, 50, (2, 7))
    logits, attentions = model(x, return_attentions=True)
    torch.testing.assert_close(logits, model(x), atol=1e-5, rtol=0)
    assert len(attentions) == 2 and attentions[0].shape == (2, 4, 7, 7)
    for w in attentions:
        assert torch.equal(w.triu(diagonal=1), torch.zeros_like(w))  # masked attention never sees the future
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 7))


def test_loss_falls_when_training():
    torch.manual_seed(0)
    model = tiny(vocab_size=8, block_size=16)
    data = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7] * 4)
    x, y = data[:-1].view(1, -1)[:, :16].repeat(4, 1), data[1:].view(1, -1)[:, :16].repeat(4, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses
    assert all(p.grad is not None for p in model.parameters())  # every parameter receives a gradient


def test_bf16_autocast():
    model = tiny()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randint(0, 50, (2, 6)))
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


def test_save_and_load_round_trip(tmp_path):
    model = tiny().eval()
    model.save_pretrained(tmp_path)
    loaded = archlab.from_pretrained(tmp_path)
    x = torch.randint(0, 50, (2, 5))
    torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    assert loaded.lm_head.weight is loaded.wte.weight


@pytest.mark.parametrize("call, words", [
    (lambda m: m(torch.tensor([[1, 2, 50]])), ["input_ids", "vocab_size=50", "[1, 50]"]),
    (lambda m: m(torch.zeros(1, 33, dtype=torch.long)), ["block_size=32", "33"]),
    (lambda m: m(torch.zeros(1, 4)), ["input_ids", "torch.float32"]),
    (lambda m: m.generate(torch.zeros(1, 2, dtype=torch.long), 3, do_sample=True, temperature=0), ["temperature", "0"]),
])
def test_bad_input_names_argument_expected_and_given(call, words):
    with pytest.raises(ConfigError) as e:
        call(tiny())
    assert all(w in str(e.value) for w in words), str(e.value)


def test_bad_config():
    with pytest.raises(ConfigError, match="n_head must divide d_model=32, got n_head=5"):
        tiny(n_head=5)
    with pytest.raises(ConfigError, match="no field.*n_embd"):
        archlab.create_model("gpt", n_embd=32)


# ---------------------------------------------------------------------------------------------- Hugging Face GPT-2

def _hf_gpt2(tmp_path, fmt):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=50, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                  bos_token_id=0, eos_token_id=0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():  # random biases and norms, so every mapped tensor matters
        for name, p in hf.named_parameters():
            if p.dim() == 1:
                p.normal_(std=0.1)
    if fmt == "safetensors":
        hf.save_pretrained(tmp_path)
    else:  # the older format: pytorch_model.bin, a plain state_dict read with weights_only=True
        cfg.save_pretrained(tmp_path)
        torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    return hf


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_hf_gpt2_checkpoint_gives_the_same_logits(tmp_path, fmt):
    hf = _hf_gpt2(tmp_path, fmt)
    ours = archlab.from_pretrained(tmp_path)
    assert ours.config.activation == "gelu_tanh" and ours.config.n_layer == 2
    x = torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        expected = hf(x).logits
    torch.testing.assert_close(ours(x), expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(set_impl(ours, "reference")(x), expected, atol=1e-4, rtol=0)
    # Greedy continuations agree too.
    with torch.no_grad():
        hf_tokens = hf.generate(x[:, :4], max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(x[:, :4], 6), hf_tokens)


def test_hf_gpt2_checkpoint_with_a_missing_weight_is_refused(tmp_path):
    hf = _hf_gpt2(tmp_path, "bin")
    state = hf.state_dict()
    del state["transformer.h.1.mlp.c_fc.bias"]
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="h.1.mlp.0.bias"):
        archlab.from_pretrained(tmp_path)


def test_hf_gpt2_unsupported_option_is_refused(tmp_path):
    _hf_gpt2(tmp_path, "safetensors")
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["scale_attn_by_inverse_layer_idx"] = True
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="scale_attn_by_inverse_layer_idx"):
        archlab.from_pretrained(tmp_path)
