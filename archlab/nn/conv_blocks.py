"""The blocks of the famous deep CNNs: conv-norm-activation, residual blocks, Inception, MBConv.

Each block is written from its paper's equation; the layers inside (convolution, batch norm,
pooling) are archlab's two-path drop-ins, so ``archlab.nn.set_impl(model, "reference")`` turns a
whole network into readable reference code. Child names follow torchvision, so its weight files
load unchanged.

    ConvNormAct      y = act(BN(W * x))                                    the unit of every CNN here
    BasicBlock       y = ReLU(F(x) + shortcut(x)),  F = BN(W_2 * ReLU(BN(W_1 * x)))
                                                    (He et al. 2015, "Deep Residual Learning")
    Bottleneck       F = BN(W_3 * ReLU(BN(W_2 * ReLU(BN(W_1 * x)))))  1x1 reduce, 3x3, 1x1 expand
    Inception        y = concat[1x1(x), 3x3(1x1(x)), 5x5(1x1(x)), 1x1(maxpool(x))] along channels
                                                    (Szegedy et al. 2014, "Going Deeper with Convolutions")
    SqueezeExcitation  s = sigmoid(W_2 act(W_1 mean_hw(x))),  y = s * x   (Hu et al. 2018)
    StochasticDepth  y = x * b / (1 - p),  b ~ Bernoulli(1 - p) per example, in training only
                                                    (Huang et al. 2016, "Deep Networks with Stochastic Depth")
    MBConv           y = x + drop(project(SE(depthwise(expand(x)))))   (Sandler et al. 2018; Tan & Le 2019)

The shortcut of a residual block is the identity when shapes agree; where they do not (stride 2 or
more channels) it is either a projection ``BN(W_s * x)`` (option B, ImageNet ResNets) or
parameter-free subsampling plus zero channels (option A, the CIFAR ResNets). With
``residual=False`` the block is its "plain" twin ``y = ReLU(F(x))``: the same layers, no skip.

Tensor shapes: ``(B, C, H, W)``: batch, channels (feature maps), height, width.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import check
from archlab.nn.activations import ACTIVATIONS, check_activation
from archlab.nn.batchnorm import BatchNorm2d
from archlab.nn.checks import check_sizes
from archlab.nn.conv import AdaptiveAvgPool2d, Conv2d, MaxPool2d

SHORTCUTS = ("projection", "zero_pad")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to the nearest multiple of ``divisor``, never going down by more than 10%.

    The rounding of MobileNet / EfficientNet (and torchvision's ``_make_divisible``).
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _activation(name: str | None) -> nn.Module | None:
    if name is None:
        return None
    check_activation(name, " or None")
    return ACTIVATIONS[name]()


class ConvNormAct(nn.Sequential):
    """``y = act(BN(W * x))``: a bias-free convolution, batch norm, then an activation (or none).

    ``padding=None`` keeps the size for stride 1 ("same": ``dilation * (kernel_size - 1) // 2``).
    ``names`` are the three children's names: torchvision's ``Conv2dNormActivation`` uses
    ``("0", "1", "2")`` (EfficientNet), its Inception ``BasicConv2d`` ``("conv", "bn", "relu")``.
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
        activation: str | None = "relu",
        norm_eps: float = 1e-5,
        norm_momentum: float = 0.1,
        names: tuple[str, str, str] = ("0", "1", "2"),
    ):
        if padding is None:
            padding = dilation * (kernel_size - 1) // 2
        conv = Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                      dilation=dilation, groups=groups, bias=False)
        norm = BatchNorm2d(out_channels, eps=norm_eps, momentum=norm_momentum)
        layers = [(names[0], conv), (names[1], norm)]
        act = _activation(activation)
        if act is not None:
            layers.append((names[2], act))
        super().__init__(OrderedDict(layers))
        self.in_channels, self.out_channels = in_channels, out_channels


