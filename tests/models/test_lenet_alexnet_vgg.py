"""LeNet-5, AlexNet and VGG: published parameter counts, torchvision's layout, gradients, training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import archlab
from archlab.errors import ConfigError
from archlab.models.cnn_base import load_pretrained
from archlab.nn import set_impl
from archlab.utils.runtime import count_parameters

REPO = Path(__file__).resolve().parents[2]

# Published parameter counts (LeCun et al. 1998 as read today; torchvision's model docs).
PARAMS = {
    "lenet5": 61_706,
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
}
GIANTS = [n for n in PARAMS if n != "lenet5"]


def _facts() -> dict | None:
    """torchvision's state_dict layouts, from the shared data folder beside the checkout, if present."""
    for root in (REPO.parent, REPO.parent.parent):
        path = root / "shared" / "data" / "torchvision_facts.json"
        if path.is_file():
            return json.loads(path.read_text())
    return None


def _meta(name: str, **kw) -> nn.Module:
    """The architecture without allocating its weights: shapes and counts only."""
    with torch.device("meta"):
        return archlab.create_model(name, **kw)


@pytest.mark.parametrize("name", list(PARAMS))
def test_parameter_count_is_the_published_one(name):
    assert count_parameters(_meta(name)) == PARAMS[name]
    assert archlab.model_info(name).family == "cnn"


@pytest.mark.parametrize("name", GIANTS)
def test_state_dict_layout_is_torchvisions(name):
    facts = _facts()
    if facts is None or name not in facts:
        pytest.skip("torchvision_facts.json (shared data) is not available for this model")
    ours = {k: list(v.shape) for k, v in _meta(name).state_dict().items()}
    assert ours == facts[name]["state_dict"]
    assert facts[name]["params"] == PARAMS[name]


def test_new_head_and_channels_change_only_what_they_should():
    base = count_parameters(_meta("vgg16"))
    tuned = count_parameters(_meta("vgg16", num_classes=10, in_channels=1))
    assert base - tuned == (1000 - 10) * (4096 + 1) + 64 * 2 * 9


def _every_parameter_gets_a_gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no (finite) gradient for {missing}"
    assert sum(p.grad.abs().sum() for p in model.parameters()) > 0
    return out


@pytest.mark.parametrize("input_size", [32, 28])
def test_lenet5_forward_backward_at_its_sizes(input_size):
    model = archlab.create_model("lenet5", input_size=input_size)
    out = _every_parameter_gets_a_gradient(model, torch.randn(4, 1, input_size, input_size))
    assert out.shape == (4, 10)
    assert model.forward_features(torch.randn(1, 1, input_size, input_size)).shape == (1, 120, 1, 1)


def test_lenet5_on_28x28_is_the_32x32_net_on_the_centred_image():
    m32, m28 = archlab.create_model("lenet5"), archlab.create_model("lenet5", input_size=28)
    m28.load_state_dict(m32.state_dict(), strict=True)  # same parameters, only C1's padding differs
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
    m32.double(), m28.double()
    assert torch.allclose(m28(x), m32(F.pad(x, (2, 2, 2, 2))), atol=1e-12)


def test_lenet5_input_errors():
    for side in (31, 34, 0):
        with pytest.raises(ConfigError, match=f"input_size must be an even side from 2 to 32 .*got {side}"):
            archlab.create_model("lenet5", input_size=side)
    assert archlab.create_model("lenet5", input_size=8)(torch.randn(2, 1, 8, 8)).shape == (2, 10)  # padded by 12
    with pytest.raises(ConfigError, match="activation must be one of"):
        archlab.create_model("lenet5", activation="sigmoidd")
    model = archlab.create_model("lenet5")
    with pytest.raises(ConfigError, match=r"lenet5 expects input of shape \(B, 1, 32, 32\), got \(2, 1, 28, 28\)"):
        model(torch.randn(2, 1, 28, 28))


