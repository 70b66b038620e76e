"""EfficientNet-B0..B7 (Tan & Le 2019, "EfficientNet: Rethinking Model Scaling for CNNs").

A baseline network (B0, found by architecture search) of MBConv blocks with squeeze-and-excitation,
scaled up by one compound coefficient ``phi`` that grows all three dimensions together:

    depth      d = alpha ** phi      (alpha = 1.2)   layers per stage:  ceil(L_i * d)
    width      w = beta  ** phi      (beta  = 1.1)   channels:          make_divisible(C_i * w, 8)
    resolution r = gamma ** phi      (gamma = 1.15)  input size
    subject to alpha * beta**2 * gamma**2 ~= 2, so each step of phi roughly doubles the FLOPs.

The published models round ``(w, d, r)`` to the table below (with the dropout before the head);
the stage table of B0 is data, scaled by those two coefficients. Stochastic depth drops each
residual block with a probability growing linearly with its index, up to 0.2 for the last block.

Layout, names and shapes are torchvision's (its weights load with ``strict=True``):
``features.0`` stem conv 3x3/2, ``features.1..7`` the seven MBConv stages, ``features.8`` a 1x1
conv to ``4 x`` the last stage's channels, then global average pooling, dropout and a dense layer.
B5-B7 use batch norm with eps 1e-3 and momentum 0.01 (their weights were ported from TensorFlow);
B0-B4 PyTorch's defaults (1e-5, 0.1).

Shapes: ``(B, 3, r, r)`` -> ``forward_features`` ``(B, C_head, r/32, r/32)`` -> ``(B, num_classes)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from archlab.errors import check
from archlab.checkpoint import PretrainedMixin
from archlab.models.interfaces import ImageClassifier
from archlab.nn import AdaptiveAvgPool2d
from archlab.nn.conv_blocks import ConvNormAct, MBConv, make_divisible
from archlab.registry import build_config, register_model

# EfficientNet-B0, Table 1: (expand_ratio, kernel, stride, in_channels, out_channels, layers) per stage.
B0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)

# variant: (width_mult, depth_mult, resolution, dropout), torchvision's table (B2: 288 px; paper 260).
SCALES = {
    "b0": (1.0, 1.0, 224, 0.2),
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 288, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}
TF_NORM = dict(norm_eps=1e-3, norm_momentum=0.01)  # B5-B7: batch norm of the TensorFlow originals


@dataclass
class EfficientNetConfig:
    width_mult: float = 1.0
    depth_mult: float = 1.0
    stages: tuple[tuple[int, ...], ...] = B0_STAGES
    dropout: float = 0.2                  # before the dense head
    stochastic_depth_prob: float = 0.2    # drop probability of the last block (linear in block index)
    norm_eps: float = 1e-5
    norm_momentum: float = 0.1
    num_classes: int = 1000
    in_channels: int = 3
    image_size: int = 224                 # the resolution this variant is scaled for

    def __post_init__(self):
        check(self.width_mult > 0 and self.depth_mult > 0,
              f"width_mult and depth_mult must be positive, got {self.width_mult} and {self.depth_mult}")
        check(len(self.stages) > 0 and all(len(s) == 6 for s in self.stages),
              f"stages must be rows of (expand_ratio, kernel, stride, in, out, layers), got {self.stages}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        check(0.0 <= self.stochastic_depth_prob < 1.0,
              f"stochastic_depth_prob must be in [0, 1), got {self.stochastic_depth_prob}")
        check(self.num_classes > 0, f"num_classes must be positive, got {self.num_classes}")
        check(self.in_channels > 0, f"in_channels must be positive, got {self.in_channels}")

    def scaled_stages(self) -> list[tuple[int, int, int, int, int, int]]:
        """The stage table after compound scaling: channels x width_mult (to /8), layers x depth_mult (ceil)."""
        return [(e, k, s, make_divisible(c_in * self.width_mult), make_divisible(c_out * self.width_mult),
                 int(math.ceil(n * self.depth_mult))) for e, k, s, c_in, c_out, n in self.stages]


class EfficientNet(ImageClassifier, PretrainedMixin, nn.Module):
    config_class = EfficientNetConfig
    head_name = "classifier.1"
    min_input_size = 32  # the total downsampling: five stride-2 stages

    def __init__(self, config: EfficientNetConfig):
        super().__init__()
        self.config = c = config
        norm = dict(norm_eps=c.norm_eps, norm_momentum=c.norm_momentum)
        stages = c.scaled_stages()
        layers: list[nn.Module] = [
            ConvNormAct(c.in_channels, stages[0][3], 3, stride=2, activation="silu", **norm)
        ]
        total_blocks, block_id = sum(s[5] for s in stages), 0
        for expand_ratio, kernel, stride, c_in, c_out, n_blocks in stages:
            blocks = []
            for j in range(n_blocks):
                # Stochastic depth: 0 for the first block, rising linearly towards the last.
                p = c.stochastic_depth_prob * block_id / total_blocks
                blocks.append(MBConv(c_in if j == 0 else c_out, c_out, kernel, stride if j == 0 else 1,
                                     expand_ratio, p, **norm))
                block_id += 1
            layers.append(nn.Sequential(*blocks))
        last_in = stages[-1][4]
        self.num_features = 4 * last_in
        layers.append(ConvNormAct(last_in, self.num_features, 1, activation="silu", **norm))
        self.features = nn.Sequential(*layers)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(self.num_features, c.num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, num_features, H/32, W/32)

    def forward_head(self, feature_map: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(feature_map).flatten(1)  # (B, num_features)
        return self.classifier(x)


def _build(variant: str, config: dict) -> EfficientNet:
    width, depth, resolution, dropout = SCALES[variant]
    defaults = dict(width_mult=width, depth_mult=depth, image_size=resolution, dropout=dropout)
    if variant in ("b5", "b6", "b7"):
        defaults.update(TF_NORM)
    return EfficientNet(build_config(EfficientNetConfig, defaults, config))


@register_model("efficientnet_b0", family="cnn", description="EfficientNet-B0 (Tan & Le 2019): MBConv + SE baseline, 224 px")
def efficientnet_b0(**config) -> EfficientNet:
    return _build("b0", config)


@register_model("efficientnet_b1", family="cnn", description="EfficientNet-B1: compound scaling w=1.0, d=1.1, 240 px")
def efficientnet_b1(**config) -> EfficientNet:
    return _build("b1", config)


@register_model("efficientnet_b2", family="cnn", description="EfficientNet-B2: compound scaling w=1.1, d=1.2, 288 px")
def efficientnet_b2(**config) -> EfficientNet:
    return _build("b2", config)


@register_model("efficientnet_b3", family="cnn", description="EfficientNet-B3: compound scaling w=1.2, d=1.4, 300 px")
def efficientnet_b3(**config) -> EfficientNet:
    return _build("b3", config)


@register_model("efficientnet_b4", family="cnn", description="EfficientNet-B4: compound scaling w=1.4, d=1.8, 380 px")
def efficientnet_b4(**config) -> EfficientNet:
    return _build("b4", config)


@register_model("efficientnet_b5", family="cnn", description="EfficientNet-B5: compound scaling w=1.6, d=2.2, 456 px")
def efficientnet_b5(**config) -> EfficientNet:
    return _build("b5", config)


@register_model("efficientnet_b6", family="cnn", description="EfficientNet-B6: compound scaling w=1.8, d=2.6, 528 px")
def efficientnet_b6(**config) -> EfficientNet:
    return _build("b6", config)


@register_model("efficientnet_b7", family="cnn", description="EfficientNet-B7: compound scaling w=2.0, d=3.1, 600 px")
def efficientnet_b7(**config) -> EfficientNet:
    return _build("b7", config)
