"""Scaled dot-product attention and multi-head attention (Vaswani et al. 2017, "Attention Is All You Need").

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V

    head_i    = Attention(X_q W_q^i, X_kv W_k^i, X_kv W_v^i)
    MultiHead = Concat(head_1, ..., head_h) W_o

Three flavours share this code: self-attention (queries, keys and values from the same sequence),
masked (causal) self-attention (a position never sees the future: scores above the diagonal are
set to -inf before the softmax), and encoder-decoder cross-attention (queries from the decoder,
keys and values from the encoder output, the ``context``).

Dimension letters: B batch, T query length, S key/value length, E embed_dim, nh heads,
hs head size (E // nh).

Masks. Inside archlab a mask is boolean, ``True`` = may attend, broadcastable to (B, nh, T, S); a
float mask is added to the scores (0 keeps, -inf removes). ``MultiHeadAttention.forward`` mirrors
``torch.nn.MultiheadAttention``, whose boolean masks mean the opposite (``True`` = masked out); it
converts at that boundary only. A query row with nothing to attend to yields zeros, never NaN.

Looking inside: ``MultiHeadAttention.register_weights_hook(fn)`` calls ``fn(module, weights)`` with
the per-head weights (B, nh, T, S) of every call, whichever entry point (``forward`` or ``attend``)
made it. Only while a hook is set are the weights materialised (the reference path); the fused
kernel serves every other call.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from torch.utils.hooks import RemovableHandle

from archlab.errors import ConfigError, check
from archlab.nn import inference
from archlab.nn.checks import check_input, check_mask, check_module_type, check_sizes
from archlab.nn.twopath import IMPLS, TwoPath


# ------------------------------------------------------------------------------------------------
# Masks
# ------------------------------------------------------------------------------------------------

def causal_mask(T: int, S: int | None = None, *, device=None) -> torch.Tensor:
    """(T, S) boolean mask, True = may attend: query i sees keys j <= i + (S - T).

    With S == T this is the lower triangle. With S > T (a KV cache holding S - T earlier positions)
    the last query row sees every key: the triangle is aligned to the bottom-right corner.
    """
    S = T if S is None else S
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def _as_additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A boolean (True = may attend) or additive float mask as an additive float mask."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
    return mask.to(dtype)


def merge_masks(a: torch.Tensor | None, b: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Both masks together: AND of two boolean masks, otherwise the sum of their additive forms."""
    if a is None or b is None:
        return a if b is None else b
    if a.dtype == torch.bool and b.dtype == torch.bool:
        return a & b
    return _as_additive(a, dtype) + _as_additive(b, dtype)


def _dead_rows(mask: torch.Tensor) -> torch.Tensor:
    """(..., T, 1) True where a query row may attend to nothing."""
    if mask.dtype == torch.bool:
        return ~mask.any(dim=-1, keepdim=True)
    return torch.isneginf(mask).all(dim=-1, keepdim=True)


# ------------------------------------------------------------------------------------------------
# Scaled dot-product attention
# ------------------------------------------------------------------------------------------------

