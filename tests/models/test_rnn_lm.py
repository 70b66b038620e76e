import pytest
import torch
import torch.nn.functional as F

from archlab.checkpoint import from_pretrained
from archlab.errors import ConfigError
from archlab.models.decoding import sample_next
from archlab.nn import detach_state, record_steps, set_impl
from archlab.registry import create_model, list_models
from archlab.utils.runtime import count_parameters, seed_everything

TINY = dict(vocab_size=11, embed_dim=16, hidden_size=16, num_layers=2, dropout=0.0)
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def test_three_registered_names_fix_the_cell():
    assert {"rnn_lm", "lstm_lm", "gru_lm"} <= set(list_models("rnn"))
    for cell in GATES:
        assert create_model(f"{cell}_lm", **TINY).config.cell == cell


@pytest.mark.parametrize("cell", list(GATES))
@pytest.mark.parametrize("tie", [False, True])
def test_parameter_count_is_exact(cell, tie):
    V, E, H, L = 11, 16, 16, 2
    model = create_model(f"{cell}_lm", **TINY, tie_weights=tie)
    # per layer: gates * (W_ih: H x in, W_hh: H x H, b_ih + b_hh: 2H)
    rnn = sum(GATES[cell] * (H * (E if layer == 0 else H) + H * H + 2 * H) for layer in range(L))
    expected = V * E + rnn + (0 if tie else V * H) + V
    assert count_parameters(model) == expected
    assert (model.decoder.weight is model.embedding.weight) == tie


@pytest.mark.parametrize("cell", list(GATES))
def test_chunks_with_carried_state_equal_one_pass(cell):
    model = create_model(f"{cell}_lm", **TINY).double().eval()
    ids = torch.randint(0, 11, (3, 12))
    full = model(ids)
    first, state = model(ids[:, :5], return_state=True)
    second = model(ids[:, 5:], state)
    assert torch.allclose(torch.cat([first, second], 1), full, atol=1e-12), "chunked == one pass (1e-12, float64)"


def recompute_generate(model, ids, n, **sampling):
    """Reference: re-read the whole sequence for every new token."""
    for _ in range(n):
        nxt = sample_next(model(ids)[:, -1], **sampling)
        ids = torch.cat([ids, nxt[:, None]], 1)
    return ids


@pytest.mark.parametrize("cell", list(GATES))
def test_incremental_generation_equals_recomputing_from_scratch(cell):
    model = create_model(f"{cell}_lm", **TINY).double().eval()
    prompt = torch.randint(0, 11, (2, 4))
    with torch.no_grad():
        greedy = model.generate(prompt, 10)
        assert torch.equal(greedy, recompute_generate(model, prompt, 10))
        kw = dict(do_sample=True, temperature=0.8, top_k=6, top_p=0.9)
        sampled = model.generate(prompt, 10, generator=torch.Generator().manual_seed(5), **kw)
        ref = recompute_generate(model, prompt, 10, generator=torch.Generator().manual_seed(5), **kw)
    assert torch.equal(sampled, ref)
    assert sampled.shape == (2, 14) and torch.equal(sampled[:, :4], prompt)


TEXT = "the quick brown fox jumps over the lazy dog. " * 6


