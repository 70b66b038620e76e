"""Building blocks, each written from its equation.

Every block with a fused PyTorch kernel keeps a readable reference path beside it; both compute the
same function and a test proves it. Switch one block with ``block.impl = "reference"`` or a whole
model with ``archlab.nn.set_impl(model, "reference")``. The default is ``"fused"``.
"""

from archlab.nn.twopath import IMPLS, TwoPath, set_impl

__all__ = ["IMPLS", "TwoPath", "set_impl"]

# Recurrent blocks
from archlab.nn.bptt import (  # noqa: E402
    StepRecord, clip_grad_norm_, detach_state, hidden_grad_norms, record_steps, time_chunks,
    truncated_bptt,
)
from archlab.nn.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, pack_padded  # noqa: E402

__all__ += ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "StepRecord", "record_steps",
            "hidden_grad_norms", "pack_padded", "detach_state", "time_chunks", "truncated_bptt",
            "clip_grad_norm_"]

# Attention for recurrent encoder-decoders
from archlab.nn.seq_attention import AdditiveAttention, MultiplicativeAttention, SeqAttention  # noqa: E402

__all__ += ["AdditiveAttention", "MultiplicativeAttention", "SeqAttention"]
