"""GoogLeNet / Inception v1 (Szegedy et al. 2014, "Going Deeper with Convolutions").

An Inception module looks at the same input at several scales at once and concatenates the
answers along the channel axis:

    y = concat[ 1x1(x),  3x3(1x1_reduce(x)),  5x5(1x1_reduce(x)),  1x1_proj(maxpool_3x3(x)) ]

The 1x1 "reduce" convolutions cut the channels before the costly 3x3 / 5x5 filters, which keeps a
22-layer network at ~6.6M parameters (AlexNet: 61M). Nine modules (Table 1 of the paper, below as
a table) are stacked between max-pools; two auxiliary classifiers on the outputs of 4a and 4d add
``0.3 * their losses`` during training to push gradient into the middle of the network.

Layout, names and shapes are torchvision's (its weights load with ``strict=True``): every conv is
``conv -> BN(eps 1e-3) -> ReLU`` (``BasicConv2d``), and the "5x5" branch uses a 3x3 kernel
(``ch5x5_kernel_size=3``; set 5 for the paper's filter). Without auxiliary heads (the default,
as torchvision's published weights): 6,624,904 parameters; with them: 13,004,888.

Shapes: ``(B, 3, 224, 224)`` -> ``forward_features`` ``(B, 1024, 7, 7)`` -> ``(B, num_classes)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import check
from archlab.checkpoint import PretrainedMixin
from archlab.models.interfaces import ImageClassifier
from archlab.nn import AdaptiveAvgPool2d, MaxPool2d
from archlab.nn.conv_blocks import Inception, inception_conv
from archlab.registry import build_config, register_model

# Table 1: name -> (in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); "maxpool" between groups.
INCEPTION_V1 = (
    ("inception3a", (192, 64, 96, 128, 16, 32, 32)),
    ("inception3b", (256, 128, 128, 192, 32, 96, 64)),
    ("maxpool3", (3, 2)),
    ("inception4a", (480, 192, 96, 208, 16, 48, 64)),
    ("inception4b", (512, 160, 112, 224, 24, 64, 64)),
    ("inception4c", (512, 128, 128, 256, 24, 64, 64)),
    ("inception4d", (512, 112, 144, 288, 32, 64, 64)),
    ("inception4e", (528, 256, 160, 320, 32, 128, 128)),
    ("maxpool4", (2, 2)),
    ("inception5a", (832, 256, 160, 320, 32, 128, 128)),
    ("inception5b", (832, 384, 192, 384, 48, 128, 128)),
)
AUX_TAPS = {"inception4a": "aux1", "inception4d": "aux2"}  # auxiliary heads read these outputs


class GoogLeNetOutputs(NamedTuple):
    logits: torch.Tensor
    aux_logits2: torch.Tensor
    aux_logits1: torch.Tensor


@dataclass
class GoogLeNetConfig:
    num_classes: int = 1000
    in_channels: int = 3
    aux_logits: bool = False          # build the two auxiliary classifiers (used by forward_train)
    ch5x5_kernel_size: int = 3        # torchvision's layout; the paper's is 5
    dropout: float = 0.2              # before the final dense layer (paper: 0.4)
    dropout_aux: float = 0.7
    transform_input: bool = False     # map ImageNet-normalised input to the original GoogLeNet scaling
    image_size: int = 224

    def __post_init__(self):
        check(self.num_classes > 0, f"num_classes must be positive, got {self.num_classes}")
        check(self.in_channels > 0, f"in_channels must be positive, got {self.in_channels}")
        check(self.ch5x5_kernel_size in (3, 5), f"ch5x5_kernel_size must be 3 or 5, got {self.ch5x5_kernel_size}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        check(0.0 <= self.dropout_aux < 1.0, f"dropout_aux must be in [0, 1), got {self.dropout_aux}")
        check(not (self.transform_input and self.in_channels != 3),
              f"transform_input needs in_channels=3 (RGB), got in_channels={self.in_channels}")


class InceptionAux(nn.Module):
    """Auxiliary classifier: 4x4 average pool -> 1x1 conv (128) -> FC 1024 -> ReLU -> dropout -> FC."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.avgpool = AdaptiveAvgPool2d((4, 4))
        self.conv = inception_conv(in_channels, 128)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(self.avgpool(x)).flatten(1)  # (B, 128 * 4 * 4)
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class GoogLeNet(ImageClassifier, PretrainedMixin, nn.Module):
    config_class = GoogLeNetConfig
    head_name = "fc"
    min_input_size = 32  # the total downsampling (the ceil-mode max-pools fail below 15 px)

    def __init__(self, config: GoogLeNetConfig):
        super().__init__()
        self.config = c = config
        self.conv1 = inception_conv(c.in_channels, 64, 7, stride=2, padding=3)
        self.maxpool1 = MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = inception_conv(64, 64, 1)
        self.conv3 = inception_conv(64, 192, 3, padding=1)
        self.maxpool2 = MaxPool2d(3, stride=2, ceil_mode=True)
        for name, spec in INCEPTION_V1:
            if name.startswith("maxpool"):
                setattr(self, name, MaxPool2d(spec[0], stride=spec[1], ceil_mode=True))
            else:
                setattr(self, name, Inception(*spec, ch5x5_kernel_size=c.ch5x5_kernel_size))
        self._stage_names = [name for name, _ in INCEPTION_V1]
        if c.aux_logits:
            self.aux1 = InceptionAux(512, c.num_classes, c.dropout_aux)
            self.aux2 = InceptionAux(528, c.num_classes, c.dropout_aux)
        else:
            self.aux1 = self.aux2 = None
        self.num_features = 1024
        self.avgpool = AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(c.dropout)
        self.fc = nn.Linear(1024, c.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _transform_input(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet mean/std normalisation -> the (x - 0.5) / 0.5 scaling the original weights expect."""
        mean = torch.tensor([0.485, 0.456, 0.406], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * std + mean - 0.5) / 0.5

    def _features_and_aux(self, x: torch.Tensor, with_aux: bool):
        if self.config.transform_input:
            x = self._transform_input(x)
        x = self.maxpool1(self.conv1(x))  # (B, 64, H/4, W/4)
        x = self.maxpool2(self.conv3(self.conv2(x)))  # (B, 192, H/8, W/8)
        aux = {}
        for name in self._stage_names:
            x = getattr(self, name)(x)
            if with_aux and name in AUX_TAPS:
                aux[AUX_TAPS[name]] = getattr(self, AUX_TAPS[name])(x)
        return x, aux  # x: (B, 1024, H/32, W/32)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._features_and_aux(x, with_aux=False)[0]

    def forward_head(self, feature_map: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(feature_map).flatten(1)  # (B, 1024)
        return self.fc(self.dropout(x))

    def reset_classifier(self, num_classes: int) -> None:
        """A new final layer, and new last layers of the auxiliary heads when there are any."""
        super().reset_classifier(num_classes)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                old = aux.fc2
                aux.fc2 = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)

    def forward_train(self, x: torch.Tensor) -> GoogLeNetOutputs:
        """Logits and both auxiliary logits (needs ``aux_logits=True``); the paper's loss is
        ``CE(logits) + 0.3 * (CE(aux_logits1) + CE(aux_logits2))``."""
        check(self.aux1 is not None, "forward_train needs the auxiliary heads: build with aux_logits=True, got False")
        self.check_input(x)
        x, aux = self._features_and_aux(x, with_aux=True)
        return GoogLeNetOutputs(self.forward_head(x), aux["aux2"], aux["aux1"])


@register_model("googlenet", family="cnn", description="GoogLeNet / Inception v1 (Szegedy et al. 2014), torchvision layout")
def googlenet(**config) -> GoogLeNet:
    return GoogLeNet(build_config(GoogLeNetConfig, {}, config))
