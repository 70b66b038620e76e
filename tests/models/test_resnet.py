"""ResNet: torchvision's ImageNet layout, the CIFAR ResNets of the paper and their plain twins."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab.errors import ConfigError
from archlab.nn import TwoPath, set_impl
from archlab.nn.conv_blocks import BasicBlock, Bottleneck, ZeroPadShortcut
from archlab.utils.runtime import count_parameters
from tests.models.cnn_checks import (
    assert_every_parameter_learns,
    assert_matches_torchvision_outputs,
    assert_pretrained_loads_with_new_head_and_grey_input,
    assert_torchvision_layout,
    build_on_meta,
)

IMAGENET_COUNTS = {  # torchvision's published counts
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}
CIFAR_COUNTS = {  # exact counts of our build, and the paper's Table 6 figure they round to
    20: (269_722, "0.27M"),
    32: (464_154, "0.46M"),
    44: (658_586, "0.66M"),
    56: (853_018, "0.85M"),
    110: (1_727_962, "1.7M"),
}


@pytest.mark.parametrize("name", IMAGENET_COUNTS)
def test_imagenet_resnets_have_torchvisions_parameter_count(name):
    assert count_parameters(build_on_meta(name)) == IMAGENET_COUNTS[name]


@pytest.mark.parametrize("name", IMAGENET_COUNTS)
def test_imagenet_resnets_have_torchvisions_names_and_shapes(name):
    assert_torchvision_layout(name)


# ResNet-50 with formula weights and training-mode batch norm over batch 2 is ill-conditioned: its
# last stage normalises 2 x 2 x 2 = 8 values per channel, so kernel rounding (1e-16) grows to ~1e-6
# in float64 (our own reference and fused paths differ by ~2e-5 on it). Logits are O(1), so 1e-4
# still catches any difference of layout or wiring; ResNet-18 agrees to ~1e-12.
@pytest.mark.parametrize("name, atol", [("resnet18", 1e-9), ("resnet50", 1e-4)])
def test_same_weights_give_torchvisions_outputs(name, atol):
    assert_matches_torchvision_outputs(name, atol=atol)


@pytest.mark.parametrize("depth", CIFAR_COUNTS)
def test_cifar_resnets_have_the_papers_parameter_counts(depth):
    exact, published = CIFAR_COUNTS[depth]
    model = archlab.create_model(f"resnet{depth}")
    assert count_parameters(model) == exact
    digits = 1 if published == "1.7M" else 2
    assert f"{round(exact / 1e6, digits)}M" == published
    n = (depth - 2) // 6
    assert [len(s) for s in model.stages] == [n, n, n]
    # 6n stacked 3x3 convs + the first conv + the dense layer = depth weighted layers
    assert sum(1 for m in model.modules() if isinstance(m, torch.nn.Conv2d)) + 1 == depth
    # option A shortcuts: no parameters, one per stage change
    assert sum(isinstance(m, ZeroPadShortcut) for m in model.modules()) == 2
    assert model.config.num_classes == 10 and model.config.image_size == 32


@pytest.mark.parametrize("depth", [20, 110])
def test_plain_twin_has_the_same_layers_without_skip_connections(depth):
    resnet, plain = archlab.create_model(f"resnet{depth}"), archlab.create_model(f"plain{depth}")
    assert count_parameters(plain) == count_parameters(resnet)
    assert not any(isinstance(m, ZeroPadShortcut) for m in plain.modules())
    assert all(not b.residual for b in plain.modules() if isinstance(b, BasicBlock))
    plain.load_state_dict(resnet.state_dict())  # same names: option A shortcuts have no weights
    x = torch.randn(2, 3, 32, 32)
    resnet.eval(), plain.eval()
    # same weights, different function: only the skip connections differ
    assert (resnet(x) - plain(x)).abs().max() > 1e-3


def test_forward_features_and_head_shapes():
    model = archlab.create_model("resnet50").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feature_map = model.forward_features(x)
        assert feature_map.shape == (1, 2048, 2, 2)  # 64 / 32
        torch.testing.assert_close(model.forward_head(feature_map), model(x), rtol=0, atol=0)
    assert archlab.create_model("resnet20").forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 64, 8, 8)


@pytest.mark.parametrize("name,size", [
    ("resnet18", 224), ("resnet34", 224), ("resnet50", 224), ("resnet101", 224), ("resnet152", 224),
    ("resnet20", 32), ("plain20", 32), ("resnet110", 32),
])
def test_every_parameter_gets_a_gradient_at_the_documented_input_size(name, size):
    model = archlab.create_model(name)
    assert model.config.image_size == size
    assert_every_parameter_learns(model, torch.randn(1 if size == 224 else 2, 3, size, size))


def test_resnet20_loss_falls_on_a_small_batch():
    torch.manual_seed(0)
    model = archlab.create_model("resnet20")
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


def test_reset_classifier_gives_a_new_head():
    model = archlab.create_model("resnet18")
    model.reset_classifier(5)
    assert model.fc.out_features == 5 and model.config.num_classes == 5
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_torchvision_style_state_dict_loads_with_new_head_and_one_input_channel():
    assert_pretrained_loads_with_new_head_and_grey_input("resnet18", 64)


def test_wrong_channels_or_too_small_image_raise_config_error():
    model = archlab.create_model("resnet18")
    with pytest.raises(ConfigError, match=r"resnet18 expects input of shape \(B, 3, H, W\).*got \(1, 4, 64, 64\)"):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(ConfigError, match=r"H, W >= 32, got \(1, 3, 16, 16\)"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ConfigError, match=r"H, W >= 4, got \(1, 3, 2, 2\)"):
        archlab.create_model("resnet20")(torch.randn(1, 3, 2, 2))


@pytest.mark.parametrize("bad,message", [
    (dict(block="basicc"), r"block must be one of \['basic', 'bottleneck'\], got 'basicc'"),
    (dict(layers=(2, 2), widths=(16, 32, 64)), r"layers and widths .* got \(2, 2\) and \(16, 32, 64\)"),
    (dict(shortcut="A"), r"shortcut must be one of .*got 'A'"),
    (dict(num_classes=0), r"num_classes must be positive, got 0"),
    (dict(nonsense=1), r"ResNetConfig has no field\(s\) nonsense"),
])
def test_bad_config_raises_config_error_naming_the_field(bad, message):
    with pytest.raises(ConfigError, match=message):
        archlab.create_model("resnet20", **bad)


def test_reference_path_matches_fused_path_on_the_whole_network():
    fused = archlab.create_model("resnet20").double()
    reference = set_impl(copy.deepcopy(fused), "reference")
    assert all(m.impl == "reference" for m in reference.modules() if isinstance(m, TwoPath))
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(reference(x), fused(x), rtol=1e-9, atol=1e-9)  # float64, train-mode BN


def test_bottleneck_network_under_bf16_autocast_matches_float32():
    model = archlab.create_model("resnet50", num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, rtol=0.1, atol=0.1)  # bf16: ~3 significant digits


def test_zero_init_residual_starts_every_block_as_identity():
    model = archlab.create_model("resnet50", zero_init_residual=True)
    last_bns = [b.bn3 for b in model.modules() if isinstance(b, Bottleneck)]
    assert len(last_bns) == 16 and all(torch.count_nonzero(bn.weight) == 0 for bn in last_bns)


def test_save_and_load_round_trip_keeps_the_function(tmp_path):
    model = archlab.create_model("resnet20", num_classes=3).eval()
    model.save_pretrained(tmp_path / "ckpt")
    loaded = archlab.from_pretrained(tmp_path / "ckpt")
    x = torch.randn(2, 3, 32, 32)
    assert type(loaded) is type(model) and loaded.config == model.config
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_seeded_builds_are_identical():
    torch.manual_seed(7)
    a = archlab.create_model("resnet20")
    torch.manual_seed(7)
    b = archlab.create_model("resnet20")
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
