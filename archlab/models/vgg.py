"""VGG (Simonyan & Zisserman 2014, "Very deep convolutional networks for large-scale image recognition").

The lesson of VGG: depth with small filters. Only 3x3 convolutions (padding 1, size kept) with
ReLU, 2x2 max pools halving the map between stages; two stacked 3x3 convs see a 5x5 field, three
a 7x7, with fewer parameters and more non-linearities than one large filter::

    [conv 3x3 (-> batch norm) -> ReLU] x n, max pool 2x2     per stage, widths 64, 128, 256, 512, 512
    adaptive average pool 7x7 -> dense 4096 -> ReLU -> dropout -> dense 4096 -> ReLU -> dropout
    -> dense num_classes

VGG-11/13/16/19 (the paper's configurations A, B, D, E) differ only by the stage table below:
numbers are conv widths, "M" a max pool. ``_bn`` variants add batch norm after every conv (2015).
Layout, names and parameter counts are torchvision's, so its weight files load unchanged. Five
pools need an input of at least 32x32; 224x224 is the reference size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from archlab.errors import check
from archlab.checkpoint import PretrainedMixin
from archlab.models.cnn_base import init_cnn_weights
from archlab.models.interfaces import ImageClassifier
from archlab.nn import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, MaxPool2d
from archlab.registry import build_config, register_model

# The paper's configurations: conv widths in order, "M" = 2x2 max pool.
VGG_LAYERS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),  # VGG-11
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),  # VGG-13
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),  # VGG-16
    "E": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"),  # VGG-19
}

@dataclass
class VGGConfig:
    layers: tuple[int | str, ...] = VGG_LAYERS["D"]  # conv widths and "M" pools
    batch_norm: bool = False
    num_classes: int = 1000
    in_channels: int = 3
    hidden: int = 4096  # width of the two dense layers
    dropout: float = 0.5
    pool_size: int = 7  # the adaptive average pool's output, pool_size x pool_size

    def __post_init__(self):
        self.layers = tuple(self.layers)
        check(
            len(self.layers) > 0 and all(v == "M" or (isinstance(v, int) and v > 0) for v in self.layers),
            f"layers must be positive conv widths and 'M' pools, got {self.layers}",
        )
        check(isinstance(self.layers[0], int), f"layers must start with a conv width, got {self.layers[0]!r}")
        check(self.num_classes > 0, f"num_classes must be positive, got {self.num_classes}")
        check(self.in_channels > 0, f"in_channels must be positive, got {self.in_channels}")
        check(self.hidden > 0, f"hidden must be positive, got {self.hidden}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        check(self.pool_size > 0, f"pool_size must be positive, got {self.pool_size}")


class VGG(ImageClassifier, PretrainedMixin, nn.Module):
    config_class = VGGConfig

    def __init__(self, config: VGGConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = config.in_channels
        for v in config.layers:
            if v == "M":
                layers.append(MaxPool2d(2, stride=2))  # (B, C, H/2, W/2)
                continue
            layers.append(Conv2d(width, v, 3, padding=1))  # (B, v, H, W)
            if config.batch_norm:
                layers.append(BatchNorm2d(v))
            layers.append(nn.ReLU(inplace=True))
            width = v
        self.features = nn.Sequential(*layers)
        # Each pool halves (floor) the map: 2**pools is the smallest size that leaves 1x1.
        self.min_input_size = 2 ** config.layers.count("M")
        self.avgpool = AdaptiveAvgPool2d((config.pool_size, config.pool_size))
        self.classifier = nn.Sequential(
            nn.Linear(width * config.pool_size**2, config.hidden), nn.ReLU(inplace=True), nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.hidden), nn.ReLU(inplace=True), nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.num_classes),
        )
        init_cnn_weights(self, linear_std=0.01)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(features).flatten(1))  # (B, C*7*7) -> (B, num_classes)


def _vgg(cfg: str, batch_norm: bool, overrides: dict) -> VGG:
    return VGG(build_config(VGGConfig, {"layers": VGG_LAYERS[cfg], "batch_norm": batch_norm}, overrides))


@register_model("vgg11", family="cnn", description="VGG-11 (configuration A), torchvision layout")
def vgg11(**config) -> VGG:
    return _vgg("A", False, config)


@register_model("vgg11_bn", family="cnn", description="VGG-11 with batch norm, torchvision layout")
def vgg11_bn(**config) -> VGG:
    return _vgg("A", True, config)


@register_model("vgg13", family="cnn", description="VGG-13 (configuration B), torchvision layout")
def vgg13(**config) -> VGG:
    return _vgg("B", False, config)


@register_model("vgg13_bn", family="cnn", description="VGG-13 with batch norm, torchvision layout")
def vgg13_bn(**config) -> VGG:
    return _vgg("B", True, config)


@register_model("vgg16", family="cnn", description="VGG-16 (configuration D), torchvision layout")
def vgg16(**config) -> VGG:
    return _vgg("D", False, config)


@register_model("vgg16_bn", family="cnn", description="VGG-16 with batch norm, torchvision layout")
def vgg16_bn(**config) -> VGG:
    return _vgg("D", True, config)


@register_model("vgg19", family="cnn", description="VGG-19 (configuration E), torchvision layout")
def vgg19(**config) -> VGG:
    return _vgg("E", False, config)


@register_model("vgg19_bn", family="cnn", description="VGG-19 with batch norm, torchvision layout")
def vgg19_bn(**config) -> VGG:
    return _vgg("E", True, config)