def inception_conv(in_channels: int, out_channels: int, kernel_size: int = 1, **kw) -> ConvNormAct:
    """Inception's conv unit (torchvision's ``BasicConv2d``): conv without bias, BN with eps 1e-3, ReLU."""
    return ConvNormAct(in_channels, out_channels, kernel_size, norm_eps=1e-3, names=("conv", "bn", "relu"), **kw)


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: ``x[:, :, ::s, ::s]`` with zero feature maps appended; no parameters."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        check(out_channels >= in_channels,
              f"zero_pad shortcut needs out_channels >= in_channels, got {out_channels} < {in_channels}")
        self.extra_channels, self.stride = out_channels - in_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C_in, ceil(H/s), ceil(W/s))
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # (B, C_out, H', W'): zeros appended


def _shortcut(in_channels: int, out_channels: int, stride: int, kind: str) -> nn.Module | None:
    """``None`` (identity) when shapes agree, else option B (projection) or option A (zero_pad)."""
    check(kind in SHORTCUTS, f"shortcut must be one of {SHORTCUTS}, got {kind!r}")
    if stride == 1 and in_channels == out_channels:
        return None
    if kind == "projection":
        return ConvNormAct(in_channels, out_channels, kernel_size=1, stride=stride, activation=None)
    return ZeroPadShortcut(in_channels, out_channels, stride)


class _Residual(nn.Module):
    """Shared forward of the residual blocks: ``y = ReLU(F(x) + shortcut(x))``, or ``ReLU(F(x))`` if plain."""

    expansion = 1

    def _init_shortcut(self, in_channels, out_channels, stride, shortcut, residual):
        self.residual = residual
        # The plain twin has no skip, hence no projection either: only the layers of F.
        self.downsample = _shortcut(in_channels, out_channels, stride, shortcut) if residual else None
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.residual_function(x)
        if self.residual:
            f = f + (x if self.downsample is None else self.downsample(x))
        return self.relu(f)


class BasicBlock(_Residual):
    """Two 3x3 convolutions: ``F(x) = BN(W_2 * ReLU(BN(W_1 * x)))``; ``y = ReLU(F(x) + shortcut(x))``.

    ``channels`` is the block's width and output width (``expansion = 1``); ``stride`` 2 on the first
    convolution halves the feature map.
    """

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1, shortcut: str = "projection",
                 residual: bool = True):
        super().__init__()
        self.conv1 = Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = BatchNorm2d(channels)
        self.conv2 = Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = BatchNorm2d(channels)
        self._init_shortcut(in_channels, channels, stride, shortcut, residual)

    def residual_function(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(h))


class Bottleneck(_Residual):
    """1x1 reduce, 3x3, 1x1 expand: ``F(x) = BN(W_3 * ReLU(BN(W_2 * ReLU(BN(W_1 * x)))))``.

    ``channels`` is the width of the 3x3 convolution; the output has ``4 * channels``. The stride
    sits on the 3x3 convolution (torchvision's "ResNet v1.5"; the paper put it on the first 1x1).
    """

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1, shortcut: str = "projection",
                 residual: bool = True):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = BatchNorm2d(channels)
        self.conv2 = Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = BatchNorm2d(channels)
        self.conv3 = Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = BatchNorm2d(out_channels)
        self._init_shortcut(in_channels, out_channels, stride, shortcut, residual)

    def residual_function(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.bn1(self.conv1(x)))
        h = self.relu(self.bn2(self.conv2(h)))
        return self.bn3(self.conv3(h))


