"""Building blocks, each written from its equation.

Every block with a fused PyTorch kernel keeps a readable reference path beside it; both compute the
same function and a test proves it. Switch one block with ``block.impl = "reference"`` or a whole
model with ``archlab.nn.set_impl(model, "reference")``. The default is ``"fused"``.
"""

from archlab.nn.twopath import IMPLS, TwoPath, set_impl

__all__ = ["IMPLS", "TwoPath", "set_impl"]

# Transformer blocks
from archlab.nn.attention import (  # noqa: E402
    KVCache, MultiHeadAttention, PackedTokens, causal_mask, scaled_dot_product_attention,
)
from archlab.nn.feedforward import FeedForward  # noqa: E402
from archlab.nn.norm import LayerNorm  # noqa: E402
from archlab.nn.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding  # noqa: E402
from archlab.nn.transformer import (  # noqa: E402
    Transformer, TransformerDecoder, TransformerDecoderLayer, TransformerEncoder, TransformerEncoderLayer,
)

__all__ += [
    "KVCache", "MultiHeadAttention", "PackedTokens", "causal_mask", "scaled_dot_product_attention", "FeedForward",
    "LayerNorm",
    "LearnedPositionalEmbedding", "SinusoidalPositionalEncoding", "Transformer", "TransformerDecoder",
    "TransformerDecoderLayer", "TransformerEncoder", "TransformerEncoderLayer",
]

# Convolutional blocks (archlab.nn.conv, archlab.nn.batchnorm)
from archlab.nn.conv import (  # noqa: E402
    AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, Conv1d, Conv2d, MaxPool2d,
)
from archlab.nn.batchnorm import BatchNorm1d, BatchNorm2d  # noqa: E402

__all__ += [
    "Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
    "BatchNorm1d", "BatchNorm2d",
]

# Recurrent blocks
from archlab.nn.bptt import (  # noqa: E402
    StepRecord, clip_grad_norm_, detach_state, hidden_grad_norms, record_steps, time_chunks,
    truncated_bptt,
)
from archlab.nn.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, pack_padded  # noqa: E402

__all__ += ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "StepRecord", "record_steps",
            "hidden_grad_norms", "pack_padded", "detach_state", "time_chunks", "truncated_bptt",
            "clip_grad_norm_"]

# Blocks of the famous CNNs (archlab.nn.conv_blocks)
from archlab.nn.conv_blocks import (  # noqa: E402
    BasicBlock, Bottleneck, ConvNormAct, Inception, MBConv, SqueezeExcitation, StochasticDepth, ZeroPadShortcut,
    make_divisible,
)

__all__ += [
    "ConvNormAct", "BasicBlock", "Bottleneck", "ZeroPadShortcut", "Inception", "SqueezeExcitation",
    "StochasticDepth", "MBConv", "make_divisible",
]

# Attention for recurrent encoder-decoders
from archlab.nn.seq_attention import AdditiveAttention, MultiplicativeAttention, SeqAttention  # noqa: E402

__all__ += ["AdditiveAttention", "MultiplicativeAttention", "SeqAttention"]
