"""GoogLeNet / Inception v1 in torchvision's layout, with optional auxiliary classifiers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab.errors import ConfigError
from archlab.models.googlenet import INCEPTION_V1, GoogLeNetOutputs
from archlab.utils.runtime import count_parameters
from tests.models.cnn_checks import (
    assert_every_parameter_learns,
    assert_matches_torchvision_outputs,
    assert_pretrained_loads_with_new_head_and_grey_input,
    assert_torchvision_layout,
    build_on_meta,
)


def test_parameter_counts_with_and_without_auxiliary_heads():
    # torchvision's published 6,624,904 is the model its weights describe: no auxiliary heads.
    assert count_parameters(build_on_meta("googlenet")) == 6_624_904
    # each aux head: 1x1 conv to 128 (+BN), FC 2048 -> 1024, FC 1024 -> 1000
    aux1 = 512 * 128 + 2 * 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000
    aux2 = aux1 + 16 * 128
    assert count_parameters(build_on_meta("googlenet", aux_logits=True)) == 6_624_904 + aux1 + aux2 == 13_004_888


def test_names_and_shapes_are_torchvisions():
    assert_torchvision_layout("googlenet")


def test_same_weights_give_torchvisions_outputs():
    assert_matches_torchvision_outputs("googlenet")


def test_the_papers_5x5_filters_add_exactly_the_extra_weights():
    extra = sum(spec[4] * spec[5] * (25 - 9) for name, spec in INCEPTION_V1 if name.startswith("inception"))
    paper = build_on_meta("googlenet", ch5x5_kernel_size=5)
    assert count_parameters(paper) == 6_624_904 + extra
    assert paper.inception3a.branch3[1].conv.kernel_size == (5, 5)


def test_inception_output_channels_follow_table_1():
    model = build_on_meta("googlenet")
    modules = [(name, spec) for name, spec in INCEPTION_V1 if name.startswith("inception")]
    for (name, spec), (_, next_spec) in zip(modules, modules[1:]):
        assert getattr(model, name).out_channels == next_spec[0], name  # output of one = input of the next
    assert model.inception5b.out_channels == 1024


def test_forward_features_head_and_every_parameter_learning_with_aux_heads():
    torch.manual_seed(0)
    model = archlab.create_model("googlenet", aux_logits=True, num_classes=10)
    x, y = torch.randn(2, 3, 224, 224), torch.tensor([1, 7])

    def paper_loss(m, x):
        out = m.forward_train(x)
        assert isinstance(out, GoogLeNetOutputs) and out.aux_logits1.shape == (2, 10)
        return F.cross_entropy(out.logits, y) + 0.3 * (F.cross_entropy(out.aux_logits1, y)
                                                      + F.cross_entropy(out.aux_logits2, y))

    assert_every_parameter_learns(model, x, paper_loss)
    model.eval()
    with torch.no_grad():
        feature_map = model.forward_features(x)
        assert feature_map.shape == (2, 1024, 7, 7)
        logits = model(x)  # the plain forward returns the main logits only, also with aux heads built
    assert torch.is_tensor(logits) and logits.shape == (2, 10)
    torch.testing.assert_close(model.forward_head(feature_map), logits, rtol=0, atol=0)


def test_forward_train_without_aux_heads_is_a_config_error():
    model = archlab.create_model("googlenet")
    with pytest.raises(ConfigError, match="build with aux_logits=True, got False"):
        model.forward_train(torch.randn(1, 3, 64, 64))


def test_reset_classifier_also_replaces_the_auxiliary_outputs():
    model = archlab.create_model("googlenet", aux_logits=True)
    model.reset_classifier(4)
    assert model.fc.out_features == model.aux1.fc2.out_features == model.aux2.fc2.out_features == 4
    out = model.train().forward_train(torch.randn(2, 3, 64, 64))
    assert [t.shape for t in out] == [(2, 4)] * 3


def test_transform_input_maps_imagenet_normalisation_to_the_original_scaling():
    model = archlab.create_model("googlenet", transform_input=True).eval()
    rgb = torch.rand(1, 3, 32, 32)  # an image in [0, 1]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(model._transform_input((rgb - mean) / std), (rgb - 0.5) / 0.5,
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="transform_input needs in_channels=3 .* got in_channels=1"):
        archlab.create_model("googlenet", transform_input=True, in_channels=1)


def test_torchvision_style_state_dict_loads_with_new_head_and_one_input_channel():
    assert_pretrained_loads_with_new_head_and_grey_input("googlenet", 64)


def test_wrong_channels_or_too_small_image_raise_config_error():
    model = archlab.create_model("googlenet")
    with pytest.raises(ConfigError, match=r"googlenet expects input of shape \(B, 3, H, W\).*got \(1, 1, 64, 64\)"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ConfigError, match=r"H, W >= 32, got \(1, 3, 16, 16\)"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ConfigError, match="ch5x5_kernel_size must be 3 or 5, got 4"):
        archlab.create_model("googlenet", ch5x5_kernel_size=4)


def test_save_and_load_round_trip_with_aux_heads(tmp_path):
    model = archlab.create_model("googlenet", aux_logits=True, num_classes=5).eval()
    model.save_pretrained(tmp_path / "ckpt")
    loaded = archlab.from_pretrained(tmp_path / "ckpt")
    assert loaded.config == model.config and loaded.aux1 is not None
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
