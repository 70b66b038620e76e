"""The Transformer encoder and decoder (Vaswani et al. 2017), as drop-ins for ``torch.nn.Transformer*``.

Encoder layer, post-norm (the 2017 paper) and pre-norm (``norm_first``, GPT-2 and most models since):

    post-norm:  x = LayerNorm(x + Dropout(SelfAttention(x)));   x = LayerNorm(x + Dropout(FFN(x)))
    pre-norm:   x = x + Dropout(SelfAttention(LayerNorm(x)));   x = x + Dropout(FFN(LayerNorm(x)))

    FFN(x) = W_2 Dropout(act(W_1 x + b_1)) + b_2

Decoder layer: masked self-attention over the target (no position sees the future), then
cross-attention whose queries come from the decoder and keys/values from the encoder output
(``memory``), then the FFN; each sub-layer wrapped by the same residual + LayerNorm.

Every class keeps torch's constructor arguments, ``forward`` signature, return values and
parameter names (``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``, ``norm1..3``), so
state_dicts interchange, and offers ``from_torch(m)``. Masks follow torch here (bool ``True`` =
masked out, or float added to the scores); ``MultiHeadAttention`` converts them.
Tensors are (S, N, E), or (N, S, E) with ``batch_first``.

archlab's one addition is incremental decoding: ``TransformerDecoder.forward(..., kv_caches=
decoder.new_cache())`` takes only the new target positions and keeps every layer's self-attention
keys/values and the encoder memory's projected keys/values, so a decoding step costs one position.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import check
from archlab.nn import inference
from archlab.nn.attention import KVCache, MultiHeadAttention, PackedTokens
from archlab.nn.checks import check_module_type
from archlab.nn.feedforward import make_activation
from archlab.nn.norm import LayerNorm

Activation = str | nn.Module | Callable[[torch.Tensor], torch.Tensor]


def _torch_activation(m: nn.Module) -> Activation:
    """The activation of a torch Transformer layer, as our constructors accept it."""
    act = m.activation
    if act is F.relu or isinstance(act, nn.ReLU):
        return "relu"
    if act is F.gelu or (isinstance(act, nn.GELU) and act.approximate == "none"):
        return "gelu"
    return act


def _layer_kwargs(m: nn.Module) -> dict:
    """Constructor arguments of a torch encoder/decoder layer, read from the module."""
    w = m.linear1.weight
    return dict(d_model=m.self_attn.embed_dim, nhead=m.self_attn.num_heads,
                dim_feedforward=m.linear1.out_features, dropout=m.dropout.p, activation=_torch_activation(m),
                layer_norm_eps=m.norm1.eps, batch_first=m.self_attn.batch_first, norm_first=m.norm_first,
                bias=m.linear1.bias is not None, device=w.device, dtype=w.dtype)


class TransformerEncoderLayer(nn.Module):
    """Self-attention and feed-forward sub-layers, each with residual, dropout and LayerNorm."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Activation = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            **factory)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias, **factory)  # W_1
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias, **factory)  # W_2
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = make_activation(activation)

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor | None = None,
                src_key_padding_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def forward_packed(self, x: torch.Tensor, tokens: PackedTokens) -> torch.Tensor:
        """The layer on the real tokens of a padded batch only (an inference fast path).

        ``x`` (N, E) holds the real tokens (``tokens.pack(x_padded)``). Every per-token step --
        projections, feed-forward, norms, residuals -- runs on the N real tokens; only attention
        sees the (B, T) layout (``MultiHeadAttention.attend_packed``). Equals
        ``tokens.pack(forward(x_padded, src_key_padding_mask=~tokens.keep))`` without the work on
        the padding.
        """
        if self.norm_first:
            x = x + self.dropout1(self.self_attn.attend_packed(self.norm1(x), tokens))
            x = x + self._ff_block_packed(self.norm2(x))
        else:
            x = self.norm1(x + self.dropout1(self.self_attn.attend_packed(x, tokens)))
            x = self.norm2(x + self._ff_block_packed(x))
        return x

    def _ff_block_packed(self, x: torch.Tensor) -> torch.Tensor:
        """``_ff_block`` on (N, E) tokens: without gradients on a CPU, the weights packed once and the
        activation inside the first product (``archlab.nn.inference``)."""
        if self.training:
            return self._ff_block(x)
        fused = self.self_attn.impl == "fused"
        h = inference.linear(x, self.linear1.weight, self.linear1.bias, self.activation, fused=fused)
        return inference.linear(h, self.linear2.weight, self.linear2.bias, fused=fused)

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal) -> torch.Tensor:
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           need_weights=False, is_causal=is_causal)[0]
        return self.dropout1(x)

    def _ff_block(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    @classmethod
    def from_torch(cls, m: nn.TransformerEncoderLayer) -> "TransformerEncoderLayer":
        check_module_type(cls, m, nn.TransformerEncoderLayer)
        new = cls(**_layer_kwargs(m))
        new.load_state_dict(m.state_dict())
        return new.train(m.training)


class TransformerDecoderLayer(nn.Module):
    """Masked self-attention, cross-attention over ``memory``, feed-forward; each with residual and LayerNorm."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Activation = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.self_attn = MultiHeadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            **factory)
        self.multihead_attn = MultiHeadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                                 batch_first=batch_first, **factory)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias, **factory)  # W_1
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias, **factory)  # W_2
        self.norm_first = norm_first
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = make_activation(activation)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, tgt_key_padding_mask: torch.Tensor | None = None,
                memory_key_padding_mask: torch.Tensor | None = None, tgt_is_causal: bool = False,
                memory_is_causal: bool = False, *,
                kv_cache: tuple[KVCache, KVCache] | None = None) -> torch.Tensor:
        """torch's signature; ``kv_cache`` (self-attention cache, cross-attention cache) for decoding step by step."""
        self_cache, cross_cache = kv_cache if kv_cache is not None else (None, None)
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal, self_cache)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask, memory_is_causal,
                                    cross_cache)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal, self_cache))
            x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal,
                                               cross_cache))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal, kv_cache=None) -> torch.Tensor:
        x = self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                           need_weights=False, is_causal=is_causal, kv_cache=kv_cache)[0]
        return self.dropout1(x)

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal, kv_cache=None) -> torch.Tensor:
        # Cross-attention: queries from the decoder (x), keys and values from the encoder (mem).
        x = self.multihead_attn(x, mem, mem, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                need_weights=False, is_causal=is_causal, kv_cache=kv_cache)[0]
        return self.dropout2(x)

    def _ff_block(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout3(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    @classmethod
    def from_torch(cls, m: nn.TransformerDecoderLayer) -> "TransformerDecoderLayer":
        check_module_type(cls, m, nn.TransformerDecoderLayer)
        new = cls(**_layer_kwargs(m))
        new.load_state_dict(m.state_dict())
        return new.train(m.training)


def _clones(layer: nn.Module, n: int) -> nn.ModuleList:
    check(n >= 1, f"num_layers must be >= 1, got {n}")
    return nn.ModuleList([copy.deepcopy(layer) for _ in range(n)])


def _norm_from_torch(norm: nn.Module | None) -> LayerNorm | None:
    if norm is None:
        return None
    check(isinstance(norm, nn.LayerNorm), f"from_torch: norm must be a torch.nn.LayerNorm, got {type(norm).__name__}")
    return LayerNorm.from_torch(norm)


class TransformerEncoder(nn.Module):
    """A stack of ``num_layers`` copies of ``encoder_layer``, then an optional final ``norm``."""

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm: nn.Module | None = None,
                 enable_nested_tensor: bool = True, mask_check: bool = True):
        super().__init__()
        # enable_nested_tensor / mask_check tune torch's inference fast path; accepted for compatibility.
        self.layers = _clones(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src: torch.Tensor, mask: torch.Tensor | None = None,
                src_key_padding_mask: torch.Tensor | None = None, is_causal: bool | None = None) -> torch.Tensor:
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return self.norm(x) if self.norm is not None else x

    @classmethod
    def from_torch(cls, m: nn.TransformerEncoder) -> "TransformerEncoder":
        check_module_type(cls, m, nn.TransformerEncoder)
        new = cls(TransformerEncoderLayer.from_torch(m.layers[0]), len(m.layers), norm=_norm_from_torch(m.norm))
        new.load_state_dict(m.state_dict())
        return new.train(m.training)


class TransformerDecoder(nn.Module):
    """A stack of ``num_layers`` copies of ``decoder_layer``, then an optional final ``norm``."""

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: nn.Module | None = None):
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, tgt_mask: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, tgt_key_padding_mask: torch.Tensor | None = None,
                memory_key_padding_mask: torch.Tensor | None = None, tgt_is_causal: bool | None = None,
                memory_is_causal: bool = False, *,
                kv_caches: list[tuple[KVCache, KVCache]] | None = None) -> torch.Tensor:
        """torch's signature. Step by step: ``kv_caches=self.new_cache()``, then pass only the new
        target positions each call with ``tgt_is_causal=True`` (masks cover cached positions too)."""
        x = tgt
        for i, layer in enumerate(self.layers):
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                      tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                      tgt_is_causal=bool(tgt_is_causal), memory_is_causal=memory_is_causal,
                      kv_cache=None if kv_caches is None else kv_caches[i])
        return self.norm(x) if self.norm is not None else x

    def new_cache(self) -> list[tuple[KVCache, KVCache]]:
        """Empty (self-attention, cross-attention) caches, one pair per layer."""
        return [(KVCache(), KVCache()) for _ in self.layers]

    @classmethod
    def from_torch(cls, m: nn.TransformerDecoder) -> "TransformerDecoder":
        check_module_type(cls, m, nn.TransformerDecoder)
        new = cls(TransformerDecoderLayer.from_torch(m.layers[0]), len(m.layers), norm=_norm_from_torch(m.norm))
        new.load_state_dict(m.state_dict())
        return new.train(m.training)