class Inception(nn.Module):
    """Four parallel branches over the same input, concatenated along channels (multi-scale):

        y = concat[ 1x1(x),  3x3(1x1_reduce(x)),  5x5(1x1_reduce(x)),  1x1_proj(maxpool_3x3(x)) ]

    The 1x1 "reduce" convolutions shrink the channels before the expensive 3x3 / 5x5 ones.
    ``ch5x5_kernel_size`` is 5 in the paper; torchvision's GoogLeNet (and its weights) uses 3.
    Output channels: ``ch1x1 + ch3x3 + ch5x5 + pool_proj``.
    """

    def __init__(self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int,
                 pool_proj: int, ch5x5_kernel_size: int = 5):
        super().__init__()
        self.branch1 = inception_conv(in_channels, ch1x1)
        self.branch2 = nn.Sequential(inception_conv(in_channels, ch3x3red), inception_conv(ch3x3red, ch3x3, 3))
        self.branch3 = nn.Sequential(inception_conv(in_channels, ch5x5red),
                                     inception_conv(ch5x5red, ch5x5, ch5x5_kernel_size))
        self.branch4 = nn.Sequential(MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                     inception_conv(in_channels, pool_proj))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return torch.cat(branches, dim=1)  # (B, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)


class SqueezeExcitation(nn.Module):
    """Channel attention: squeeze each feature map to its mean, excite with a two-layer gate, rescale.

        z = mean_{h,w} x            (B, C, 1, 1)      squeeze
        s = sigmoid(W_2 act(W_1 z)) (B, C, 1, 1)      excitation, W_1: C -> squeeze_channels
        y = s * x                   (B, C, H, W)      each feature map scaled by its gate
    """

    def __init__(self, in_channels: int, squeeze_channels: int, activation: str = "silu"):
        super().__init__()
        check_sizes("SqueezeExcitation", in_channels=in_channels, squeeze_channels=squeeze_channels)
        self.avgpool = AdaptiveAvgPool2d(1)
        self.fc1 = Conv2d(in_channels, squeeze_channels, 1)  # W_1 (1x1 conv = dense layer on channels)
        self.fc2 = Conv2d(squeeze_channels, in_channels, 1)  # W_2
        self.activation = _activation(activation)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.avgpool(x)  # (B, C, 1, 1)
        s = self.scale_activation(self.fc2(self.activation(self.fc1(z))))
        return s * x


class StochasticDepth(nn.Module):
    """Drop a residual branch for a whole example with probability ``p`` during training.

        y = x * b / (1 - p),   b ~ Bernoulli(1 - p), one draw per example ("row" mode)

    The 1/(1 - p) keeps the expectation, so evaluation uses the branch unchanged (y = x).
    """

    def __init__(self, p: float):
        super().__init__()
        check(isinstance(p, (int, float)) and 0.0 <= p < 1.0, f"stochastic depth p must be in [0, 1), got {p!r}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)  # (B, 1, 1, 1): one draw per example
        b = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(keep)
        return x * b / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-and-excitation (MobileNetV2 / EfficientNet):

        h = SiLU(BN(W_expand * x))              1x1, C_in -> C_in * expand_ratio   (skipped if ratio 1)
        h = SiLU(BN(W_depthwise * h))           k x k, one filter per channel (groups = channels), stride
        h = SE(h)                               squeeze channels = max(1, C_in // 4)
        h = BN(W_project * h)                   1x1, linear bottleneck: no activation
        y = x + StochasticDepth(h)              only when stride 1 and C_in == C_out; else y = h

    Children (``block.0..3``, ``stochastic_depth``) as torchvision's ``MBConv``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: float,
                 stochastic_depth_prob: float = 0.0, norm_eps: float = 1e-5, norm_momentum: float = 0.1):
        super().__init__()
        check(stride in (1, 2), f"MBConv stride must be 1 or 2, got {stride}")
        norm = dict(norm_eps=norm_eps, norm_momentum=norm_momentum)
        expanded = make_divisible(in_channels * expand_ratio, 8)
        layers = []
        if expanded != in_channels:
            layers.append(ConvNormAct(in_channels, expanded, 1, activation="silu", **norm))
        layers += [
            ConvNormAct(expanded, expanded, kernel_size, stride=stride, groups=expanded, activation="silu", **norm),
            SqueezeExcitation(expanded, max(1, in_channels // 4), activation="silu"),
            ConvNormAct(expanded, out_channels, 1, activation=None, **norm),
        ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(x)
        if self.use_res_connect:
            h = x + self.stochastic_depth(h)
        return h
