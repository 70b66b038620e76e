"""Building blocks, each written from its equation.

Every block with a fused PyTorch kernel keeps a readable reference path beside it; both compute the
same function and a test proves it. Switch one block with ``block.impl = "reference"`` or a whole
model with ``archlab.nn.set_impl(model, "reference")``. The default is ``"fused"``.
"""

from archlab.nn.twopath import IMPLS, TwoPath, set_impl

__all__ = ["IMPLS", "TwoPath", "set_impl"]

# Convolutional blocks (archlab.nn.conv, archlab.nn.batchnorm)
from archlab.nn.conv import (  # noqa: E402
    AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, Conv1d, Conv2d, MaxPool2d,
)
from archlab.nn.batchnorm import BatchNorm1d, BatchNorm2d  # noqa: E402

__all__ += [
    "Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
    "BatchNorm1d", "BatchNorm2d",
]

# Blocks of the famous CNNs (archlab.nn.conv_blocks)
from archlab.nn.conv_blocks import (  # noqa: E402
    BasicBlock, Bottleneck, ConvNormAct, Inception, MBConv, SqueezeExcitation, StochasticDepth, ZeroPadShortcut,
    make_divisible,
)

__all__ += [
    "ConvNormAct", "BasicBlock", "Bottleneck", "ZeroPadShortcut", "Inception", "SqueezeExcitation",
    "StochasticDepth", "MBConv", "make_divisible",
]