def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    need_weights: bool = False,
    impl: str = "fused",
    training: bool = True,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """softmax(Q K^T / sqrt(d_k) + M) V, returning ``(out, weights or None)``.

    q: (B, nh, T, hs); k, v: (B, nh, S, hs). ``mask``: boolean (True = may attend) or additive
    float, broadcastable to (B, nh, T, S). ``is_causal`` adds ``causal_mask(T, S)`` (bottom-right
    aligned, so it stays right with a KV cache). Dropout applies to the attention weights when
    ``training``. ``scale`` replaces 1 / sqrt(d_k) (T5 uses 1: its initialisation of W_q holds
    the factor).

    ``impl="reference"`` writes the equation out; ``"fused"`` calls
    ``torch.nn.functional.scaled_dot_product_attention``. A fused kernel never materialises the
    (T, S) weights, so when ``need_weights`` is True the weights are computed explicitly on the
    reference path, as ``torch.nn.MultiheadAttention`` also does. Returned weights are the ones
    multiplied with V (after dropout). Rows with nothing to attend to give zeros (and zero
    gradients), never NaN, on both paths.
    """
    if impl not in IMPLS:
        raise ConfigError(f"impl must be one of {IMPLS}, got {impl!r}")
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_input(t, "scaled_dot_product_attention", q, name=name)
    check(q.dim() == k.dim() == v.dim() and q.dim() >= 2 and q.size(-1) == k.size(-1) and k.shape[-2] == v.shape[-2],
          f"scaled_dot_product_attention: q (..., T, hs), k (..., S, hs) and v (..., S, hs_v) must agree, got "
          f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    check(isinstance(dropout_p, (int, float)) and 0.0 <= dropout_p < 1.0,
          f"scaled_dot_product_attention: dropout_p must be in [0, 1), got {dropout_p!r}")
    check_mask(mask, "mask")
    T, S = q.size(-2), k.size(-2)
    use_fused = impl == "fused" and not need_weights
    # The fused kernel knows the plain causal mask (S == T) without materialising it.
    kernel_causal = use_fused and is_causal and mask is None and T == S
    if is_causal and not kernel_causal:
        mask = merge_masks(mask, causal_mask(T, S, device=q.device), q.dtype)
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)  # an additive mask follows the scores' dtype (e.g. bf16 under autocast)
    dead = None
    if mask is not None:
        dead = _dead_rows(mask)  # (..., T, 1)
        if dead.device.type == "cpu" and not bool(dead.any()):
            dead = None  # nothing to guard: skip the two passes below (a free check on a CPU, a sync elsewhere)
        else:
            # Let dead rows attend everywhere (finite softmax, finite gradients); their output is zeroed below.
            mask = mask | dead if mask.dtype == torch.bool else mask.masked_fill(dead, 0.0)
    p = dropout_p if training else 0.0

    if use_fused and _products_are_faster(q, k, v, p):
        if kernel_causal:
            mask = causal_mask(T, S, device=q.device)
        out, weights = _attention_as_products(q, k, v, mask, scale), None
    elif use_fused:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=kernel_causal,
                                             scale=scale)
        weights = None
    else:
        scores = q @ k.transpose(-2, -1)  # (B, nh, T, S)
        scores = scores / math.sqrt(q.size(-1)) if scale is None else scores * scale
        if mask is not None:
            if mask.dtype == torch.bool:
                scores = scores.masked_fill(~mask, float("-inf"))
            else:
                scores = scores + mask
        weights = scores.softmax(dim=-1)
        if dead is not None:
            weights = weights.masked_fill(dead, 0.0)
        weights = F.dropout(weights, p=p, training=p > 0)
        out = weights @ v  # (B, nh, T, hs)
    if dead is not None:
        out = out.masked_fill(dead, 0.0)
    return out, (weights if need_weights else None)


# On a CPU, without gradients, torch's fused kernel (a blocked "flash" softmax) spends more on its
# tiling than it saves when there are few keys: short sequences -- sentences, G2P words, decoding
# one token at a time -- go faster as two batched matrix products with the (n, T, S) weights held.
# Measured with 12 heads of 32 (2 threads, batch 32): products 1.7x / 1.5x / 1.2x faster than the
# kernel at 16 / 64 / 128 keys in bf16, 0.65x at 256; in fp32 2.8x / 1.2x at 16 / 64, 0.34x at 128.
PRODUCTS_MAX_KEYS = {torch.bfloat16: 128, torch.float16: 128}  # other dtypes: PRODUCTS_MAX_KEYS_DEFAULT
PRODUCTS_MAX_KEYS_DEFAULT = 64
PRODUCTS_MAX_WEIGHTS = 1 << 24  # weights held per call, at most


def _products_are_faster(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float) -> bool:
    if q.device.type != "cpu" or dropout_p > 0 or q.dim() < 3:
        return False
    if not inference.no_gradient_wanted(q, k, v):
        return False  # training: the fused kernel's backward pass keeps no (T, S) weights
    S = k.size(-2)
    max_keys = PRODUCTS_MAX_KEYS.get(q.dtype, PRODUCTS_MAX_KEYS_DEFAULT)
    return S <= max_keys and q.numel() // q.size(-1) * S <= PRODUCTS_MAX_WEIGHTS


def _attention_as_products(q, k, v, mask, scale) -> torch.Tensor:
    """softmax(Q K^T * scale + M) V as ``baddbmm`` (scale and additive mask folded in) and ``bmm``."""
    *lead, T, hs = q.shape
    S, n = k.size(-2), math.prod(lead)
    q_, k_, v_ = q.reshape(n, T, hs), k.reshape(n, S, hs), v.reshape(n, S, v.size(-1))
    alpha = 1.0 / math.sqrt(hs) if scale is None else scale
    if mask is None:
        scores = torch.bmm(q_, k_.transpose(1, 2)).mul_(alpha)                        # (n, T, S)
    else:
        bias = _as_additive(mask, q.dtype).expand(*lead, T, S).reshape(n, T, S)
        scores = torch.baddbmm(bias, q_, k_.transpose(1, 2), alpha=alpha)             # (n, T, S)
    return torch.bmm(scores.softmax(dim=-1), v_).view(*lead, T, v.size(-1))          # (.., T, hs_v)


