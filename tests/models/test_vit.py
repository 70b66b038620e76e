import json
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import archlab
from archlab.errors import ConfigError
from archlab.nn import set_impl
from archlab.utils.runtime import count_parameters

REPO = Path(__file__).resolve().parents[2]
# The project's shared data folder sits beside the checkout (or beside the folder of worktrees).
FACTS = next((p for p in (REPO.parent / "shared" / "data" / "torchvision_facts.json",
                          REPO.parent.parent / "shared" / "data" / "torchvision_facts.json") if p.is_file()),
             REPO.parent / "shared" / "data" / "torchvision_facts.json")
TINY = dict(image_size=16, patch_size=4, in_channels=3, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64,
            num_classes=5)


# torchvision's published parameter counts (torchvision.models.ViT_*_Weights.meta["num_params"]).
@pytest.mark.parametrize("name, count", [
    ("vit_b_16", 86_567_656), ("vit_b_32", 88_224_232), ("vit_l_16", 304_326_632),
    ("vit_l_32", 306_535_400), ("vit_h_14", 632_045_800),
])
def test_parameter_count_matches_torchvision(name, count):
    with torch.device("meta"):  # shapes only, no memory
        model = archlab.create_model(name)
    assert count_parameters(model) == count


@pytest.mark.skipif(not FACTS.is_file(), reason="torchvision facts file not available")
def test_vit_b_16_state_dict_layout_equals_torchvision():
    facts = json.loads(FACTS.read_text())["vit_b_16"]
    with torch.device("meta"):
        model = archlab.create_model("vit_b_16")
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(ours) == list(facts["state_dict"])  # same names, same order
    assert ours == facts["state_dict"]
    assert count_parameters(model) == facts["params"]


class TorchViT(nn.Module):
    """torchvision's ViT forward pass, written with torch.nn modules under torchvision's names."""

    def __init__(self, image_size, patch_size, in_channels, num_layers, num_heads, hidden_dim, mlp_dim,
                 num_classes):
        super().__init__()
        self.patch_size = patch_size
        self.conv_proj = nn.Conv2d(in_channels, hidden_dim, patch_size, patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, hidden_dim))
        self.encoder = nn.Module()
        self.encoder.pos_embedding = nn.Parameter(torch.zeros(1, (image_size // patch_size) ** 2 + 1, hidden_dim))
        layers = OrderedDict()
        for i in range(num_layers):
            block = nn.Module()
            block.ln_1 = nn.LayerNorm(hidden_dim, eps=1e-6)
            block.self_attention = nn.MultiheadAttention(hidden_dim, num_heads, batch_first=True)
            block.ln_2 = nn.LayerNorm(hidden_dim, eps=1e-6)
            block.mlp = nn.Sequential(nn.Linear(hidden_dim, mlp_dim), nn.GELU(), nn.Dropout(0.0),
                                      nn.Linear(mlp_dim, hidden_dim), nn.Dropout(0.0))
            layers[f"encoder_layer_{i}"] = block
        self.encoder.layers = nn.Sequential(layers)
        self.encoder.ln = nn.LayerNorm(hidden_dim, eps=1e-6)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(hidden_dim, num_classes)))

    def forward(self, x):
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(x.size(0), -1, -1), x], dim=1) + self.encoder.pos_embedding
        for b in self.encoder.layers:
            h = b.ln_1(x)
            x = x + b.self_attention(h, h, h, need_weights=False)[0]
            x = x + b.mlp(b.ln_2(x))
        return self.heads(self.encoder.ln(x)[:, 0])


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_forward_equals_torch_modules_under_torchvision_names(impl):
    ours = set_impl(archlab.create_model("vit_b_16", **TINY), impl).double().eval()
    for p in ours.parameters():  # the zero-initialised head and class token would hide mistakes
        nn.init.normal_(p, std=0.2)
    ref = TorchViT(**TINY).double().eval()
    ref.load_state_dict(ours.state_dict(), strict=True)  # same names and shapes
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-10)


def test_forward_features_head_and_attention_maps():
    model = archlab.create_model("vit_tiny").eval()
    x = torch.randn(2, 1, 28, 28)
    feats, attentions = model.forward_features(x, need_weights=True)
    assert feats.shape == (2, 1 + 16, 64)
    assert len(attentions) == 4 and attentions[0].shape == (2, 17, 17)
    torch.testing.assert_close(attentions[0].sum(-1), torch.ones(2, 17), rtol=0, atol=1e-5)
    torch.testing.assert_close(model.forward_head(feats), model(x), rtol=0, atol=1e-6)
    # Without weights the fused kernel runs: same function, float32 rounding apart.
    torch.testing.assert_close(model.forward_features(x), feats, rtol=0, atol=1e-5)


def test_patch_size_four_gives_49_tokens():
    model = archlab.create_model("vit_tiny", patch_size=4)
    assert model.forward_features(torch.randn(1, 1, 28, 28)).shape == (1, 50, 64)
    assert model.encoder.pos_embedding.shape == (1, 50, 64)


def test_reset_classifier():
    model = archlab.create_model("vit_tiny")
    model.reset_classifier(3)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)
    assert model.config.num_classes == 3 and model.heads.head.weight.shape == (3, 64)


@pytest.mark.parametrize("shape, given", [((2, 3, 28, 28), "(2, 3, 28, 28)"), ((2, 1, 32, 32), "(2, 1, 32, 32)"),
                                          ((1, 28, 28), "(1, 28, 28)")])
def test_wrong_channels_or_image_size_is_a_config_error(shape, given):
    model = archlab.create_model("vit_tiny")
    with pytest.raises(ConfigError, match=r"vit_tiny expects images of shape \(batch, 1, 28, 28\).*got " +
                       given.replace("(", r"\(").replace(")", r"\)")):
        model(torch.randn(*shape))


@pytest.mark.parametrize("field, value, message", [
    ("patch_size", 5, "image_size must be a multiple of patch_size=5, got image_size=28"),
    ("num_heads", 3, "hidden_dim must be divisible by num_heads=3, got hidden_dim=64"),
    ("mlp_dim", 0, "mlp_dim must be positive, got 0"),
])
def test_bad_config_is_a_config_error(field, value, message):
    with pytest.raises(ConfigError, match=message):
        archlab.create_model("vit_tiny", **{field: value})


def test_every_parameter_gets_a_gradient_and_bf16_autocast_runs():
    model = archlab.create_model("vit_tiny")
    # The zero-initialised head (torchvision's choice) would pass no gradient back: start it nonzero.
    nn.init.normal_(model.heads.head.weight, std=0.1)
    x = torch.randn(2, 1, 28, 28)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    out.float().pow(2).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_save_and_load_round_trip(tmp_path):
    model = archlab.create_model("vit_tiny", patch_size=4).eval()
    model.save_pretrained(tmp_path)
    loaded = archlab.from_pretrained(tmp_path)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.config.patch_size == 4


def test_learns_to_separate_two_image_classes():
    torch.manual_seed(0)
    model = archlab.create_model("vit_tiny", num_layers=1, num_classes=2)
    x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 2, (64,))
    x[y == 1, :, :14] += 1.0  # class 1: a brighter top half
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
    assert (model(x).argmax(-1) == y).float().mean() > 0.95


def test_vit_b_16_forward_and_backward_at_224():
    model = archlab.create_model("vit_b_16")
    x = torch.randn(1, 3, 224, 224)
    out = model(x)
    assert out.shape == (1, 1000)
    out.sum().backward()
    assert model.conv_proj.weight.grad is not None and torch.isfinite(model.conv_proj.weight.grad).all()
