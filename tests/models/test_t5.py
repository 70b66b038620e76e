"""T5: parameter counts and logits equal to Hugging Face's, cached decoding equal to uncached, two vocabularies."""

from __future__ import annotations

import json
import os

import pytest
import torch

import archlab
from archlab.errors import CheckpointError, ConfigError
from archlab.models.t5 import T5, T5Config
from archlab.nn import set_impl
from archlab.utils.runtime import count_parameters

# Everything here is local: the hub reads this once, when transformers is first imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = dict(src_vocab_size=40, tgt_vocab_size=40, d_model=32, d_kv=6, d_ff=48, num_layers=2, num_decoder_layers=3,
            num_heads=4, num_buckets=8, max_distance=20, dropout=0.0)  # nh * hs = 24 != d_model: T5 allows it
TOL = 1e-5  # float32 logits against transformers, the precision checkpoints are used in

pytestmark = pytest.mark.usefixtures("one_thread")  # small kernels: see tests/conftest.py


def _ids(vocab: int, shape, pad_after=None, seed=0):
    ids = torch.randint(3, vocab, shape, generator=torch.Generator().manual_seed(seed))
    for row, n in (pad_after or {}).items():
        ids[row, n:] = 0
    return ids


# ------------------------------------------------------------------------------------------------
# Published sizes
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, hf_fields", [
    ("t5_small", dict(d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_heads=8)),
    ("t5_base", dict(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)),
])
def test_parameter_counts_equal_hugging_face(name, hf_fields):
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        hf = transformers.T5ForConditionalGeneration(transformers.T5Config(vocab_size=32128, **hf_fields))
        ours = archlab.create_model(name)
    assert count_parameters(ours) == hf.num_parameters() == {"t5_small": 60_506_624, "t5_base": 222_903_552}[name]


# ------------------------------------------------------------------------------------------------
# Hugging Face checkpoints
# ------------------------------------------------------------------------------------------------