# ------------------------------------------------------------------------------------------------
# Key/value cache for incremental decoding
# ------------------------------------------------------------------------------------------------

class KVCache:
    """Keys and values of the positions already seen, per attention layer.

    Self-attention appends the new step's K, V (``update``); cross-attention computes the
    encoder's K, V once and reuses them (``attend`` stores them on the first call when given a
    ``context``). Tensors are (B, nh, S, hs).
    """

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.size(-2)

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append (B, nh, t, hs) keys and values; return all of them, (B, nh, S + t, hs)."""
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=-2)
            self.v = torch.cat([self.v, v], dim=-2)
        return self.k, self.v

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows ``index`` of the batch (beam search)."""
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


# ------------------------------------------------------------------------------------------------
# The real tokens of a padded batch
# ------------------------------------------------------------------------------------------------

class PackedTokens:
    """Where the real tokens of a padded (B, T) batch are, to compute on them alone.

    ``keep`` (B, T) is True at real tokens; ``index`` (N,) their flat positions ``b * T + t``, row by
    row. ``pack`` takes a padded (B, T, ·) tensor to its (N, ·) real rows; ``unpack`` puts (N, ·)
    rows back into a padded tensor, zeros at the padding.
    """

    def __init__(self, keep: torch.Tensor):
        check(keep.dim() == 2 and keep.dtype == torch.bool, f"keep must be a (batch, length) boolean tensor, "
                                                           f"got {keep.dtype} of shape {tuple(keep.shape)}")
        self.keep = keep
        self.index = keep.flatten().nonzero().squeeze(1)  # (N,)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, *x.shape[2:]).index_select(0, self.index)  # (B*T, ·) -> (N, ·)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        B, T = self.keep.shape
        out = x.new_zeros(B * T, *x.shape[1:]).index_copy_(0, self.index, x)  # (B*T, ·)
        return out.view(B, T, *x.shape[1:])                                      # (B, T, ·)


# ------------------------------------------------------------------------------------------------
# Multi-head attention
# ------------------------------------------------------------------------------------------------

