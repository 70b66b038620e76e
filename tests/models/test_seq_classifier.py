import pytest
import torch
import torch.nn.functional as F

from archlab.checkpoint import from_pretrained
from archlab.errors import ConfigError
from archlab.models.seq_classifier import POOLINGS
from archlab.nn import set_impl
from archlab.registry import create_model
from archlab.utils.runtime import count_parameters

TOKENS = dict(vocab_size=12, embed_dim=8, hidden_size=16, num_layers=2, num_classes=3)
FEATURES = dict(vocab_size=0, input_size=5, hidden_size=16, num_layers=2, num_classes=3)
LENGTHS = torch.tensor([7, 3, 5, 1])


def padded_tokens(extra=0):
    x = torch.randint(1, 12, (4, 7 + extra))
    x[torch.arange(7 + extra)[None, :] >= LENGTHS[:, None]] = 0  # pad_id
    return x


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_padding_never_changes_the_logits(pooling, bidirectional, cell):
    cfg = dict(cell=cell, pooling=pooling, bidirectional=bidirectional)
    model = create_model("rnn_classifier", **TOKENS, **cfg).double().eval()
    x = padded_tokens()
    logits = model(x)
    more_padding = torch.cat([x, torch.zeros(4, 6, dtype=torch.long)], 1)
    assert torch.allclose(model(more_padding), logits, atol=1e-12), "padding must not matter (1e-12, float64)"
    # and each row equals the same sequence run alone, without any padding
    for b, L in enumerate(LENGTHS.tolist()):
        assert torch.allclose(model(x[b:b + 1, :L]), logits[b:b + 1], atol=1e-12)

    feat = create_model("rnn_classifier", **FEATURES, **cfg).double().eval()
    f = torch.randn(4, 7, 5, dtype=torch.float64)
    logits = feat(f, lengths=LENGTHS)
    garbage = torch.cat([f, 1e3 * torch.randn(4, 4, 5, dtype=torch.float64)], 1)  # padding holds junk
    assert torch.allclose(feat(garbage, lengths=LENGTHS), logits, atol=1e-12)
    mask = torch.arange(11)[None, :] < LENGTHS[:, None]
    assert torch.allclose(feat(garbage, mask=mask), logits, atol=1e-12)


def test_bidirectional_final_state_is_h_n_not_the_last_output():
    model = create_model("rnn_classifier", **{**FEATURES, "num_layers": 1}, cell="gru", bidirectional=True).double()
    x = torch.randn(2, 6, 5, dtype=torch.float64)
    out, h_n = model.rnn(x)
    z = torch.cat([out[:, -1, :16], out[:, 0, 16:]], 1)  # forward after step T, backward after step 1
    assert torch.allclose(z, torch.cat([h_n[0], h_n[1]], 1), atol=1e-12)
    assert torch.allclose(model(x), model.head(z), atol=1e-12)


def test_parameter_count_is_exact():
    model = create_model("rnn_classifier", **TOKENS, cell="lstm", bidirectional=True, pooling="attention")
    E, H, C, V, D = 8, 16, 3, 12, 2
    lstm = D * 4 * ((H * E + H * H + 2 * H) + (H * D * H + H * H + 2 * H))
    attention = D * H + (D * H) * (D * H) + (D * H * D * H + D * H) + D * H  # q, W_1, W_2 (+b), v
    assert count_parameters(model) == V * E + lstm + attention + (D * H * C + C)


def test_attention_weights_cover_only_the_valid_steps():
    model = create_model("rnn_classifier", **TOKENS, pooling="attention")
    logits, alpha = model(padded_tokens(), return_attention=True)
    assert alpha.shape == (4, 7)
    assert torch.allclose(alpha.sum(1), torch.ones(4), atol=1e-6)
    assert torch.all(alpha[torch.arange(7)[None, :] >= LENGTHS[:, None]] == 0)