def test_lenet5_learns_real_digits():
    """80 steps on scikit-learn's real handwritten digits, scaled to 28x28: the loss really falls."""
    digits = pytest.importorskip("sklearn.datasets").load_digits()
    g = torch.Generator().manual_seed(0)
    X = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8) in [0, 1]
    X = F.interpolate(X, size=(28, 28), mode="bilinear", align_corners=False)  # (N, 1, 28, 28)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(X), generator=g)
    X, y = X[order], y[order]
    X_train, y_train, X_test, y_test = X[:1400], y[:1400], X[1400:], y[1400:]
    torch.manual_seed(0)
    model = archlab.create_model("lenet5", input_size=28, activation="relu", pooling="max")
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        initial = F.cross_entropy(model(X_test), y_test).item()
    for _ in range(80):
        idx = torch.randint(0, len(X_train), (32,), generator=g)
        loss = F.cross_entropy(model(X_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        logits = model(X_test)
    final = F.cross_entropy(logits, y_test).item()
    accuracy = (logits.argmax(1) == y_test).float().mean().item()
    assert initial > 2.0 and final < 0.5, (initial, final)  # chance level is ln(10) = 2.30
    assert accuracy > 0.85, accuracy  # held-out digits


def test_alexnet_forward_backward_at_its_smallest_input():
    model = archlab.create_model("alexnet", num_classes=7)
    out = _every_parameter_gets_a_gradient(model, torch.randn(2, 3, 63, 63))
    assert out.shape == (2, 7)
    with pytest.raises(ConfigError, match=r"alexnet expects input of shape \(B, 3, H, W\) with H, W >= 63, got \(1, 3, 62, 62\)"):
        model(torch.randn(1, 3, 62, 62))


def _tiny_vgg(**kw) -> nn.Module:
    """The VGG class with a small table: the same code path as VGG-16, in milliseconds."""
    return archlab.create_model(
        "vgg11_bn", layers=(8, "M", 16, 16, "M", 16, "M"), hidden=32, pool_size=2, num_classes=5, **kw
    )


def test_tiny_vgg_from_a_table_and_its_input_checks():
    model = _tiny_vgg()
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 16, 16, 16]
    assert model.min_input_size == 8  # three halvings
    _every_parameter_gets_a_gradient(model, torch.randn(2, 3, 16, 16))
    with pytest.raises(ConfigError, match=r"H, W >= 8, got \(1, 3, 7, 7\)"):
        model(torch.randn(1, 3, 7, 7))
    with pytest.raises(ConfigError, match="layers must be positive conv widths and 'M' pools"):
        archlab.create_model("vgg11", layers=(8, "X"))
    with pytest.raises(ConfigError, match="has no field"):
        archlab.create_model("vgg11", depth=11)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_reference_and_fused_paths_agree_on_a_whole_model(mode):
    fused = _tiny_vgg(dropout=0.0).double().train(mode == "train")
    reference = _tiny_vgg(dropout=0.0).double().train(mode == "train")
    reference.load_state_dict(fused.state_dict())
    set_impl(reference, "reference")
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    out_f, out_r = fused(x), reference(x)
    assert torch.allclose(out_r, out_f, atol=1e-10), (out_r - out_f).abs().max()
    out_f.sum().backward()
    out_r.sum().backward()
    for (name, pf), pr in zip(fused.named_parameters(), reference.parameters()):
        assert torch.allclose(pr.grad, pf.grad, atol=1e-10), name
    for bf, br in zip(fused.buffers(), reference.buffers()):  # running statistics moved alike
        assert torch.allclose(br.double(), bf.double(), atol=1e-10)


def test_bf16_autocast_forward_backward():
    model = _tiny_vgg()
    x = torch.randn(2, 3, 16, 16)
    for impl in ("fused", "reference"):
        set_impl(model, impl)
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
        assert out.dtype == torch.bfloat16
        out.float().square().mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_seeded_construction_is_deterministic():
    torch.manual_seed(123)
    a = archlab.create_model("lenet5")
    torch.manual_seed(123)
    b = archlab.create_model("lenet5")
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    c = archlab.create_model("lenet5")  # the generator moved on: different weights
    assert not torch.equal(c.features[0].weight, a.features[0].weight)


def test_save_and_load_round_trip_keeps_the_table(tmp_path):
    model = _tiny_vgg().eval()
    model.save_pretrained(tmp_path / "ckpt")
    loaded = archlab.from_pretrained(tmp_path / "ckpt")
    assert loaded.config.layers == (8, "M", 16, 16, "M", 16, "M")
    x = torch.randn(1, 3, 16, 16)
    assert torch.equal(loaded(x), model(x))


def test_imagenet_weights_into_a_grey_ten_class_model():
    """The torchvision-style checkpoint of a 3-channel, 5-class net fine-tunes as 1 channel, 10 classes."""
    src = _tiny_vgg().eval()
    dst = _tiny_vgg(in_channels=1).eval()
    dst.reset_classifier(10)
    report = load_pretrained(dst, src.state_dict())
    assert report.new_head == ["classifier.6.weight", "classifier.6.bias"]
    assert report.adapted_input == "features.0.weight"
    grey = torch.randn(2, 1, 16, 16)
    assert torch.allclose(dst.forward_features(grey), src.forward_features(grey.expand(-1, 3, -1, -1)), atol=1e-5)
    assert dst(grey).shape == (2, 10)


@pytest.mark.slow
@pytest.mark.parametrize("name", GIANTS)
def test_giants_forward_backward_at_224(name):
    model = archlab.create_model(name)
    out = _every_parameter_gets_a_gradient(model, torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 1000)
    assert model.forward_features(torch.randn(1, 3, 224, 224)).shape[-2:] == ((6, 6) if name == "alexnet" else (7, 7))