class MultiHeadAttention(TwoPath, nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1..head_h) W_o, head_i = Attention(Q W_q^i, K W_k^i, V W_v^i).

    A drop-in for ``torch.nn.MultiheadAttention``: same constructor, ``forward`` signature, return
    values and parameter names (``in_proj_weight`` (3E, E) packing W_q, W_k, W_v, ``in_proj_bias``;
    ``q_proj_weight``/``k_proj_weight``/``v_proj_weight`` when kdim/vdim differ from embed_dim;
    ``out_proj`` = W_o), so state_dicts interchange with torch's module, its Transformer layers and
    torchvision's ViT. archlab's own models call ``attend`` (batch first, True = may attend, KV cache).
    ``add_bias_kv`` and ``add_zero_attn`` are not supported.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, device=None, dtype=None):
        super().__init__()
        check_sizes("MultiHeadAttention", embed_dim=embed_dim, num_heads=num_heads)
        check(embed_dim % num_heads == 0,
              f"num_heads must divide embed_dim={embed_dim}, got num_heads={num_heads}")
        check(0.0 <= dropout < 1.0, f"dropout must be in [0, 1), got {dropout}")
        check(not add_bias_kv, "add_bias_kv=True is not supported by archlab's MultiHeadAttention, got True")
        check(not add_zero_attn, "add_zero_attn=True is not supported by archlab's MultiHeadAttention, got True")
        factory = {"device": device, "dtype": dtype}
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.dropout = dropout
        self.batch_first = batch_first
        if self._qkv_same_embed_dim:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim, **factory))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = nn.Parameter(torch.empty(embed_dim, embed_dim, **factory))
            self.k_proj_weight = nn.Parameter(torch.empty(embed_dim, self.kdim, **factory))
            self.v_proj_weight = nn.Parameter(torch.empty(embed_dim, self.vdim, **factory))
            self.register_parameter("in_proj_weight", None)
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.bias_k = self.bias_v = None  # torch's attribute names, for code that inspects them
        self.add_zero_attn = False
        self._weights_hooks: OrderedDict[int, Callable] = OrderedDict()
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # torch's initialisation: Xavier-uniform projections, zero biases.
        for w in (self.in_proj_weight, self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
            if w is not None:
                nn.init.xavier_uniform_(w)
        if self.in_proj_bias is not None:
            nn.init.zeros_(self.in_proj_bias)
            nn.init.zeros_(self.out_proj.bias)

    # The texts' names for the projections: views of torch's packed layout.
    @property
    def W_q(self) -> torch.Tensor:
        return self.q_proj_weight if self.in_proj_weight is None else self.in_proj_weight[: self.embed_dim]

    @property
    def W_k(self) -> torch.Tensor:
        E = self.embed_dim
        return self.k_proj_weight if self.in_proj_weight is None else self.in_proj_weight[E: 2 * E]

    @property
    def W_v(self) -> torch.Tensor:
        return self.v_proj_weight if self.in_proj_weight is None else self.in_proj_weight[2 * self.embed_dim:]

    @property
    def W_o(self) -> nn.Linear:
        return self.out_proj

    def _bias(self, i: int) -> torch.Tensor | None:
        E = self.embed_dim
        return None if self.in_proj_bias is None else self.in_proj_bias[i * E: (i + 1) * E]

    # --------------------------------------------------------------------------------------------
    # archlab's native call: batch first, boolean mask True = may attend
    # --------------------------------------------------------------------------------------------

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, L, hs)

    def project_qkv(self, query: torch.Tensor, key: torch.Tensor | None, value: torch.Tensor | None):
        """Q = query W_q^T + b_q, K = key W_k^T + b_k, V = value W_v^T + b_v, split into heads.

        ``key``/``value`` None: only Q is computed (cross-attention with cached K, V).
        """
        if self.impl == "fused" and key is query and value is query and self.in_proj_weight is not None:
            # Self-attention: one matmul for the three projections.
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)  # 3 x (B, T, E)
            return self._split_heads(q), self._split_heads(k), self._split_heads(v)
        q = self._split_heads(F.linear(query, self.W_q, self._bias(0)))  # (B, nh, T, hs)
        if key is None:
            return q, None, None
        k = self._split_heads(F.linear(key, self.W_k, self._bias(1)))  # (B, nh, S, hs)
        v = self._split_heads(F.linear(value, self.W_v, self._bias(2)))  # (B, nh, S, hs)
        return q, k, v

    def register_weights_hook(self, fn: Callable[[nn.Module, torch.Tensor], None]) -> RemovableHandle:
        """Call ``fn(module, weights)`` with the attention weights (B, nh, T, S) of every call (each
        head's own, after dropout). While any hook is set the weights are computed explicitly, on
        the reference path; returns a handle whose ``remove()`` unregisters ``fn``."""
        handle = RemovableHandle(self._weights_hooks)
        self._weights_hooks[handle.id] = fn
        return handle

    def _attention(self, q, k, v, mask, is_causal, need_weights, average_attn_weights):
        """Heads attend, are concatenated and mixed by W_o: (B, T, E), weights or None."""
        observed = bool(self._weights_hooks)
        B, _, T, _ = q.shape
        S = k.size(-2)
        if mask is not None:
            try:
                torch.broadcast_shapes(mask.shape, (B, self.num_heads, T, S))
            except RuntimeError:
                raise ConfigError(f"mask must broadcast to (batch, heads, T, S) = {(B, self.num_heads, T, S)}, "
                                  f"got shape {tuple(mask.shape)}") from None
        y, weights = scaled_dot_product_attention(
            q, k, v, mask=mask, dropout_p=self.dropout, is_causal=is_causal, need_weights=need_weights or observed,
            impl=self.impl, training=self.training)
        for fn in list(self._weights_hooks.values()):
            fn(self, weights)  # (B, nh, T, S)
        if not need_weights:
            weights = None
        y = y.transpose(1, 2).reshape(B, T, self.embed_dim)  # (B, T, E): heads side by side again
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)  # (B, T, S)
        return self.W_o(y), weights

    def attend(self, x: torch.Tensor, context: torch.Tensor | None = None, *, mask: torch.Tensor | None = None,
               is_causal: bool = False, kv_cache: KVCache | None = None, need_weights: bool = False,
               average_attn_weights: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Multi-head attention of x (B, T, E) over itself, or over ``context`` (B, S, kdim).

        ``mask``: boolean (True = may attend) or additive float, broadcastable to (B, nh, T, S)
        (a key padding mask of shape (B, S) is ``mask[:, None, None, :]``). ``is_causal``: causal
        self-attention (bottom-right aligned, right with a cache). ``kv_cache``: self-attention
        appends this step's K, V to it; with a ``context`` (cross-attention) the context's K, V are
        computed on the first call and reused after. Returns (out (B, T, E), weights (B, T, S)
        averaged over heads or (B, nh, T, S), or None).
        """
        check_input(x, "MultiHeadAttention", self.out_proj.weight, name="x")
        check(x.dim() == 3 and x.size(-1) == self.embed_dim,
              f"x must be (batch, length, embed_dim={self.embed_dim}), got shape {tuple(x.shape)}")
        check_mask(mask, "mask")
        if context is not None:
            check_input(context, "MultiHeadAttention", self.out_proj.weight, name="context")
        if context is not None:
            check(context.dim() == 3 and context.size(0) == x.size(0) and context.size(-1) == self.kdim
                  and self.kdim == self.vdim,
                  f"context must be (batch={x.size(0)}, length, kdim={self.kdim}), got shape {tuple(context.shape)}")
        if context is not None and kv_cache is not None and len(kv_cache) > 0:
            q, _, _ = self.project_qkv(x, None, None)
            k, v = kv_cache.k, kv_cache.v
        else:
            c = x if context is None else context
            q, k, v = self.project_qkv(x, c, c)
            if kv_cache is not None:
                k, v = kv_cache.update(k, v)
        return self._attention(q, k, v, mask, is_causal, need_weights, average_attn_weights)

    def attend_packed(self, x: torch.Tensor, tokens: "PackedTokens") -> torch.Tensor:
        """Self-attention over the real tokens of a padded batch, given only those tokens.

        ``x`` (N, E) holds the N real tokens of a padded (B, T) batch, row by row (``tokens.pack``).
        The projections run on the N tokens only, so the padding costs no matrix products; the
        heads attend on the padded (B, nh, T, hs) layout, every query to the real keys of its own
        sequence. Returns (N, E): the rows of ``attend(x_padded, mask=keep[:, None, None, :])`` at
        the real tokens.
        """
        E = self.embed_dim
        check(x.dim() == 2 and x.size(-1) == E and x.size(0) == tokens.index.numel(),
              f"x must be (real tokens={tokens.index.numel()}, embed_dim={E}), got shape {tuple(x.shape)}")
        check(self.in_proj_weight is not None, "attend_packed is self-attention: kdim and vdim must equal embed_dim")
        fused = self.impl == "fused"  # the products packed once, without gradients on a CPU
        qkv = tokens.unpack(inference.linear(x, self.in_proj_weight, self.in_proj_bias, fused=fused))  # (B, T, 3E)
        q, k, v = (self._split_heads(t) for t in qkv.chunk(3, dim=-1))           # (B, nh, T, hs) each
        mask = tokens.keep[:, None, None, :]                                     # (B, 1, 1, T): real keys only
        y, _ = scaled_dot_product_attention(q, k, v, mask=mask, dropout_p=self.dropout, impl=self.impl,
                                            training=self.training)
        y = y.transpose(1, 2).reshape(*tokens.keep.shape, E)  # (B, T, E): heads side by side
        return inference.linear(tokens.pack(y), self.W_o.weight, self.W_o.bias, fused=fused)  # (N, E)

    # --------------------------------------------------------------------------------------------
    # torch.nn.MultiheadAttention's call
    # --------------------------------------------------------------------------------------------

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_padding_mask: torch.Tensor | None = None, need_weights: bool = True,
                attn_mask: torch.Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False, *,
                kv_cache: KVCache | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``torch.nn.MultiheadAttention.forward``: same arguments, semantics and return values.

        query (L, N, E), key (S, N, kdim), value (S, N, vdim) — (N, L, E)... with ``batch_first``,
        or unbatched (L, E). ``key_padding_mask`` (N, S) and ``attn_mask`` (L, S) or (N*nh, L, S):
        boolean True = masked out, or float added to the scores. ``is_causal`` without an
        ``attn_mask`` applies the causal mask (torch requires the mask as well; with one, it is a hint).
        Returns (output like query, weights (N, L, S) averaged or (N, nh, L, S), or None).

        archlab's addition, ``kv_cache``: self-attention (key and value are query) appends this
        call's K, V; cross-attention computes K, V from ``key``/``value`` on the first call and
        reuses them after. S then counts the cached positions too.
        """
        for name, t in (("query", query), ("key", key), ("value", value)):
            check_input(t, "MultiHeadAttention", self.out_proj.weight, name=name)
        check_mask(key_padding_mask, "key_padding_mask", true_means="masked out")
        check_mask(attn_mask, "attn_mask", true_means="masked out")
        unbatched = query.dim() == 2
        check(query.dim() in (2, 3), f"query must be 2-D (unbatched) or 3-D, got shape {tuple(query.shape)}")
        check(key.dim() == query.dim() and value.dim() == query.dim(),
              f"query, key and value must have the same number of dims, got {query.dim()}, {key.dim()}, {value.dim()}")
        self_attention = key is query and value is query
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)  # (N, L, E)
        if self_attention:
            key = value = query  # keeps the single packed projection of self-attention
        N, L = query.size(0), query.size(1)
        check(query.size(-1) == self.embed_dim,
              f"query has embedding size {query.size(-1)}, MultiHeadAttention expects embed_dim={self.embed_dim}")
        check(key.size(-1) == self.kdim, f"key has embedding size {key.size(-1)}, expected kdim={self.kdim}")
        check(value.size(-1) == self.vdim, f"value has embedding size {value.size(-1)}, expected vdim={self.vdim}")
        check(key.shape[:2] == value.shape[:2],
              f"key and value must have the same batch and length, got {tuple(key.shape)} and {tuple(value.shape)}")
        check(key.size(0) == N, f"key has batch size {key.size(0)}, expected the query's batch size {N}")

        if kv_cache is not None and not self_attention and len(kv_cache) > 0:
            q, _, _ = self.project_qkv(query, None, None)
            k, v = kv_cache.k, kv_cache.v  # the encoder's K, V, projected on the first step
        else:
            q, k, v = self.project_qkv(query, key, value)
            if kv_cache is not None:
                k, v = kv_cache.update(k, v)
        S = k.size(-2)

        mask = None
        if key_padding_mask is not None:
            check(tuple(key_padding_mask.shape) == (N, S),
                  f"key_padding_mask must have shape (batch, S) = {(N, S)}, got {tuple(key_padding_mask.shape)}")
            mask = _from_torch_mask(key_padding_mask)[:, None, None, :]  # (N, 1, 1, S)
        if attn_mask is not None:
            if attn_mask.dim() == 2:
                check(tuple(attn_mask.shape) == (L, S),
                      f"attn_mask (2-D) must have shape (L, S) = {(L, S)}, got {tuple(attn_mask.shape)}")
                am = attn_mask[None, None]  # (1, 1, L, S)
            else:
                want = (N * self.num_heads, L, S)
                check(attn_mask.dim() == 3 and tuple(attn_mask.shape) == want,
                      f"attn_mask (3-D) must have shape (batch*num_heads, L, S) = {want}, got {tuple(attn_mask.shape)}")
                am = attn_mask.view(N, self.num_heads, L, S)
            mask = merge_masks(mask, _from_torch_mask(am), query.dtype)
        out, weights = self._attention(q, k, v, mask, is_causal and attn_mask is None, need_weights,
                                       average_attn_weights)
        if unbatched:
            return out.squeeze(0), (weights.squeeze(0) if weights is not None else None)
        if not self.batch_first:
            out = out.transpose(0, 1)  # (L, N, E)
        return out, weights

    @classmethod
    def from_torch(cls, m: nn.MultiheadAttention) -> "MultiHeadAttention":
        """The same attention, weights copied, from a ``torch.nn.MultiheadAttention``."""
        check_module_type(cls, m, nn.MultiheadAttention)
        check(m.bias_k is None and not m.add_zero_attn,
              "from_torch: add_bias_kv / add_zero_attn are not supported, got a module that uses them")
        p = m.out_proj.weight
        new = cls(m.embed_dim, m.num_heads, dropout=m.dropout, bias=m.in_proj_bias is not None, kdim=m.kdim,
                  vdim=m.vdim, batch_first=m.batch_first, device=p.device, dtype=p.dtype)
        new.load_state_dict(m.state_dict())
        return new.train(m.training)


def _from_torch_mask(mask: torch.Tensor) -> torch.Tensor:
    """torch's convention (bool True = masked out, or additive float) -> archlab's (True = may attend)."""
    return ~mask if mask.dtype == torch.bool else mask
