"""Building blocks, each written from its equation.

Every block with a fused PyTorch kernel keeps a readable reference path beside it; both compute the
same function and a test proves it. Switch one block with ``block.impl = "reference"`` or a whole
model with ``archlab.nn.set_impl(model, "reference")``. The default is ``"fused"``.
"""

from archlab.nn.twopath import IMPLS, TwoPath, set_impl

__all__ = ["IMPLS", "TwoPath", "set_impl"]

from archlab.nn.seq_attention import AdditiveAttention, MultiplicativeAttention, SeqAttention  # noqa: E402

__all__ += ["AdditiveAttention", "MultiplicativeAttention", "SeqAttention"]
