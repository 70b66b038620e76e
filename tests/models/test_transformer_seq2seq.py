import math

import pytest
import torch
import torch.nn as nn

import archlab
from archlab.errors import ConfigError
from archlab.models.decoding import beam_search
from archlab.utils.runtime import count_parameters

PAD, BOS, EOS = 0, 1, 2
TINY = dict(src_vocab_size=13, tgt_vocab_size=13, d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=2,
            dim_feedforward=64, dropout=0.0, max_len=16)


def tiny(**kw):
    return archlab.create_model("transformer", **{**TINY, **kw})


def test_default_is_seed_002s_nn_transformer_shape():
    with torch.device("meta"):
        model = archlab.create_model("transformer")
        ref = nn.Transformer(d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6, batch_first=True)
    ours = {k: tuple(v.shape) for k, v in model.transformer.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert count_parameters(model.transformer) == count_parameters(ref) == 44_140_544
    # + source and target embeddings (32000 x 512 each); the output projection reuses the target's.
    assert count_parameters(model) == 44_140_544 + 2 * 32000 * 512 + 32000
    with torch.device("meta"):
        shared = archlab.create_model("transformer", share_vocab=True)
        untied = archlab.create_model("transformer", tie_output=False)
    assert count_parameters(shared) == 44_140_544 + 32000 * 512 + 32000
    assert count_parameters(untied) == 44_140_544 + 3 * 32000 * 512 + 32000


def _batch(n, generator=None, max_src=6):
    """Reverse task: the target is the source read backwards. Right-padded with PAD."""
    lengths = torch.randint(2, max_src + 1, (n,), generator=generator)
    pos = torch.arange(max_src)
    src = torch.randint(3, 13, (n, max_src), generator=generator).masked_fill(pos >= lengths[:, None], PAD)
    tgt = src.gather(1, (lengths[:, None] - 1 - pos).clamp(min=0)).masked_fill(pos >= lengths[:, None], PAD)
    return src, tgt


def _with_eos(tgt, width):
    """tgt + [eos], then eos to ``width`` (how greedy_decode pads finished rows)."""
    lengths = (tgt != PAD).sum(1)
    out = torch.cat([tgt, torch.zeros(tgt.size(0), width, dtype=tgt.dtype)], 1).scatter(1, lengths[:, None], EOS)
    return out.masked_fill(out == PAD, EOS)[:, :width]


def test_forward_equals_torch_nn_transformer_with_the_same_weights():
    torch.manual_seed(0)
    model = tiny(share_vocab=False).double().eval()
    ref = nn.Transformer(d_model=32, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=64,
                         dropout=0.0, batch_first=True).double().eval()
    ref.load_state_dict(model.transformer.state_dict())
    src, tgt = _batch(4, torch.Generator().manual_seed(0))
    tgt_in = torch.cat([torch.full((4, 1), BOS), tgt], 1)
    ours = model(src, tgt_in)

    def embed(ids, table):  # E[ids] * sqrt(d) + PE(pos), written out
        pos = torch.arange(ids.size(1), dtype=torch.float64)[:, None]
        angle = pos / 10000 ** (torch.arange(0, 32, 2, dtype=torch.float64) / 32)
        pe = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)  # interleaved sin, cos
        return table(ids) * math.sqrt(32) + pe.float().double()  # archlab stores the table in float32

    h = ref(embed(src, model.src_embed), embed(tgt_in, model.tgt_embed),
            tgt_mask=torch.ones(7, 7, dtype=torch.bool).triu(1),  # torch: True = masked out (the future)
            src_key_padding_mask=src == PAD, memory_key_padding_mask=src == PAD,
            tgt_key_padding_mask=tgt_in == PAD)
    expected = h @ model.tgt_embed.weight.T + model.output.bias
    real = tgt_in != PAD
    torch.testing.assert_close(ours[real], expected[real], rtol=0, atol=1e-10)


