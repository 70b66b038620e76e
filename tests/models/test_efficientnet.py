"""EfficientNet-B0..B7: one stage table, compound-scaled; torchvision's layout and counts."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import archlab
from archlab.errors import ConfigError
from archlab.models.efficientnet import B0_STAGES, SCALES
from archlab.nn import BatchNorm2d, MBConv, TwoPath, set_impl
from archlab.utils.runtime import count_parameters
from tests.models.cnn_checks import (
    assert_every_parameter_learns,
    assert_matches_torchvision_outputs,
    assert_pretrained_loads_with_new_head_and_grey_input,
    assert_torchvision_layout,
    build_on_meta,
)

COUNTS = {  # torchvision's published counts
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
}
STEM_CHANNELS = dict(b0=32, b1=32, b2=32, b3=40, b4=48, b5=48, b6=56, b7=64)
HEAD_CHANNELS = dict(b0=1280, b1=1280, b2=1408, b3=1536, b4=1792, b5=2048, b6=2304, b7=2560)


@pytest.mark.parametrize("name", COUNTS)
def test_parameter_counts_are_torchvisions(name):
    assert count_parameters(build_on_meta(name)) == COUNTS[name]


@pytest.mark.parametrize("name", COUNTS)
def test_names_and_shapes_are_torchvisions(name):
    assert_torchvision_layout(name)


@pytest.mark.parametrize("name", ["efficientnet_b0", "efficientnet_b5"])
def test_same_weights_give_torchvisions_outputs(name):
    assert_matches_torchvision_outputs(name)  # B5: batch norm eps 1e-3 enters the function


@pytest.mark.parametrize("variant", list(SCALES))
def test_compound_scaling_of_depth_and_width(variant):
    width, depth, resolution, dropout = SCALES[variant]
    model = build_on_meta(f"efficientnet_{variant}")
    stages = model.features[1:-1]
    assert [len(s) for s in stages] == [math.ceil(row[5] * depth) for row in B0_STAGES]
    for stage, row in zip(stages, B0_STAGES):
        out = stage[-1].out_channels
        assert out % 8 == 0 and abs(out - row[4] * width) <= 0.1 * row[4] * width + 4
    assert model.features[0][0].out_channels == STEM_CHANNELS[variant]
    assert model.num_features == HEAD_CHANNELS[variant] == 4 * stages[-1][-1].out_channels
    assert model.config.image_size == resolution and model.classifier[0].p == dropout


def test_stochastic_depth_grows_linearly_to_the_last_block():
    model = build_on_meta("efficientnet_b0")
    blocks = [m for m in model.modules() if isinstance(m, MBConv)]
    n = len(blocks)
    assert n == 16
    assert [b.stochastic_depth.p for b in blocks] == pytest.approx([0.2 * i / n for i in range(n)])


@pytest.mark.parametrize("variant,eps,momentum", [("b0", 1e-5, 0.1), ("b4", 1e-5, 0.1), ("b5", 1e-3, 0.01),
                                                  ("b7", 1e-3, 0.01)])
def test_batch_norm_settings_follow_the_weights_origin(variant, eps, momentum):
    norms = [m for m in build_on_meta(f"efficientnet_{variant}").modules() if isinstance(m, BatchNorm2d)]
    assert {(m.eps, m.momentum) for m in norms} == {(eps, momentum)}


def test_b0_forward_features_head_and_every_parameter_learning_at_224():
    # stochastic depth off for this check: a dropped block would rightly get no gradient
    model = archlab.create_model("efficientnet_b0", stochastic_depth_prob=0.0)
    x = torch.randn(1, 3, 224, 224)
    assert_every_parameter_learns(model, x)
    model.eval()
    with torch.no_grad():
        feature_map = model.forward_features(x)
        assert feature_map.shape == (1, 1280, 7, 7)
        torch.testing.assert_close(model.forward_head(feature_map), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("variant", ["b1", "b2", "b3", "b4", "b5", "b6", "b7"])
def test_larger_variants_learn_end_to_end_at_64_px(variant):
    # The same layers and gradient paths as at 240..600 px, in about a second each.
    model = archlab.create_model(f"efficientnet_{variant}", stochastic_depth_prob=0.0, num_classes=10)
    assert_every_parameter_learns(model, torch.randn(2, 3, 64, 64))


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["b1", "b2", "b3", "b4", "b5", "b6"])
def test_larger_variants_learn_at_their_documented_resolution(variant):
    # Batch 1 at 240..528 px: ~2..15 s each on 2 cores. B7 at 600 px (~37 GFLOPs forward, about a
    # minute with its backward pass) is left to the 64 px test above.
    model = archlab.create_model(f"efficientnet_{variant}", stochastic_depth_prob=0.0)
    size = model.config.image_size
    assert size == SCALES[variant][2]
    assert_every_parameter_learns(model, torch.randn(1, 3, size, size))


def test_stochastic_depth_makes_training_passes_random_but_seeded_and_evaluation_deterministic():
    model = archlab.create_model("efficientnet_b0", num_classes=10, dropout=0.0, stochastic_depth_prob=0.5).train()
    x = torch.randn(4, 3, 32, 32)
    outputs = []
    for seed in (0, 1, 0):
        torch.manual_seed(seed)
        outputs.append(model(x))
    assert (outputs[0] - outputs[1]).abs().max() > 1e-4  # other blocks dropped
    torch.testing.assert_close(outputs[2], outputs[0], rtol=0, atol=0)  # same seed, same blocks
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_reference_path_matches_fused_path_on_the_whole_network():
    fused = archlab.create_model("efficientnet_b0", num_classes=10).double().eval()
    reference = set_impl(copy.deepcopy(fused), "reference")
    assert all(m.impl == "reference" for m in reference.modules() if isinstance(m, TwoPath))
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(reference(x), fused(x), rtol=1e-9, atol=1e-9)  # float64


def test_runs_under_bf16_autocast():
    model = archlab.create_model("efficientnet_b0", num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, rtol=0.1, atol=0.1)  # bf16: ~3 significant digits


def test_reset_classifier_and_pretrained_loading_with_new_head_and_grey_input():
    model = archlab.create_model("efficientnet_b0")
    model.reset_classifier(3)
    assert model.classifier[1].out_features == 3 and model.config.num_classes == 3
    assert_pretrained_loads_with_new_head_and_grey_input("efficientnet_b0", 64)


def test_bad_input_and_config_raise_config_error():
    model = archlab.create_model("efficientnet_b0")
    with pytest.raises(ConfigError, match=r"efficientnet_b0 expects input of shape \(B, 3, H, W\).*got \(1, 2, 64, 64\)"):
        model(torch.randn(1, 2, 64, 64))
    with pytest.raises(ConfigError, match=r"H, W >= 32, got \(1, 3, 31, 64\)"):
        model(torch.randn(1, 3, 31, 64))
    with pytest.raises(ConfigError, match="width_mult and depth_mult must be positive, got -1.0 and 1.0"):
        archlab.create_model("efficientnet_b0", width_mult=-1.0)
    with pytest.raises(ConfigError, match=r"stochastic_depth_prob must be in \[0, 1\), got 1.5"):
        archlab.create_model("efficientnet_b0", stochastic_depth_prob=1.5)


def test_save_and_load_round_trip_keeps_config_and_function(tmp_path):
    model = archlab.create_model("efficientnet_b0", num_classes=3, width_mult=0.5, depth_mult=0.5).eval()
    model.save_pretrained(tmp_path / "ckpt")
    loaded = archlab.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config and isinstance(loaded.config.stages[0], tuple)  # JSON lists -> tuples
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