@pytest.mark.parametrize("cell", list(GATES))
def test_learns_a_character_text_with_truncated_bptt(cell):
    """Train on one long stream in chunks of 16 chars, carrying the detached state between chunks."""
    chars = sorted(set(TEXT))
    data = torch.tensor([chars.index(c) for c in TEXT]).view(2, -1)  # two streams, (2, N)
    model = create_model(f"{cell}_lm", vocab_size=len(chars), embed_dim=32, hidden_size=48, num_layers=1,
                         dropout=0.0, tie_weights=False)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    losses = []
    for _epoch in range(12):
        state = None
        for start in range(0, data.shape[1] - 1, 16):
            x, y = data[:, start:start + 16], data[:, start + 1:start + 17]
            x = x[:, : y.shape[1]]
            logits, state = model(x, detach_state(state), return_state=True)
            loss = F.cross_entropy(logits.reshape(-1, len(chars)), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(loss.item())
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert first > 2.5 and last < 0.5, f"loss should fall from ~ln(27) to < 0.5, went {first:.2f} -> {last:.2f}"
    model.eval()
    prompt = torch.tensor([[chars.index(c) for c in "the quick "]])
    out = "".join(chars[i] for i in model.generate(prompt, 9)[0].tolist())
    assert out == "the quick brown fox"


def test_save_and_load_keeps_outputs_and_tied_weights(tmp_path):
    model = create_model("gru_lm", **TINY, tie_weights=True).eval()
    ids = torch.randint(0, 11, (2, 7))
    model.save_pretrained(tmp_path)
    loaded = from_pretrained(tmp_path)
    assert loaded.config == model.config
    assert loaded.decoder.weight is loaded.embedding.weight
    assert torch.equal(loaded(ids), model(ids))


def test_seeded_builds_are_identical():
    outs = []
    for _ in range(2):
        seed_everything(7)
        model = create_model("lstm_lm", **TINY)
        outs.append(model(torch.arange(10).view(2, 5)))
    assert torch.equal(outs[0], outs[1])


def test_runs_under_bf16_autocast():
    model = create_model("lstm_lm", **TINY)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(torch.randint(0, 11, (2, 5)))
        generated = model.eval().generate(torch.randint(0, 11, (2, 3)), 4, do_sample=True, top_p=0.9)
    assert logits.shape == (2, 5, 11) and torch.isfinite(logits.float()).all()
    assert generated.shape == (2, 7)


def test_bad_input_raises_config_errors_naming_it():
    with pytest.raises(ConfigError, match=r"cell must be one of \('rnn', 'lstm', 'gru'\), got 'transformer'"):
        create_model("rnn_lm", cell="transformer")
    with pytest.raises(ConfigError, match=r"lstm_lm has cell='lstm'; got cell='gru'"):
        create_model("lstm_lm", cell="gru")
    with pytest.raises(ConfigError, match=r"tie_weights needs embed_dim == hidden_size, got embed_dim=8, hidden_size=16"):
        create_model("gru_lm", embed_dim=8, hidden_size=16, tie_weights=True)
    model = create_model("gru_lm", **TINY)
    with pytest.raises(ConfigError, match=r"input_ids must lie in \[0, 10\] \(vocab_size=11\), got values in \[0, 11\]"):
        model(torch.tensor([[0, 11]]))
    with pytest.raises(ConfigError, match=r"input_ids must be a \(B, T\) integer tensor, got torch.float32"):
        model(torch.zeros(2, 3))
    with pytest.raises(ConfigError, match=r"top_k must be >= 1 or None, got 0"):
        model.generate(torch.tensor([[1]]), 3, do_sample=True, top_k=0)


@pytest.mark.parametrize("cell", list(GATES))
def test_reference_and_fused_recurrences_give_the_same_model(cell):
    model = create_model(f"{cell}_lm", **TINY).double()
    ids = torch.randint(0, 11, (2, 6))
    grads = {}
    for impl in ("fused", "reference"):
        set_impl(model, impl)
        model.zero_grad()
        logits = model(ids)
        logits.logsumexp(-1).sum().backward()
        grads[impl] = (logits.detach(), [p.grad.clone() for p in model.parameters()])
    assert torch.allclose(grads["fused"][0], grads["reference"][0], atol=1e-10), "logits agree (1e-10, float64)"
    for gf, gr in zip(grads["fused"][1], grads["reference"][1]):
        assert torch.allclose(gf, gr, atol=1e-10), "every parameter's gradient agrees (1e-10)"
        assert gf.abs().sum() > 0, "every parameter gets a gradient"


def test_gates_of_a_language_model_can_be_recorded_step_by_step():
    model = create_model("lstm_lm", **TINY).eval()
    ids = torch.randint(0, 11, (2, 5))
    with record_steps(model) as steps:
        logits = model(ids)
    top = sorted((s for s in steps if s.layer == 1), key=lambda s: s.t)
    assert [s.t for s in top] == list(range(5))
    h = torch.stack([s.h_t for s in top], 1)  # (B, T, H)
    assert torch.allclose(model.decoder(h), logits, atol=1e-6)
    assert all(0 <= s.gates["forget_gate"].min() and s.gates["forget_gate"].max() <= 1 for s in top)