@pytest.mark.parametrize("pooling", POOLINGS)
def test_learns_which_sequences_contain_a_marker_token(pooling):
    g = torch.Generator().manual_seed(0)
    N, T = 256, 10
    x = torch.randint(2, 12, (N, T), generator=g)
    lengths = torch.randint(3, T + 1, (N,), generator=g)
    y = torch.randint(0, 2, (N,), generator=g)
    where = (torch.rand(N, generator=g) * lengths).long()
    x[y == 1, where[y == 1]] = 1  # class 1: the marker appears somewhere in the valid part
    x[torch.arange(T)[None, :] >= lengths[:, None]] = 0
    model = create_model("rnn_classifier", vocab_size=12, embed_dim=16, hidden_size=32, num_classes=2,
                         cell="gru", pooling=pooling, bidirectional=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(50):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    acc = (model(x).argmax(1) == y).float().mean().item()
    assert losses[-1] < 0.3 * losses[0] and acc > 0.95, f"loss {losses[0]:.2f} -> {losses[-1]:.2f}, acc {acc:.2f}"


def test_learns_real_digits_read_row_by_row():
    """scikit-learn's 8x8 digits as 8-step sequences of 8 features (the 28x28 MNIST case, smaller)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # (N, 8 rows, 8 pixels)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    train, test = slice(0, 1400), slice(1400, None)
    model = create_model("rnn_classifier", vocab_size=0, input_size=8, hidden_size=48, num_classes=10,
                         cell="lstm", pooling="final")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _epoch in range(6):
        for i in range(0, 1400, 100):
            loss = F.cross_entropy(model(x[train][i:i + 100]), y[train][i:i + 100])
            opt.zero_grad()
            loss.backward()
            opt.step()
            first = first if first is not None else loss.item()
    with torch.no_grad():
        acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    assert first > 2.0 and loss.item() < 0.5, f"loss {first:.2f} -> {loss.item():.2f}"
    assert acc > 0.85, f"held-out accuracy {acc:.3f} (chance 0.1)"


def test_images_are_read_row_by_row_28x28_by_default():
    model = create_model("rnn_classifier").eval()
    images = torch.rand(2, 1, 28, 28)
    logits = model(images)
    assert logits.shape == (2, 10)
    assert torch.equal(logits, model(images[:, 0]))
    rgb = create_model("rnn_classifier", input_size=3 * 4).eval()   # a 3-channel 5x4 image: 5 rows of 12
    image = torch.rand(1, 3, 5, 4)
    rows = torch.stack([image[0, :, r, :].flatten() for r in range(5)])[None]  # (1, 5, 12)
    assert torch.equal(rgb(image), rgb(rows))


def test_save_load_and_bf16_autocast(tmp_path):
    model = create_model("rnn_classifier", **FEATURES, pooling="attention", bidirectional=True).eval()
    x = torch.randn(3, 6, 5)
    model.save_pretrained(tmp_path)
    assert torch.equal(from_pretrained(tmp_path)(x, lengths=torch.tensor([6, 2, 4])),
                       model(x, lengths=torch.tensor([6, 2, 4])))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, lengths=torch.tensor([6, 2, 4]))
    assert torch.isfinite(out.float()).all()


def test_bad_input_raises_config_errors_naming_it():
    with pytest.raises(ConfigError, match=r"pooling must be one of .*got 'sum'"):
        create_model("rnn_classifier", pooling="sum")
    model = create_model("rnn_classifier", **FEATURES)
    with pytest.raises(ConfigError, match=r"x must be \(B, T, input_size=5\) features, got shape \(2, 4, 6\)"):
        model(torch.randn(2, 4, 6))
    with pytest.raises(ConfigError, match=r"lengths must be between 1 and the padded length 4, got \[4, 0\]"):
        model(torch.randn(2, 4, 5), lengths=torch.tensor([4, 0]))
    with pytest.raises(ConfigError, match=r"lengths must have shape \(2,\), got \(1,\)"):
        model(torch.randn(2, 4, 5), lengths=torch.tensor([4]))
    with pytest.raises(ConfigError, match=r"mask must mark a prefix"):
        model(torch.randn(1, 3, 5), mask=torch.tensor([[True, False, True]]))
    tokens = create_model("rnn_classifier", **TOKENS)
    with pytest.raises(ConfigError, match=r"x must lie in \[0, 11\] \(vocab_size=12\), got values in \[3, 12\]"):
        tokens(torch.tensor([[3, 12]]))


@pytest.mark.parametrize("pooling", POOLINGS)
def test_reference_and_fused_recurrences_agree_on_packed_batches(pooling):
    model = create_model("rnn_classifier", **FEATURES, cell="lstm", bidirectional=True, pooling=pooling).double()
    x = torch.randn(4, 7, 5, dtype=torch.float64)
    results = {}
    for impl in ("fused", "reference"):
        set_impl(model, impl)
        model.zero_grad()
        logits = model(x, lengths=LENGTHS)
        logits.pow(2).sum().backward()
        results[impl] = (logits.detach(), [p.grad.clone() for p in model.parameters()])
    assert torch.allclose(results["fused"][0], results["reference"][0], atol=1e-10), "logits agree (1e-10)"
    for gf, gr in zip(results["fused"][1], results["reference"][1]):
        assert torch.allclose(gf, gr, atol=1e-10), "gradients agree (1e-10, float64)"
        assert gf.abs().sum() > 0, "every parameter gets a gradient"


@pytest.mark.parametrize("cell, blocks", [("lstm", {1: 3.0, 0: -3.0}), ("gru", {1: 3.0})])
def test_memory_bias_starts_every_layer_remembering(cell, blocks):
    H = 8
    model = create_model("rnn_classifier", cell=cell, hidden_size=H, num_layers=2, bidirectional=True,
                         memory_bias=3.0)
    for name, p in model.rnn.named_parameters():
        if name.startswith("bias"):
            rows = p.detach().view(-1, H)  # one row block per gate, torch's order (LSTM i, f, g, o; GRU r, z, n)
            for index, value in blocks.items():
                expected = value if name.startswith("bias_ih") else 0.0
                assert torch.equal(rows[index], torch.full((H,), expected)), (name, index)


def test_memory_bias_needs_a_gated_cell():
    with pytest.raises(ConfigError, match="cell 'rnn' has no such gate, got memory_bias=1.0"):
        create_model("rnn_classifier", cell="rnn", memory_bias=1.0)
