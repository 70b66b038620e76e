"""ResNet: deep residual networks (He, Zhang, Ren, Sun 2015, "Deep Residual Learning for Image Recognition").

Each block learns a residual ``F(x)`` and adds its input back:

    y = ReLU(F(x) + x)

so a block that has nothing to add can learn ``F = 0`` and pass its input through; gradients reach
early layers along the identity path, which makes 100+ layer networks trainable.

One class, two layouts, given as data:

- ImageNet ResNets (``resnet18`` .. ``resnet152``): a 7x7/2 conv + 3x3/2 max-pool stem, four
  stages of 64/128/256/512 channels (x4 for bottleneck blocks), projection shortcuts where shapes
  change (option B), global average pooling, a 1000-way dense head. Names and shapes are
  torchvision's, so its weight files load with ``strict=True``.
- CIFAR ResNets (``resnet20`` .. ``resnet110``, Section 4.2): a 3x3 conv stem of 16 channels,
  three stages of 16/32/64 channels with ``n = (depth - 2) / 6`` basic blocks each (``6n + 2``
  layers), parameter-free shortcuts (option A: subsampling + zero channels), 10 classes.
  ``plain20`` .. ``plain110`` are the same networks with ``residual=False``: no skip connections,
  the paper's "plain" baselines whose training error *rises* with depth.

Shapes: input ``(B, in_channels, H, W)`` -> ``forward_features`` ``(B, C_last, H/32, W/32)``
(``H/4`` for CIFAR) -> ``forward_head`` ``(B, num_classes)``.
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
from archlab.nn.conv_blocks import SHORTCUTS, BasicBlock, Bottleneck
from archlab.registry import build_config, register_model

BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}
STEMS = ("imagenet", "cifar")


@dataclass
class ResNetConfig:
    block: str = "basic"                              # "basic" (2 x 3x3) or "bottleneck" (1x1, 3x3, 1x1)
    layers: tuple[int, ...] = (2, 2, 2, 2)            # blocks per stage
    widths: tuple[int, ...] = (64, 128, 256, 512)     # block width per stage (output = width * expansion)
    stem: str = "imagenet"                            # "imagenet": 7x7/2 conv + 3x3/2 max-pool; "cifar": 3x3 conv
    stem_width: int = 64
    shortcut: str = "projection"                      # where shapes change: "projection" (B) or "zero_pad" (A)
    residual: bool = True                             # False: the plain twin, y = ReLU(F(x))
    zero_init_residual: bool = False                  # start each block's last BN at 0 (block = identity)
    num_classes: int = 1000
    in_channels: int = 3
    image_size: int = 224                             # documented input size (square)

    def __post_init__(self):
        check(self.block in BLOCKS, f"block must be one of {sorted(BLOCKS)}, got {self.block!r}")
        check(self.stem in STEMS, f"stem must be one of {STEMS}, got {self.stem!r}")
        check(self.shortcut in SHORTCUTS, f"shortcut must be one of {SHORTCUTS}, got {self.shortcut!r}")
        check(len(self.layers) == len(self.widths) and len(self.layers) > 0,
              f"layers and widths must be non-empty and of equal length, got {self.layers} and {self.widths}")
        check(all(n > 0 for n in self.layers), f"layers must be positive block counts, got {self.layers}")
        check(all(w > 0 for w in self.widths) and self.stem_width > 0,
              f"widths must be positive, got stem_width={self.stem_width}, widths={self.widths}")
        check(self.num_classes > 0, f"num_classes must be positive, got {self.num_classes}")
        check(self.in_channels > 0, f"in_channels must be positive, got {self.in_channels}")


class ResNet(ImageClassifier, PretrainedMixin, nn.Module):
    config_class = ResNetConfig
    head_name = "fc"

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.config = c = config
        # Below the total downsampling (32, or 4 for the CIFAR stem) the last feature map has < 1 cell.
        self.min_input_size = 32 if c.stem == "imagenet" else 4
        block = BLOCKS[c.block]
        if c.stem == "imagenet":
            self.conv1 = Conv2d(c.in_channels, c.stem_width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = Conv2d(c.in_channels, c.stem_width, 3, stride=1, padding=1, bias=False)
        self.bn1 = BatchNorm2d(c.stem_width)
        self.relu = nn.ReLU()
        self.maxpool = MaxPool2d(3, stride=2, padding=1) if c.stem == "imagenet" else nn.Identity()

        channels = c.stem_width
        for i, (n_blocks, width) in enumerate(zip(c.layers, c.widths)):
            stride = 1 if i == 0 else 2  # every stage after the first halves the feature map
            blocks = []
            for j in range(n_blocks):
                blocks.append(block(channels, width, stride if j == 0 else 1, c.shortcut, c.residual))
                channels = width * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_features = channels
        self.avgpool = AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, c.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        init_cnn_weights(self, linear_std=None)  # He et al. 2015 normal init for convs, BN = (1, 0)
        if self.config.zero_init_residual:
            # Each block starts as the identity: the last BN of F scales F(x) to 0.
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_((m.bn3 if isinstance(m, Bottleneck) else m.bn2).weight)

    @property
    def stages(self) -> list[nn.Sequential]:
        return [getattr(self, f"layer{i + 1}") for i in range(len(self.config.layers))]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages:
            x = stage(x)
        return x  # (B, num_features, H', W')

    def forward_head(self, feature_map: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(feature_map).flatten(1)  # (B, num_features)
        return self.fc(x)


# --- the architectures: Table 1 of the paper (ImageNet), Section 4.2 (CIFAR) ------------------------

def cifar_defaults(depth: int, residual: bool) -> dict:
    n = (depth - 2) // 6  # depth = 6n + 2
    return dict(block="basic", layers=(n, n, n), widths=(16, 32, 64), stem="cifar", stem_width=16,
                shortcut="zero_pad", residual=residual, num_classes=10, image_size=32)


def _build(defaults: dict, config: dict) -> ResNet:
    return ResNet(build_config(ResNetConfig, defaults, config))


@register_model("resnet18", family="cnn", description="ResNet-18 (He et al. 2015), torchvision layout")
def resnet18(**config) -> ResNet:
    return _build(dict(block="basic", layers=(2, 2, 2, 2)), config)


@register_model("resnet34", family="cnn", description="ResNet-34 (He et al. 2015), torchvision layout")
def resnet34(**config) -> ResNet:
    return _build(dict(block="basic", layers=(3, 4, 6, 3)), config)


@register_model("resnet50", family="cnn", description="ResNet-50 (He et al. 2015), bottleneck blocks, torchvision layout")
def resnet50(**config) -> ResNet:
    return _build(dict(block="bottleneck", layers=(3, 4, 6, 3)), config)


@register_model("resnet101", family="cnn", description="ResNet-101 (He et al. 2015), bottleneck blocks, torchvision layout")
def resnet101(**config) -> ResNet:
    return _build(dict(block="bottleneck", layers=(3, 4, 23, 3)), config)


@register_model("resnet152", family="cnn", description="ResNet-152 (He et al. 2015), bottleneck blocks, torchvision layout")
def resnet152(**config) -> ResNet:
    return _build(dict(block="bottleneck", layers=(3, 8, 36, 3)), config)


@register_model("resnet20", family="cnn", description="CIFAR ResNet-20 (He et al. 2015, Sec. 4.2): 6n+2 layers, option A shortcuts")
def resnet20(**config) -> ResNet:
    return _build(cifar_defaults(20, residual=True), config)


@register_model("plain20", family="cnn", description="CIFAR Plain-20: ResNet-20 without skip connections")
def plain20(**config) -> ResNet:
    return _build(cifar_defaults(20, residual=False), config)


@register_model("resnet32", family="cnn", description="CIFAR ResNet-32 (He et al. 2015, Sec. 4.2): 6n+2 layers, option A shortcuts")
def resnet32(**config) -> ResNet:
    return _build(cifar_defaults(32, residual=True), config)


@register_model("plain32", family="cnn", description="CIFAR Plain-32: ResNet-32 without skip connections")
def plain32(**config) -> ResNet:
    return _build(cifar_defaults(32, residual=False), config)


@register_model("resnet44", family="cnn", description="CIFAR ResNet-44 (He et al. 2015, Sec. 4.2): 6n+2 layers, option A shortcuts")
def resnet44(**config) -> ResNet:
    return _build(cifar_defaults(44, residual=True), config)


@register_model("plain44", family="cnn", description="CIFAR Plain-44: ResNet-44 without skip connections")
def plain44(**config) -> ResNet:
    return _build(cifar_defaults(44, residual=False), config)


@register_model("resnet56", family="cnn", description="CIFAR ResNet-56 (He et al. 2015, Sec. 4.2): 6n+2 layers, option A shortcuts")
def resnet56(**config) -> ResNet:
    return _build(cifar_defaults(56, residual=True), config)


@register_model("plain56", family="cnn", description="CIFAR Plain-56: ResNet-56 without skip connections")
def plain56(**config) -> ResNet:
    return _build(cifar_defaults(56, residual=False), config)


@register_model("resnet110", family="cnn", description="CIFAR ResNet-110 (He et al. 2015, Sec. 4.2): 6n+2 layers, option A shortcuts")
def resnet110(**config) -> ResNet:
    return _build(cifar_defaults(110, residual=True), config)


@register_model("plain110", family="cnn", description="CIFAR Plain-110: ResNet-110 without skip connections")
def plain110(**config) -> ResNet:
    return _build(cifar_defaults(110, residual=False), config)
