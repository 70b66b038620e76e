import pytest
import torch
import torch.nn.functional as F

from archlab.checkpoint import from_pretrained
from archlab.errors import ConfigError
from archlab.models.decoding import beam_search, greedy_decode
from archlab.nn import set_impl
from archlab.registry import create_model
from archlab.utils.runtime import count_parameters

PAD, BOS, EOS, V = 0, 1, 2, 10
TINY = dict(src_vocab_size=V, tgt_vocab_size=V, embed_dim=16, hidden_size=32, num_layers=2, dropout=0.0)


def reverse_batch(n, generator, min_len=3, max_len=6):
    """Source: random symbols 3..9, right-padded; target: the source reversed, then eos."""
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=generator)
    src = torch.full((n, max_len), PAD)
    tgt_in = torch.full((n, max_len + 1), PAD)
    tgt_out = torch.full((n, max_len + 1), PAD)
    for i, L in enumerate(lengths.tolist()):
        seq = torch.randint(3, V, (L,), generator=generator)
        src[i, :L] = seq
        tgt_in[i, 0], tgt_in[i, 1:L + 1] = BOS, seq.flip(0)
        tgt_out[i, :L], tgt_out[i, L] = seq.flip(0), EOS
    return src, lengths, tgt_in, tgt_out


@pytest.mark.parametrize("cell,attention", [("gru", "additive"), ("lstm", "general"), ("rnn", "dot")])
def test_source_padding_never_changes_the_logits(cell, attention):
    model = create_model("seq2seq_rnn", **TINY, cell=cell, attention=attention).double().eval()
    src, lengths, tgt_in, _ = reverse_batch(4, torch.Generator().manual_seed(1))
    logits, alpha = model(src, tgt_in, return_attention=True)
    more = torch.cat([src, torch.full((4, 5), PAD)], 1)
    assert torch.allclose(model(more, tgt_in), logits, atol=1e-12), "padding must not matter (1e-12, float64)"
    assert torch.allclose(model(src, tgt_in, src_lengths=lengths), logits, atol=1e-12)
    assert torch.allclose(model(src, tgt_in, src_mask=src != PAD), logits, atol=1e-12)
    for b, L in enumerate(lengths.tolist()):  # each row alone, without padding
        assert torch.allclose(model(src[b:b + 1, :L], tgt_in[b:b + 1]), logits[b:b + 1], atol=1e-12)
        assert torch.all(alpha[b, :, L:] == 0)


def test_bridge_starts_the_decoder_from_both_encoder_directions():
    model = create_model("seq2seq_rnn", **TINY, cell="lstm").double()
    src = torch.randint(3, V, (2, 5))
    memory, mask, (s_0, c_0) = model.encode(src)
    out, (h_n, c_n) = model.encoder(model.src_embedding(src))
    top = torch.cat([h_n[-2], h_n[-1]], 1)  # last layer: forward, backward
    assert torch.allclose(s_0[-1], torch.tanh(model.bridge[0](top)), atol=1e-12)
    assert torch.allclose(c_0[-1], torch.tanh(model.bridge[1](torch.cat([c_n[-2], c_n[-1]], 1))), atol=1e-12)
    assert torch.allclose(memory, out, atol=1e-12) and mask.all()


