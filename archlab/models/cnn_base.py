"""What every image classifier shares, written once.

A CNN classifier is two halves (timm's interface)::

    features = forward_features(x)      # the last feature map, (B, C, h, w)
    logits   = forward_head(features)   # pool, flatten, dense layers -> (B, num_classes)
    forward(x) = forward_head(forward_features(x))

``ImageClassifier`` gives every model that shape, an input check that names the model, the
expected and the given shape, and ``reset_classifier(num_classes)`` whatever the head's attribute
path. ``load_pretrained`` loads a torchvision-style state_dict with a new head (other number of
classes) or a different number of input channels. ``ConvNormAct`` and ``init_cnn_weights`` are the
small pieces most architectures repeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
import torch.nn as nn

from archlab.checkpoint import PretrainedMixin
from archlab.errors import CheckpointError, check
from archlab.nn import BatchNorm2d, Conv2d

__all__ = ["ImageClassifier", "ConvNormAct", "init_cnn_weights", "load_pretrained", "adapt_input_conv", "LoadReport"]


class ImageClassifier(PretrainedMixin, nn.Module):
    """Base of the image classifiers: ``forward(x) = forward_head(forward_features(x))``.

    Subclasses set ``self.config`` (a dataclass with ``in_channels`` and ``num_classes``) and
    implement ``forward_features`` and ``forward_head``. Class (or instance) attributes describe the
    inputs the architecture accepts:

    - ``input_size``: the one spatial size it needs (LeNet-5's dense C5), or None;
    - ``min_input_size``: the smallest size whose feature map survives every downsampling;
    - ``head_name``: dotted path of the final linear layer; None finds the last ``nn.Linear``.
    """

    input_size: int | None = None
    min_input_size: int = 1
    head_name: str | None = None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    @property
    def display_name(self) -> str:
        return self.model_name or type(self).__name__

    def check_input(self, x: torch.Tensor) -> None:
        """ConfigError naming the model, the expected and the given shape, for an image it cannot take."""
        c = self.config.in_channels
        if self.input_size is not None:
            expected = f"(B, {c}, {self.input_size}, {self.input_size})"
        else:
            expected = f"(B, {c}, H, W) with H, W >= {self.min_input_size}"
        ok = x.dim() == 4 and x.shape[1] == c
        if ok and self.input_size is not None:
            ok = tuple(x.shape[2:]) == (self.input_size, self.input_size)
        elif ok:
            ok = min(x.shape[2:]) >= self.min_input_size
        check(ok, f"{self.display_name} expects input of shape {expected}, got {tuple(x.shape)}")

    # -- the classifier head ------------------------------------------------------------------

    def classifier_name(self) -> str:
        """Dotted path of the final linear layer."""
        if self.head_name is not None:
            return self.head_name
        linears = [name for name, m in self.named_modules() if isinstance(m, nn.Linear)]
        check(bool(linears), f"{self.display_name} has no nn.Linear head; set head_name")
        return linears[-1]

    def get_classifier(self) -> nn.Linear:
        return self.get_submodule(self.classifier_name())

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer by a freshly initialised one with ``num_classes`` outputs."""
        check(
            isinstance(num_classes, int) and num_classes > 0,
            f"num_classes must be a positive integer, got {num_classes!r}",
        )
        name = self.classifier_name()
        old = self.get_submodule(name)
        parent_name, _, attr = name.rpartition(".")
        new = nn.Linear(
            old.in_features, num_classes, bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype
        )
        setattr(self.get_submodule(parent_name) if parent_name else self, attr, new)
        self.config.num_classes = num_classes


class ConvNormAct(nn.Sequential):
    """conv -> batch norm -> activation, the unit of most CNNs since 2015.

    As torchvision's ``Conv2dNormActivation``: children ``0`` (conv), ``1`` (norm), ``2``
    (activation), so its state_dict names match. ``padding=None`` keeps the size at stride 1
    ("same" padding for odd kernels); the conv has no bias when a norm follows (beta plays its part).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        dilation: int = 1,
        norm: bool = True,
        activation: Callable[[], nn.Module] | None = nn.ReLU,
        bias: bool | None = None,
    ):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Module] = [
            Conv2d(
                in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                groups=groups, bias=(not norm) if bias is None else bias,
            )
        ]
        if norm:
            layers.append(BatchNorm2d(out_channels))
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)
        self.out_channels = out_channels


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