@pytest.fixture(scope="module")
def trained():
    """A tiny model trained on the reverse task: 300 Adam steps of 64 sentences."""
    torch.manual_seed(0)
    model = tiny(share_vocab=True, num_encoder_layers=1, num_decoder_layers=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        src, tgt = _batch(64)
        loss = model.loss(src, tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model.eval(), losses


def test_reverse_task_loss_falls_and_greedy_decoding_gets_most_right(trained):
    model, losses = trained
    # From about ln(13) = 2.6 (3.6 observed at the start) to under a tenth (0.08 observed).
    assert sum(losses[-10:]) / 10 < 0.1 * losses[0]
    src, tgt = _batch(200, torch.Generator().manual_seed(1))
    out = model.translate(src, max_len=8)
    accuracy = (out == _with_eos(tgt, out.size(1))).all(1).float().mean().item()
    assert accuracy > 0.75  # whole sentences exactly right (0.88 observed)


def test_cached_and_uncached_decoding_agree(trained):
    model, _ = trained
    src, _ = _batch(50, torch.Generator().manual_seed(2))
    for beam_size in (1, 3):
        cached = model.translate(src, max_len=8, beam_size=beam_size, use_cache=True)
        uncached = model.translate(src, max_len=8, beam_size=beam_size, use_cache=False)
        assert torch.equal(cached, uncached)


@pytest.mark.parametrize("norm_first", [False, True])
def test_incremental_decoder_equals_the_full_decoder(norm_first):
    torch.manual_seed(0)
    model = tiny(norm_first=norm_first).double().eval()
    src, tgt = _batch(3, torch.Generator().manual_seed(3))
    tgt_in = torch.cat([torch.full((3, 1), BOS), tgt.masked_fill(tgt == PAD, 5)], 1)  # (3, 7), no padding
    memory, keep = model.encode(src)
    full = model.decode(tgt_in, memory, keep)  # (3, 7, V)
    caches = model.transformer.decoder.new_cache()
    steps = [model.decode_step_cached(tgt_in[:, t:t + 1], memory, keep, caches, offset=t) for t in range(7)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-10)
    assert len(caches[0][0]) == 7 and len(caches[0][1]) == src.size(1)  # self: 7 steps; cross: the source


def test_beam_size_one_equals_greedy(trained):
    model, _ = trained
    src, _ = _batch(40, torch.Generator().manual_seed(4))
    greedy = model.translate(src, max_len=8)
    with torch.no_grad():
        beam = beam_search(model.decoding_step(use_cache=True), model.start_state(src), bos_id=BOS, eos_id=EOS,
                           batch_size=40, max_len=8, beam_size=1)
    assert torch.equal(beam, greedy)
    assert torch.equal(model.translate(src, max_len=8, beam_size=1), greedy)


def test_padding_in_the_source_does_not_change_the_result(trained):
    model, _ = trained
    src, _ = _batch(20, torch.Generator().manual_seed(5))
    padded = torch.cat([src, torch.full((20, 5), PAD)], 1)
    assert torch.equal(model.translate(padded, max_len=8), model.translate(src, max_len=8))
    assert torch.equal(model.translate(padded, max_len=8, beam_size=3), model.translate(src, max_len=8, beam_size=3))
    step = model.decoding_step(use_cache=True)
    bos = torch.full((20, 1), BOS)
    with torch.no_grad():
        a, _ = step(bos, model.start_state(src))
        b, _ = step(bos, model.start_state(padded))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_ties_hold_and_survive_save_and_load(tmp_path):
    model = tiny(share_vocab=True).eval()
    assert model.src_embed is model.tgt_embed and model.output.weight is model.tgt_embed.weight
    model.save_pretrained(tmp_path)
    loaded = archlab.from_pretrained(tmp_path)
    assert loaded.src_embed is loaded.tgt_embed and loaded.output.weight is loaded.tgt_embed.weight
    src, tgt = _batch(3)
    torch.testing.assert_close(loaded(src, tgt), model(src, tgt), rtol=0, atol=0)
    separate = tiny(src_vocab_size=20, tie_output=False)
    assert separate.src_embed.weight.shape == (20, 32) and separate.output.weight is not separate.tgt_embed.weight


def test_every_parameter_gets_a_gradient_and_bf16_autocast_runs():
    model = tiny(share_vocab=False, tie_output=False)
    src, tgt = _batch(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(src, tgt)
    assert torch.isfinite(loss)
    loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


@pytest.mark.parametrize("call, message", [
    (lambda m: m(torch.tensor([[3, 13]]), torch.tensor([[1]])),
     r"src_ids must be in \[0, 13\), got values in \[3, 13\]"),
    (lambda m: m(torch.ones(1, 17, dtype=torch.long), torch.tensor([[1]])),
     r"src_ids has length 17, the model expects at most max_len=16"),
    (lambda m: m(torch.ones(2, 4, dtype=torch.long), torch.ones(2, 3, dtype=torch.long),
                 src_padding_mask=torch.ones(2, 3, dtype=torch.bool)),
     r"src_padding_mask must have the shape of src_ids \(2, 4\), got \(2, 3\)"),
    (lambda m: m(torch.ones(2, 4, dtype=torch.long), torch.ones(3, 3, dtype=torch.long)),
     "src_ids and tgt_ids must have the same batch size, got 2 and 3"),
    (lambda m: m.translate(torch.ones(1, 4, dtype=torch.long), max_len=16), r"max_len must be in \[1, 16\)"),
    (lambda m: m.translate(torch.ones(1, 4, dtype=torch.long), max_len=4, beam_size=0),
     "beam_size must be >= 1, got 0"),
])
def test_bad_input_is_a_config_error(call, message):
    with pytest.raises(ConfigError, match=message):
        call(tiny())


def test_bad_config_is_a_config_error():
    with pytest.raises(ConfigError, match="share_vocab=True needs src_vocab_size == tgt_vocab_size, got 13 and 20"):
        tiny(share_vocab=True, tgt_vocab_size=20)
    with pytest.raises(ConfigError, match="d_model must be divisible by nhead=5, got d_model=32"):
        tiny(nhead=5)