class Transformer(nn.Module):
    """The encoder-decoder Transformer: ``encoder`` reads the source, ``decoder`` writes the target.

    ``Transformer(d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6)`` is the base
    model of the 2017 paper.
    """

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: Activation = "relu", custom_encoder: nn.Module | None = None,
                 custom_decoder: nn.Module | None = None, layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        layer_args = dict(d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward, dropout=dropout,
                          activation=activation, layer_norm_eps=layer_norm_eps, batch_first=batch_first,
                          norm_first=norm_first, bias=bias, **factory)
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            self.encoder = TransformerEncoder(TransformerEncoderLayer(**layer_args), num_encoder_layers,
                                              LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory))
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            self.decoder = TransformerDecoder(TransformerDecoderLayer(**layer_args), num_decoder_layers,
                                              LayerNorm(d_model, eps=layer_norm_eps, bias=bias, **factory))
        self.d_model, self.nhead, self.batch_first = d_model, nhead, batch_first
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # torch's initialisation: Xavier-uniform for every matrix.
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: torch.Tensor, tgt: torch.Tensor, src_mask: torch.Tensor | None = None,
                tgt_mask: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None,
                src_key_padding_mask: torch.Tensor | None = None, tgt_key_padding_mask: torch.Tensor | None = None,
                memory_key_padding_mask: torch.Tensor | None = None, src_is_causal: bool | None = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False) -> torch.Tensor:
        batch_dim = 0 if self.batch_first else 1
        if src.dim() == 3 and tgt.dim() == 3:
            check(src.size(batch_dim) == tgt.size(batch_dim),
                  f"src and tgt must have the same batch size, got {src.size(batch_dim)} and {tgt.size(batch_dim)}")
        check(src.size(-1) == self.d_model and tgt.size(-1) == self.d_model,
              f"src and tgt must have d_model={self.d_model} features, got {src.size(-1)} and {tgt.size(-1)}")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask,
                            tgt_is_causal=tgt_is_causal, memory_is_causal=memory_is_causal)

    @staticmethod
    def generate_square_subsequent_mask(sz: int, device=None, dtype=None) -> torch.Tensor:
        """(sz, sz) float mask: 0 on and below the diagonal, -inf above (position i cannot see j > i)."""
        dtype = dtype if dtype is not None else torch.get_default_dtype()
        return torch.triu(torch.full((sz, sz), float("-inf"), device=device, dtype=dtype), diagonal=1)

    @classmethod
    def from_torch(cls, m: nn.Transformer) -> "Transformer":
        layer = m.encoder.layers[0]
        norm_eps = m.encoder.norm.eps if m.encoder.norm is not None else layer.norm1.eps
        new = cls(custom_encoder=TransformerEncoder.from_torch(m.encoder),
                  custom_decoder=TransformerDecoder.from_torch(m.decoder), **{
                      k: v for k, v in _layer_kwargs(layer).items() if k != "layer_norm_eps"},
                  layer_norm_eps=norm_eps)
        new.load_state_dict(m.state_dict())
        return new.train(m.training)