def test_parameter_count_is_exact():
    model = create_model("seq2seq_rnn", **{**TINY, "num_layers": 1}, cell="gru", attention="general")
    E, H, G = 16, 32, 3
    encoder = 2 * G * ((H // 2) * E + (H // 2) ** 2 + 2 * (H // 2))
    decoder = G * (H * E + H * H + 2 * H)
    expected = 2 * V * E + encoder + (H * H + H) + decoder + H * H + 2 * H * H + (H * V + V)
    assert count_parameters(model) == expected


def test_step_by_step_decoding_equals_teacher_forcing():
    model = create_model("seq2seq_rnn", **TINY, cell="lstm").double().eval()
    src, _, tgt_in, _ = reverse_batch(3, torch.Generator().manual_seed(2))
    logits = model(src, tgt_in)
    state = model.init_decode_state(src)
    for t in range(tgt_in.shape[1]):
        log_probs, state = model.step(tgt_in[:, : t + 1], state)
        assert torch.allclose(log_probs, logits[:, t].log_softmax(-1), atol=1e-10), "step == teacher forcing (1e-10)"


@pytest.fixture(scope="module")
def trained():
    """A tiny model that learns to reverse sequences of 3-6 symbols."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = create_model("seq2seq_rnn", **{**TINY, "num_layers": 1, "hidden_size": 64}, cell="gru",
                         attention="additive")
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(150):
        src, _, tgt_in, tgt_out = reverse_batch(64, g)
        loss = F.cross_entropy(model(src, tgt_in).reshape(-1, V), tgt_out.reshape(-1), ignore_index=PAD)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    return model.eval(), losses


def test_learns_to_reverse_and_translates_unseen_sequences(trained):
    model, losses = trained
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert first > 1.5 and last < 0.1 * first, f"loss {first:.2f} -> {last:.2f}"
    src, lengths, _, tgt_out = reverse_batch(100, torch.Generator().manual_seed(99))
    out = model.translate(src, max_len=8)
    correct = [torch.equal(out[i, : L + 1], tgt_out[i, : L + 1]) for i, L in enumerate(lengths.tolist())]
    assert sum(correct) >= 90, f"{sum(correct)}/100 unseen sequences reversed exactly"


def test_attention_of_the_reverser_runs_along_the_anti_diagonal(trained):
    model, _ = trained
    src, lengths, _, _ = reverse_batch(50, torch.Generator().manual_seed(7))
    out, alpha = model.translate(src, max_len=8, return_attention=True)
    hits = total = 0
    for i, L in enumerate(lengths.tolist()):
        n = int((out[i] == EOS).nonzero()[0]) + 1 if (out[i] == EOS).any() else out.shape[1]  # up to eos
        assert torch.all(alpha[i, n:] == 0)                          # nothing after eos
        assert torch.allclose(alpha[i, :n].sum(-1), torch.ones(n), atol=1e-5)
        m = min(L, n - 1)
        looked_at = alpha[i, :m, :L].argmax(-1)                       # output t reads source L-1-t
        hits += (looked_at == torch.arange(L - 1, L - 1 - m, -1)).sum().item()
        total += m
    assert hits / total > 0.8, f"only {hits}/{total} output steps attend to their mirrored source position"


def test_beam_size_one_equals_greedy_and_wider_beams_decode(trained):
    model, _ = trained
    src, _, _, _ = reverse_batch(20, torch.Generator().manual_seed(3))
    greedy = model.translate(src, max_len=8)
    kw = dict(bos_id=BOS, eos_id=EOS, batch_size=20, max_len=8)
    assert torch.equal(beam_search(model.step, model.init_decode_state(src), beam_size=1, **kw), greedy)
    assert torch.equal(greedy_decode(model.step, model.init_decode_state(src), **kw), greedy)
    assert torch.equal(model.translate(src, max_len=8, beam_size=1), greedy)
    beam = model.translate(src, max_len=8, beam_size=4)
    assert beam.shape[0] == 20 and (beam == EOS).any(1).all()


def test_save_load_and_bf16_autocast(tmp_path):
    model = create_model("seq2seq_rnn", **TINY, cell="lstm", attention="dot").eval()
    src, _, tgt_in, _ = reverse_batch(3, torch.Generator().manual_seed(4))
    model.save_pretrained(tmp_path)
    assert torch.equal(from_pretrained(tmp_path)(src, tgt_in), model(src, tgt_in))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(src, tgt_in)
        beam = model.translate(src, max_len=6, beam_size=3)
        greedy, alpha = model.translate(src, max_len=6, return_attention=True)
    assert torch.isfinite(logits.float()).all() and torch.isfinite(alpha.float()).all()
    assert beam.shape[0] == greedy.shape[0] == 3


def test_bad_input_raises_config_errors_naming_it():
    with pytest.raises(ConfigError, match=r"hidden_size must be even .*got 33"):
        create_model("seq2seq_rnn", hidden_size=33)
    with pytest.raises(ConfigError, match=r"attention must be one of \('additive', 'dot', 'general'\), got 'cosine'"):
        create_model("seq2seq_rnn", attention="cosine")
    with pytest.raises(ConfigError, match=r"eos_id must lie in \[0, 9\], got 12"):
        create_model("seq2seq_rnn", **TINY, eos_id=12)
    model = create_model("seq2seq_rnn", **TINY)
    src = torch.randint(3, V, (2, 4))
    with pytest.raises(ConfigError, match=r"src_ids must lie in \[0, 9\] \(vocab_size=10\), got values in \[3, 10\]"):
        model(torch.tensor([[3, 10]]), src)
    with pytest.raises(ConfigError, match=r"tgt_in_ids has batch size 3, src_ids has 2"):
        model(src, torch.randint(3, V, (3, 4)))
    with pytest.raises(ConfigError, match=r"beam_size must be >= 1, got 0"):
        model.translate(src, beam_size=0)
    with pytest.raises(ConfigError, match=r"lengths must be between 1 and the padded length 4, got \[4, 0\]"):
        model(torch.tensor([[3, 4, 5, 6], [0, 0, 0, 0]]), src)


@pytest.mark.parametrize("cell,attention", [("gru", "additive"), ("lstm", "general")])
def test_reference_and_fused_recurrences_agree(cell, attention):
    model = create_model("seq2seq_rnn", **TINY, cell=cell, attention=attention).double()
    src, _, tgt_in, tgt_out = reverse_batch(4, torch.Generator().manual_seed(5))
    results = {}
    for impl in ("fused", "reference"):
        set_impl(model, impl)
        model.zero_grad()
        logits = model(src, tgt_in)
        F.cross_entropy(logits.reshape(-1, V), tgt_out.reshape(-1), ignore_index=PAD).backward()
        results[impl] = (logits.detach(), [p.grad.clone() for p in model.parameters()])
    assert torch.allclose(results["fused"][0], results["reference"][0], atol=1e-10), "logits agree (1e-10)"
    for gf, gr in zip(results["fused"][1], results["reference"][1]):
        assert torch.allclose(gf, gr, atol=1e-10), "gradients agree (1e-10, float64)"
        assert gf.abs().sum() > 0, "every parameter gets a gradient"
