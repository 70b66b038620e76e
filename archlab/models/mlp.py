"""Multi-layer perceptron: the dense baseline every architecture is measured against.

    h_0 = flatten(x)
    h_l = dropout(ReLU(W_l h_{l-1} + b_l))      l = 1..L
    y   = W_out h_L + b_out

With ``batch_norm`` each hidden layer normalises its pre-activations over the batch before the
ReLU (Ioffe & Szegedy 2015): h_l = dropout(ReLU(BN(W_l h_{l-1} + b_l))).

It has no notion of neighbourhood (images) or order (sequences): whatever structure the data has,
it must learn from scratch, with a weight for every input position. As an image classifier it
reads the flattened image (``in_features = C * H * W``); ``forward_features`` is h_L, the head W_out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from archlab.checkpoint import PretrainedMixin
from archlab.errors import check
from archlab.models.interfaces import ImageClassifier, example_floats
from archlab.nn import BatchNorm1d
from archlab.nn.checks import check_input
from archlab.registry import build_config, register_model


@dataclass
class MLPConfig:
    in_features: int = 784          # flattened input size (28x28 digits by default)
    num_classes: int = 10           # outputs
    hidden: tuple[int, ...] = (256, 128)
    dropout: float = 0.1
    batch_norm: bool = False        # BatchNorm1d after each hidden Linear, before the ReLU

    def __post_init__(self):
        check(self.in_features > 0, f"in_features must be positive, got {self.in_features}")
        check(self.num_classes > 0, f"num_classes must be positive, got {self.num_classes}")
        check(all(h > 0 for h in self.hidden), f"hidden sizes must be positive, got {self.hidden}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


class MLP(ImageClassifier, PretrainedMixin, nn.Module):
    config_class = MLPConfig
    head_name = "head"

    @classmethod
    def image_classifier_fields(cls, data, config):
        return {"in_features": data.channels * data.height * data.width, "num_classes": data.num_classes}

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        layers, width = [], config.in_features
        for h in config.hidden:
            layers += [nn.Linear(width, h), *([BatchNorm1d(h)] if config.batch_norm else []), nn.ReLU(),
                       nn.Dropout(config.dropout)]
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, config.num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, "MLP", self.head.weight)
        x = x.flatten(1)  # (B, in_features)
        check(
            x.shape[1] == self.config.in_features,
            f"MLP expects {self.config.in_features} input features per example, got {x.shape[1]} "
            f"(input shape {tuple(x.shape)})",
        )
        return self.features(x)

    def forward_head(self, h: torch.Tensor) -> torch.Tensor:
        return self.head(h)

    def check_input(self, x: torch.Tensor) -> None:
        """Any shape whose trailing dimensions hold in_features values: ``forward_features`` checks it."""

    def example_input(self, batch_size: int = 1, seq_len: int | None = None) -> tuple[torch.Tensor, ...]:
        check(seq_len is None, "--seq-len is for sequence models; this model reads feature vectors: give --input-size B,F")
        return (example_floats((batch_size, self.config.in_features)),)


@register_model("mlp", family="mlp", description="Dense baseline: flatten -> [Linear, (BatchNorm), ReLU, Dropout] x L -> Linear")
def mlp(**config) -> MLP:
    return MLP(build_config(MLPConfig, {}, config))


