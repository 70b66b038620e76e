"""The shared classifier interface, input checks, head reset and pretrained loading."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn as nn

from archlab.errors import CheckpointError, ConfigError
from archlab.checkpoint import PretrainedMixin
from archlab.models.cnn_base import adapt_input_conv, init_cnn_weights, load_pretrained
from archlab.models.interfaces import ImageClassifier
from archlab.nn import AdaptiveAvgPool2d, ConvNormAct, MaxPool2d


@dataclass
class TinyConfig:
    in_channels: int = 3
    num_classes: int = 10


class TinyNet(ImageClassifier, PretrainedMixin, nn.Module):
    """Two conv stages and a two-layer head: enough structure to exercise the shared helpers."""

    min_input_size = 4

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.features = nn.Sequential(
            ConvNormAct(config.in_channels, 8), MaxPool2d(2), ConvNormAct(8, 16), MaxPool2d(2),
        )
        self.pool = AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, config.num_classes))

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, features):
        return self.classifier(self.pool(features).flatten(1))  # (B, 16) -> (B, num_classes)


def tiny(**kw) -> TinyNet:
    net = TinyNet(TinyConfig(**kw))
    net.model_name = "tinynet"
    return net


def test_forward_is_head_of_features():
    net = tiny().eval()
    x = torch.randn(2, 3, 12, 12)
    features = net.forward_features(x)
    assert features.shape == (2, 16, 3, 3)
    assert torch.equal(net(x), net.forward_head(features))
    assert net(x).shape == (2, 10)


def test_input_check_names_model_expected_and_given():
    net = tiny()
    with pytest.raises(ConfigError, match=r"tinynet expects input of shape \(B, 3, H, W\) with H, W >= 4, got \(2, 1, 12, 12\)"):
        net(torch.randn(2, 1, 12, 12))
    with pytest.raises(ConfigError, match=r"H, W >= 4, got \(2, 3, 12, 3\)"):
        net(torch.randn(2, 3, 12, 3))
    with pytest.raises(ConfigError, match=r"got \(3, 12, 12\)"):
        net(torch.randn(3, 12, 12))
    net.input_size = 12  # an architecture that needs one exact size
    net(torch.randn(1, 3, 12, 12))
    with pytest.raises(ConfigError, match=r"expects input of shape \(B, 3, 12, 12\), got \(1, 3, 16, 16\)"):
        net(torch.randn(1, 3, 16, 16))


def test_reset_classifier_replaces_the_final_linear_wherever_it_is():
    net = tiny()
    assert net.classifier_name() == "classifier.2"
    first = net.classifier[0].weight.clone()
    net.reset_classifier(5)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 5)
    assert net.config.num_classes == 5
    assert isinstance(net.classifier[2], nn.Linear) and net.classifier[2].out_features == 5
    assert torch.equal(net.classifier[0].weight, first)  # the rest of the head is untouched
    net.head_name = "classifier.0"  # an explicit path wins over the search
    net.reset_classifier(32)
    assert net.classifier[0].out_features == 32
    with pytest.raises(ConfigError, match="num_classes must be a positive integer, got 0"):
        net.reset_classifier(0)


def test_load_pretrained_with_a_new_head():
    src, dst = tiny(num_classes=10), tiny(num_classes=4)
    fresh_head = dst.classifier[2].weight.clone()
    report = load_pretrained(dst, src.state_dict())
    assert report.new_head == ["classifier.2.weight", "classifier.2.bias"]
    assert report.adapted_input is None
    assert torch.equal(dst.classifier[2].weight, fresh_head)  # kept its own init
    for k, v in dst.state_dict().items():
        if not k.startswith("classifier.2."):
            assert torch.equal(v, src.state_dict()[k]), k
    x = torch.randn(2, 3, 8, 8)
    src.eval(), dst.eval()
    assert torch.equal(dst.forward_features(x), src.forward_features(x))


def test_load_pretrained_into_one_channel_sums_the_rgb_filters():
    src, dst = tiny(in_channels=3), tiny(in_channels=1)
    report = load_pretrained(dst, src.state_dict())
    assert report.adapted_input == "features.0.0.weight"
    src.eval(), dst.eval()
    grey = torch.randn(2, 1, 8, 8)
    # A grey image through the summed filters == the same image as RGB through the original model.
    assert torch.allclose(dst(grey), src(grey.expand(-1, 3, -1, -1)), atol=1e-5)


def test_load_pretrained_into_more_channels_averages_repeated_filters():
    src, six, two = tiny(in_channels=3), tiny(in_channels=6), tiny(in_channels=2)
    load_pretrained(six, src.state_dict())
    load_pretrained(two, src.state_dict())
    src.eval(), six.eval()
    g = torch.randn(2, 1, 8, 8)
    assert torch.allclose(six(g.expand(-1, 6, -1, -1)), src(g.expand(-1, 3, -1, -1)), atol=1e-5)
    w = adapt_input_conv(src.features[0][0].weight.detach(), 2)
    assert torch.allclose(two.features[0][0].weight, w)
    assert torch.allclose(w, src.features[0][0].weight[:, :2] * 1.5)


def test_load_pretrained_rejects_what_does_not_fit():
    src, dst = tiny(), tiny()
    sd = src.state_dict()
    with pytest.raises(CheckpointError, match=r"features.2.0.weight: checkpoint \(16, 4, 3, 3\) vs model \(16, 8, 3, 3\)"):
        load_pretrained(dst, {**sd, "features.2.0.weight": torch.zeros(16, 4, 3, 3)})
    partial = {k: v for k, v in sd.items() if not k.startswith("features.2.")}
    with pytest.raises(CheckpointError, match="missing keys .*features.2.0.weight"):
        load_pretrained(dst, partial)
    with pytest.raises(CheckpointError, match="unexpected keys .*extra"):
        load_pretrained(dst, {**sd, "extra": torch.zeros(1)})
    report = load_pretrained(dst, {**partial, "extra": torch.zeros(1)}, strict=False)
    assert "features.2.0.weight" in report.missing and report.unexpected == ["extra"]
    assert torch.equal(dst.features[0][0].weight, src.features[0][0].weight)


def test_load_pretrained_strips_a_ddp_prefix():
    src, dst = tiny(), tiny()
    load_pretrained(dst, {f"module.{k}": v for k, v in src.state_dict().items()})
    assert torch.equal(dst.classifier[2].weight, src.classifier[2].weight)


def test_init_cnn_weights_follows_he_initialisation():
    net = nn.Sequential(nn.Conv2d(64, 128, 3), nn.BatchNorm2d(128), nn.Linear(256, 512))
    init_cnn_weights(net)
    fan_out = 128 * 3 * 3
    std = net[0].weight.std().item()
    assert abs(std - (2.0 / fan_out) ** 0.5) < 0.03 * (2.0 / fan_out) ** 0.5, std
    assert torch.count_nonzero(net[0].bias) == 0
    assert torch.all(net[1].weight == 1) and torch.all(net[1].bias == 0)
    assert abs(net[2].weight.std().item() - 0.01) < 0.0005
