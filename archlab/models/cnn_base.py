"""What the CNN classifiers share besides their interface (``archlab.models.interfaces.ImageClassifier``).

``init_cnn_weights`` is torchvision's initialisation of VGG/ResNet-style nets; ``load_pretrained``
loads a torchvision-style state_dict with a new head (other number of classes) or a different
number of input channels, into any image classifier.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
import torch.nn as nn

from archlab.errors import CheckpointError

__all__ = ["init_cnn_weights", "load_pretrained", "adapt_input_conv", "LoadReport"]


def init_cnn_weights(model: nn.Module, *, linear_std: float | None = 0.01) -> None:
    """torchvision's initialisation of VGG/ResNet-style nets (He et al. 2015 for the convs).

    Conv weights ~ N(0, 2 / fan_out) (kaiming normal, ReLU gain), conv biases 0; batch norm
    gamma = 1, beta = 0; linear weights ~ N(0, linear_std^2) and biases 0 (``linear_std=None``
    leaves PyTorch's default linear init).
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear_std is not None:
            nn.init.normal_(m.weight, 0.0, linear_std)
            nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------------------------
# Loading pretrained weights with a new head or another number of input channels
# ---------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    """What ``load_pretrained`` did besides a plain strict load."""

    new_head: list[str] = field(default_factory=list)  # head tensors kept at their fresh init
    adapted_input: str | None = None  # first conv weight adapted to the model's in_channels
    missing: list[str] = field(default_factory=list)  # only when strict=False
    unexpected: list[str] = field(default_factory=list)  # only when strict=False


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """First-conv filters (O, C_src, kh, kw) -> (O, in_channels, kh, kw).

    - ``in_channels == 1``: the RGB filters are **summed**. Exact: a grey image ``g`` gives the same
      feature map as the RGB image ``(g, g, g)`` gave the original model.
    - otherwise the source filters are repeated cyclically (channel ``c`` takes source channel
      ``c % C_src``) and scaled by ``C_src / in_channels`` (an **average** over the copies), so the
      response to an image whose channels are all equal is kept when ``in_channels`` is a
      multiple of ``C_src`` and stays of the same magnitude otherwise.
    """
    src = weight.shape[1]
    w = weight.float()
    if in_channels == 1:
        new = w.sum(dim=1, keepdim=True)  # (O, 1, kh, kw)
    else:
        index = torch.arange(in_channels, device=weight.device) % src
        new = w[:, index] * (src / in_channels)  # (O, in_channels, kh, kw)
    return new.to(weight.dtype)


def load_pretrained(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, strict: bool = True
) -> LoadReport:
    """Load a torchvision-style ``state_dict`` into ``model``, allowing a new head or new input channels.

    - **New head**: when the final linear layer's tensors (``model.classifier_name()``) differ in
      shape from the checkpoint's (other ``num_classes``), they are skipped and keep the model's
      fresh initialisation. Everything else loads strictly.
    - **Other input channels**: when the first conv's weight differs only in its input-channel
      dimension, it is adapted with ``adapt_input_conv`` (summed into 1 channel, or repeated and
      averaged into more).
    - A ``module.`` prefix (a state_dict saved from DistributedDataParallel) is removed.

    Any other shape mismatch raises ``CheckpointError``; so do missing or unexpected keys when
    ``strict`` (with ``strict=False`` they are reported in the returned ``LoadReport``).
    """
    state = dict(state_dict)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    own = model.state_dict()
    report = LoadReport()

    head = model.classifier_name() if hasattr(model, "classifier_name") else None
    for key in (f"{head}.weight", f"{head}.bias") if head else ():
        if key in state and key in own and state[key].shape != own[key].shape:
            state[key] = own[key]  # a new head: keep the model's own initialisation
            report.new_head.append(key)

    first_conv = next((name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    key = f"{first_conv}.weight"
    if first_conv is not None and key in state and key in own:
        src, dst = state[key].shape, own[key].shape
        if src != dst and src[:1] + src[2:] == dst[:1] + dst[2:]:
            state[key] = adapt_input_conv(state[key], dst[1])
            report.adapted_input = key

    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items() if k in own and v.shape != own[k].shape
    ]
    if mismatched:
        raise CheckpointError(f"state_dict does not fit {type(model).__name__}: " + "; ".join(mismatched))
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"state_dict does not fit {type(model).__name__}: missing keys {missing}, unexpected keys {unexpected}"
        )
    model.load_state_dict(state, strict=False)
    report.missing, report.unexpected = missing, unexpected
    return report
