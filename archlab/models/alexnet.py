"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet classification with deep CNNs").

The network that won ImageNet 2012: five convolutions with ReLU (not tanh: much faster to train),
overlapping 3x3 max pooling with stride 2, and a 4096-4096 dense head regularised by dropout::

    conv 64@11x11/4 -> pool -> conv 192@5x5 -> pool -> conv 384@3x3 -> conv 256@3x3 -> conv 256@3x3
    -> pool -> adaptive average pool to 6x6 -> [dropout, dense 4096, ReLU] x 2 -> dense num_classes

Layout, names and the 61,100,840 parameters are torchvision's single-tower version (the paper's
two-GPU split and local response normalization are gone), so its weight files load unchanged.
The adaptive pool lets any image of at least 63x63 through; 224x224 is the reference size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from archlab.errors import check
from archlab.checkpoint import PretrainedMixin
from archlab.models.interfaces import ImageClassifier
from archlab.nn import AdaptiveAvgPool2d, Conv2d, MaxPool2d
from archlab.registry import build_config, register_model


@dataclass
class AlexNetConfig:
    num_classes: int = 1000
    in_channels: int = 3
    dropout: float = 0.5

    def __post_init__(self):
        check(self.num_classes > 0, f"num_classes must be positive, got {self.num_classes}")
        check(self.in_channels > 0, f"in_channels must be positive, got {self.in_channels}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


class AlexNet(ImageClassifier, PretrainedMixin, nn.Module):
    config_class = AlexNetConfig
    # Smallest input whose last 3x3/2 pool still sees a 3x3 map: 63 -> 15 -> 7 -> 7 -> 3 -> 3 -> 1.
    min_input_size = 63

    def __init__(self, config: AlexNetConfig):
        super().__init__()
        self.config = config
        self.features = nn.Sequential(                                    # at 224x224:
            Conv2d(config.in_channels, 64, 11, stride=4, padding=2),     # (B, 64, 55, 55)
            nn.ReLU(inplace=True),
            MaxPool2d(3, stride=2),                                       # (B, 64, 27, 27)
            Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True),         # (B, 192, 27, 27)
            MaxPool2d(3, stride=2),                                       # (B, 192, 13, 13)
            Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),        # (B, 384, 13, 13)
            Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),        # (B, 256, 13, 13)
            Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),        # (B, 256, 13, 13)
            MaxPool2d(3, stride=2),                                       # (B, 256, 6, 6)
        )
        self.avgpool = AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(config.dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(config.dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, config.num_classes),
        )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(features).flatten(1))  # (B, 9216) -> (B, num_classes)


@register_model("alexnet", family="cnn", description="AlexNet (Krizhevsky et al. 2012), torchvision layout")
def alexnet(**config) -> AlexNet:
    return AlexNet(build_config(AlexNetConfig, {}, config))