def _hf_t5(flavour: str):
    """A tiny random T5ForConditionalGeneration: v1.0 (ReLU, tied head) or v1.1 (gated GELU, untied head)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    v11 = flavour == "v1.1"
    config = transformers.T5Config(
        vocab_size=40, d_model=32, d_kv=6, d_ff=48, num_layers=2, num_decoder_layers=3, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=20, dropout_rate=0.0,
        feed_forward_proj="gated-gelu" if v11 else "relu", decoder_start_token_id=0,
        **({"tie_word_embeddings": False} if v11 else {}))
    model = transformers.T5ForConditionalGeneration(config).eval()
    if v11:  # an untied output matrix of its own, as the v1.1 checkpoints have
        model.lm_head = torch.nn.Linear(32, 40, bias=False)
        model.config.tie_word_embeddings = False
    with torch.no_grad():  # RMSNorm gains start at 1: make them informative
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.normal_(1.0, 0.3)
    return model


@pytest.fixture(scope="module")
def hf_checkpoints(tmp_path_factory):
    out = {}
    for flavour in ("v1.0", "v1.1"):
        path = tmp_path_factory.mktemp(f"t5_{flavour}")
        model = _hf_t5(flavour)
        model.save_pretrained(path)
        if flavour == "v1.1":  # the older format: pickled weights, loaded weights-only
            from safetensors.torch import load_file

            torch.save(load_file(path / "model.safetensors"), path / "pytorch_model.bin")
            (path / "model.safetensors").unlink()
        out[flavour] = (path, model)
    return out


@pytest.mark.parametrize("flavour", ["v1.0", "v1.1"])
@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_hugging_face_t5_logits_equal_transformers(hf_checkpoints, flavour, impl):
    path, hf = hf_checkpoints[flavour]
    ours = set_impl(archlab.from_pretrained(path), impl)
    c = ours.config
    assert (c.feed_forward, c.tie_output, c.output_scaled) == (
        ("relu", True, True) if flavour == "v1.0" else ("gated-gelu", False, False))
    assert count_parameters(ours) == hf.num_parameters()
    src = _ids(40, (3, 9), {1: 6, 2: 3})  # padded sources
    dec = _ids(40, (3, 7), seed=1)
    dec[:, 0] = 0  # T5 starts the decoder with the pad token
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=(src != 0).long(), decoder_input_ids=dec).logits
        got = ours(src, dec)
    torch.testing.assert_close(got, ref, atol=TOL, rtol=0)


def test_greedy_output_equals_transformers_generate(hf_checkpoints):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(transformers.T5Config(  # generate wants equal stacks
        vocab_size=40, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
        relative_attention_max_distance=20, dropout_rate=0.0, feed_forward_proj="gated-gelu",
        decoder_start_token_id=0)).eval()
    path = hf_checkpoints["v1.0"][0].parent / "t5_generate"
    hf.save_pretrained(path)
    ours = archlab.from_pretrained(path)
    src = _ids(40, (3, 9), {1: 6, 2: 3})
    with torch.no_grad():
        ref = hf.generate(input_ids=src, attention_mask=(src != 0).long(), max_new_tokens=12, do_sample=False,
                          num_beams=1)[:, 1:]  # without the start token
    got = ours.translate(src, max_len=12)
    assert torch.equal(got[:, : ref.size(1)], ref)


def test_checkpoint_that_does_not_fit_is_a_clear_error(hf_checkpoints, tmp_path):
    path = hf_checkpoints["v1.0"][0]
    for name in ("config.json", "model.safetensors"):
        (tmp_path / name).write_bytes((path / name).read_bytes())
    cfg = json.loads((path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "feed_forward_proj": "gated-silu"}))
    with pytest.raises(CheckpointError, match="feed_forward_proj must be one of.*got 'gated-silu'"):
        archlab.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "d_ff": 64}))
    with pytest.raises(CheckpointError, match="does not fit its config.json"):
        archlab.from_pretrained(tmp_path)


# ------------------------------------------------------------------------------------------------
# The model itself
# ------------------------------------------------------------------------------------------------

def test_relative_bias_is_computed_once_per_stack_and_has_no_biases_anywhere():
    model = archlab.create_model("t5", **TINY)
    names = [n for n, _ in model.named_parameters()]
    assert [n for n in names if "position_bias" in n] == ["encoder.position_bias.weight", "decoder.position_bias.weight"]
    assert model.encoder.position_bias.bidirectional and not model.decoder.position_bias.bidirectional
    assert not any(n.endswith(".bias") for n in names)  # no projection and no norm has a bias
    assert model.lm_head.weight is model.tgt_embed.weight is model.src_embed.weight  # one table, tied head


def test_every_parameter_gets_a_gradient_and_padding_does_not_leak():
    model = archlab.create_model("t5", **{**TINY, "feed_forward": "gated-gelu", "tie_output": False})
    src, tgt = _ids(40, (2, 6), {1: 4}), _ids(40, (2, 5), {1: 3}, seed=1)
    model.loss(src, tgt).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing
    # What sits at a padded source position changes nothing: padding is masked out of every attention.
    model.eval()
    keep = src != 0
    other = src.clone()
    other[1, 4:] = 9
    with torch.no_grad():
        torch.testing.assert_close(model(other, tgt, src_padding_mask=keep), model(src, tgt), atol=1e-6, rtol=0)


def test_fused_and_reference_paths_agree_forward_and_backward():
    model = archlab.create_model("t5", **TINY).double()
    src, dec = _ids(40, (2, 6), {1: 4}), _ids(40, (2, 5), seed=1)
    results = []
    for impl in ("reference", "fused"):
        set_impl(model, impl)
        model.zero_grad()
        out = model(src, dec)
        out.square().sum().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-10, rtol=0)  # float64
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("feed_forward", ["relu", "gated-gelu"])
def test_cached_decoding_equals_uncached_greedy_and_beam(feed_forward):
    model = archlab.create_model("t5", **{**TINY, "feed_forward": feed_forward}, bos_id=1, eos_id=2).eval()
    src = _ids(40, (3, 7), {1: 5, 2: 2})
    for beam in (1, 3):
        cached = model.translate(src, max_len=10, beam_size=beam)
        uncached = model.translate(src, max_len=10, beam_size=beam, use_cache=False)
        assert cached.shape[0] == 3 and torch.equal(cached, uncached)
    # And step by step the logits are those of the full teacher-forced pass.
    out = model.translate(src, max_len=6)
    dec = torch.cat([torch.full((3, 1), 1), out], 1)
    with torch.no_grad():
        full = model(src, dec).log_softmax(-1)
    state, step = model.start_state(src), model.decoding_step(use_cache=True)
    for t in range(dec.size(1)):
        log_probs, state = step(dec[:, : t + 1], state)
        torch.testing.assert_close(log_probs, full[:, t], atol=1e-5, rtol=0)


def test_two_vocabularies_two_tables_and_the_head_tied_to_the_target_table():
    # Letters in, phonemes out: ids of the two sides mean different things, so each side has its table.
    model = archlab.create_model("t5", **{**TINY, "src_vocab_size": 30, "tgt_vocab_size": 72,
                                           "share_vocab": False})
    assert model.src_embed.weight.shape == (30, 32) and model.tgt_embed.weight.shape == (72, 32)
    assert model.lm_head.weight is model.tgt_embed.weight
    shared = archlab.create_model("t5", **{**TINY, "src_vocab_size": 72, "tgt_vocab_size": 72})
    assert count_parameters(model) - count_parameters(shared) == 30 * 32  # only the source table is extra
    logits = model(_ids(30, (2, 5)), _ids(72, (2, 4)))
    assert logits.shape == (2, 4, 72)
    with pytest.raises(ConfigError, match="share_vocab=True needs src_vocab_size == tgt_vocab_size.*30 and 72"):
        T5Config(src_vocab_size=30, tgt_vocab_size=72)
    with pytest.raises(ConfigError, match=r"tgt_ids must be in \[0, 72\), got values in \[3, 80\]"):
        model(_ids(30, (1, 3)), torch.tensor([[3, 80]]))


def test_untied_head_is_not_rescaled_and_the_tied_one_is():
    tied = archlab.create_model("t5", **TINY)
    untied = archlab.create_model("t5", **{**TINY, "tie_output": False})
    assert tied.config.output_scaled and not untied.config.output_scaled
    assert count_parameters(untied) - count_parameters(tied) == 40 * 32
    h = torch.randn(1, 2, 32)
    torch.testing.assert_close(tied._logits(h), h * 32 ** -0.5 @ tied.tgt_embed.weight.T)
    torch.testing.assert_close(untied._logits(h), h @ untied.lm_head.weight.T)


def test_save_and_load_round_trip_and_bf16(tmp_path):
    model = archlab.create_model("t5", **{**TINY, "feed_forward": "gated-gelu"}).eval()
    src, dec = _ids(40, (2, 6)), _ids(40, (2, 4), seed=1)
    model.save_pretrained(tmp_path / "t5")
    again = archlab.from_pretrained(tmp_path / "t5")
    with torch.no_grad():
        torch.testing.assert_close(again(src, dec), model(src, dec), atol=0, rtol=0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(src, dec)
    assert torch.isfinite(low).all()
    torch.testing.assert_close(low.float(), model(src, dec).detach(), atol=0.25, rtol=0.1)


def test_bad_config_and_inputs_are_clear_errors():
    with pytest.raises(ConfigError, match="feed_forward must be one of \\['gated-gelu', 'relu'\\], got 'swiglu'"):
        T5Config(feed_forward="swiglu")
    model = T5(T5Config(**TINY))
    with pytest.raises(ConfigError, match="src_ids must be integer token ids of shape \\(batch, length\\)"):
        model(torch.randn(2, 3), _ids(40, (2, 3)))
    with pytest.raises(ConfigError, match="same batch size, got 2 and 3"):
        model(_ids(40, (2, 3)), _ids(40, (3, 3)))


@pytest.mark.parametrize("name, fields", [
    ("t5", {"src_vocab_size": 40, "tgt_vocab_size": 30, "share_vocab": False, "tie_output": False}),
    ("transformer", {"src_vocab_size": 40, "tgt_vocab_size": 30}),
])
def test_a_seed_gives_the_same_weights_whatever_was_allocated_before(name, fields):
    # The embedding tables are initialised in a fixed order (a set would follow memory addresses).
    small = {"t5": {"d_model": 16, "d_kv": 4, "num_heads": 2, "d_ff": 32, "num_layers": 1, "num_decoder_layers": 1},
             "transformer": {"d_model": 16, "nhead": 2, "num_encoder_layers": 1, "num_decoder_layers": 1,
                             "dim_feedforward": 32}}[name]
    states, keep = [], []
    for i in range(6):
        keep.append([torch.nn.Linear(3, 3) for _ in range(i * 7)])  # other objects, other addresses
        torch.manual_seed(0)
        states.append(archlab.create_model(name, **small, **fields).state_dict())
    for state in states[1:]:
        assert all(torch.equal(state[k], states[0][k]) for k in states[0])
