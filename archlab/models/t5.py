"""T5, the text-to-text encoder-decoder (Raffel et al. 2019, "Exploring the Limits of Transfer Learning
with a Unified Text-to-Text Transformer").

The encoder-decoder of Vaswani et al. with the changes the paper lists in its section 2.1:

    x_0 = Dropout(E[src])                         no positional encoding is added to the inputs
    x   = x + Dropout(SelfAttention(RMSNorm(x), bias=b_enc))          pre-norm, N encoder layers
    x   = x + Dropout(FFN(RMSNorm(x)))
    m   = Dropout(RMSNorm(x))                      the encoder output
    y   = y + Dropout(CausalSelfAttention(RMSNorm(y), bias=b_dec))    N decoder layers
    y   = y + Dropout(CrossAttention(RMSNorm(y), m))                   queries y, keys and values m
    y   = y + Dropout(FFN(RMSNorm(y)))
    h   = Dropout(RMSNorm(y))
    p(tgt_{t+1} | ...) = softmax(W_out h_t)        W_out = E and h scaled by d_model**-0.5 when tied

    Attention(Q, K, V) = softmax(Q K^T + b) V       no 1/sqrt(d_k): T5's initialisation of W_q holds it
    b_ij = B[bucket(j - i), head]                    relative position bias (archlab.nn.RelativePositionBias),
                                                     computed once per stack and added in every layer;
                                                     bidirectional buckets in the encoder, causal in the decoder
    RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g       no mean subtracted, no bias; no projection has a bias
    FFN(x) = W_2 ReLU(W_1 x)                          T5 v1.0 (``feed_forward="relu"``)
    FFN(x) = W_2 (GELU(W_1 x) * V x)                  T5 v1.1 (``feed_forward="gated-gelu"``)

Dimension letters: B batch, S source length, T target length, d d_model, nh heads, hs d_kv (head
size; nh * hs may differ from d), V vocabulary size.

Vocabularies. T5 has one vocabulary and one embedding table shared by encoder, decoder and (when
tied) the output head. archlab's seq2seq task reads two vocabularies instead (letters in, phonemes
out), whose ids overlap without meaning the same thing. ``share_vocab`` (the Transformer's field
of the same name) decides: True is T5's single table over a joint id space (it needs
``src_vocab_size == tgt_vocab_size``); False gives the source and the target their own table, and a
tied output head reuses the target table. The data decides it through the interfaces: as a
``Seq2SeqModel`` (two vocabularies) T5 takes ``share_vocab=False``, as a ``TextToTextModel`` (one
vocabulary: ``span_corruption``) ``share_vocab=True``.

Masks: ``src_padding_mask`` (B, S) is boolean, True = a real token; by default ``src_ids != pad_id``.
The decoder needs no padding mask for right-padded targets (causal attention never looks ahead to
the padding), so by default it has none: T5 starts the decoder with the pad token itself.

Hugging Face T5 checkpoints (``T5ForConditionalGeneration``, both flavours) load through
``archlab.from_pretrained(dir)``; the name mapping is at the end of this file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from archlab.checkpoint import PretrainedMixin, load_state_dict, register_checkpoint_format
from archlab.errors import CheckpointError, ConfigError, check
from archlab.models.encoder_decoder import AttentionEncoderDecoder
from archlab.models.interfaces import PairData, Seq2SeqModel, TextToTextData, TextToTextModel
from archlab.nn.attention import KVCache, merge_masks, scaled_dot_product_attention
from archlab.nn.feedforward import FeedForward, GatedFeedForward
from archlab.nn.norm import RMSNorm
from archlab.nn.positional import RelativePositionBias
from archlab.nn.twopath import TwoPath
from archlab.registry import build_config, register_model

# feed_forward -> (activation, gated): T5 v1.0 and v1.1 (Hugging Face's feed_forward_proj names).
FEED_FORWARDS = {"relu": ("relu", False), "gated-gelu": ("gelu_tanh", True)}


@dataclass
class T5Config:
    src_vocab_size: int = 32128
    tgt_vocab_size: int = 32128
    share_vocab: bool = True          # one table for source and target ids (a joint id space; equal sizes)
    tie_output: bool = True           # the output head is the target embedding table (v1.0); False: its own (v1.1)
    scale_output: bool | None = None  # h * d_model**-0.5 before the head; None = exactly when tied (T5's rule)
    d_model: int = 512
    d_kv: int = 64                    # head size hs
    d_ff: int = 2048
    num_layers: int = 6               # encoder layers
    num_decoder_layers: int = 6
    num_heads: int = 8
    num_buckets: int = 32             # relative position buckets
    max_distance: int = 128           # offsets beyond it share the last bucket
    feed_forward: str = "relu"        # "relu" (T5 v1.0) | "gated-gelu" (v1.1)
    dropout: float = 0.1
    layer_norm_eps: float = 1e-6
    pad_id: int = 0
    bos_id: int = 0                   # the decoder's start token (T5 starts with the pad token)
    eos_id: int = 1
    init_factor: float = 1.0          # scales every initial standard deviation (Hugging Face's initializer_factor)

    def __post_init__(self):
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "d_kv", "d_ff", "num_layers",
                     "num_decoder_layers", "num_heads", "num_buckets", "max_distance"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        check(not self.share_vocab or self.src_vocab_size == self.tgt_vocab_size,
              f"share_vocab=True needs src_vocab_size == tgt_vocab_size (one id space), got "
              f"{self.src_vocab_size} and {self.tgt_vocab_size}; use share_vocab=False for two vocabularies")
        check(self.feed_forward in FEED_FORWARDS,
              f"feed_forward must be one of {sorted(FEED_FORWARDS)}, got {self.feed_forward!r}")
        check(self.num_buckets >= 4, f"num_buckets must be >= 4, got {self.num_buckets}")
        check(self.max_distance > self.num_buckets // 4,
              f"max_distance must exceed num_buckets // 4 = {self.num_buckets // 4}, got {self.max_distance}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        check(self.layer_norm_eps > 0, f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")
        check(self.init_factor > 0, f"init_factor must be > 0, got {self.init_factor}")
        vocab = min(self.src_vocab_size, self.tgt_vocab_size)
        for name in ("pad_id", "bos_id", "eos_id"):
            check(0 <= getattr(self, name) < vocab,
                  f"{name} must be in [0, {vocab}) (the smaller vocabulary), got {getattr(self, name)}")

    @property
    def output_scaled(self) -> bool:
        return self.tie_output if self.scale_output is None else self.scale_output


class T5Attention(TwoPath, nn.Module):
    """MultiHead(x) = Concat(head_1..head_nh) W_o, head_i = softmax(Q_i K_i^T + b_i) V_i.

    Q = x W_q, K = c W_k, V = c W_v with c = x (self-attention) or the encoder output (cross-
    attention); no biases, no 1/sqrt(hs). ``bias``: T5's relative position bias (1, nh, T, S), or
    None; ``mask``: boolean, True = may attend, broadcastable to (B, nh, T, S); ``kv_cache`` as in
    ``MultiHeadAttention.attend`` (self-attention appends, cross-attention projects the context
    once). ``impl`` chooses the reference or the fused attention kernel.
    """

    def __init__(self, d_model: int, num_heads: int, d_kv: int, dropout: float = 0.0):
        super().__init__()
        inner = num_heads * d_kv
        self.num_heads, self.d_kv, self.dropout = num_heads, d_kv, dropout
        self.W_q = nn.Linear(d_model, inner, bias=False)
        self.W_k = nn.Linear(d_model, inner, bias=False)
        self.W_v = nn.Linear(d_model, inner, bias=False)
        self.W_o = nn.Linear(inner, d_model, bias=False)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.d_kv).transpose(1, 2)  # (B, nh, L, hs)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, *, bias: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, is_causal: bool = False, kv_cache: KVCache | None = None,
                need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, _ = x.shape
        q = self._split_heads(self.W_q(x))  # (B, nh, T, hs)
        if context is not None and kv_cache is not None and len(kv_cache) > 0:
            k, v = kv_cache.k, kv_cache.v  # the encoder's K, V, projected on the first step
        else:
            c = x if context is None else context
            k, v = self._split_heads(self.W_k(c)), self._split_heads(self.W_v(c))  # (B, nh, S, hs)
            if kv_cache is not None:
                k, v = kv_cache.update(k, v)
        out, weights = scaled_dot_product_attention(
            q, k, v, mask=merge_masks(bias, mask, q.dtype), dropout_p=self.dropout, is_causal=is_causal,
            need_weights=need_weights, impl=self.impl, training=self.training, scale=1.0)
        out = out.transpose(1, 2).reshape(B, T, self.num_heads * self.d_kv)  # (B, T, nh * hs)
        return self.W_o(out), weights


class T5Block(nn.Module):
    """One layer: x = x + Dropout(SubLayer(RMSNorm(x))) for self-attention, [cross-attention,] FFN."""

    def __init__(self, c: T5Config, cross_attention: bool):
        super().__init__()
        self.self_attn_norm = RMSNorm(c.d_model, eps=c.layer_norm_eps)
        self.self_attn = T5Attention(c.d_model, c.num_heads, c.d_kv, c.dropout)
        if cross_attention:
            self.cross_attn_norm = RMSNorm(c.d_model, eps=c.layer_norm_eps)
            self.cross_attn = T5Attention(c.d_model, c.num_heads, c.d_kv, c.dropout)
        else:
            self.cross_attn_norm = self.cross_attn = None
        self.ffn_norm = RMSNorm(c.d_model, eps=c.layer_norm_eps)
        activation, gated = FEED_FORWARDS[c.feed_forward]
        if gated:
            self.ffn = GatedFeedForward(c.d_model, c.d_ff, dropout=c.dropout, activation=activation)
        else:  # FeedForward's last Dropout is the residual dropout of this sub-layer
            self.ffn = FeedForward(c.d_model, c.d_ff, dropout=c.dropout, activation=activation, bias=False)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None, *, is_causal: bool = False,
                memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None,
                kv_cache: tuple[KVCache, KVCache] | None = None) -> torch.Tensor:
        self_cache, cross_cache = kv_cache if kv_cache is not None else (None, None)
        a, _ = self.self_attn(self.self_attn_norm(x), bias=bias, mask=mask, is_causal=is_causal, kv_cache=self_cache)
        x = x + self.dropout(a)
        if self.cross_attn is not None:
            a, _ = self.cross_attn(self.cross_attn_norm(x), memory, mask=memory_mask, kv_cache=cross_cache)
            x = x + self.dropout(a)
        return x + self.ffn(self.ffn_norm(x))


class T5Stack(nn.Module):
    """The encoder (``causal=False``) or the decoder (``causal=True``, with cross-attention):
    position bias once, N blocks, a final RMSNorm."""

    def __init__(self, c: T5Config, num_layers: int, causal: bool):
        super().__init__()
        self.causal = causal
        self.position_bias = RelativePositionBias(c.num_buckets, c.num_heads, max_distance=c.max_distance,
                                                  bidirectional=not causal)
        self.layers = nn.ModuleList(T5Block(c, cross_attention=causal) for _ in range(num_layers))
        self.final_norm = RMSNorm(c.d_model, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None, *, memory: torch.Tensor | None = None,
                memory_keep: torch.Tensor | None = None,
                kv_caches: list[tuple[KVCache, KVCache]] | None = None) -> torch.Tensor:
        """x (B, T, d) embedded tokens; ``keep`` (B, T + cached) True = a real token, or None.

        With ``kv_caches`` the T positions follow the ``offset`` already cached."""
        offset = len(kv_caches[0][0]) if kv_caches is not None else 0
        T = x.size(1)
        bias = self.position_bias(T, offset + T, offset)  # (1, nh, T, S): the same for every layer
        mask = None if keep is None else keep[:, None, None, :]  # (B, 1, 1, S)
        memory_mask = None if memory_keep is None else memory_keep[:, None, None, :]  # (B, 1, 1, S_src)
        x = self.dropout(x)
        for i, layer in enumerate(self.layers):
            x = layer(x, bias, mask, is_causal=self.causal, memory=memory, memory_mask=memory_mask,
                      kv_cache=None if kv_caches is None else kv_caches[i])
        return self.dropout(self.final_norm(x))

    def new_cache(self) -> list[tuple[KVCache, KVCache]]:
        """Empty (self-attention, cross-attention) caches, one pair per layer."""
        return [(KVCache(), KVCache()) for _ in self.layers]


class T5(AttentionEncoderDecoder, Seq2SeqModel, TextToTextModel, PretrainedMixin, nn.Module):
    """T5 as a ``Seq2SeqModel`` (two vocabularies, ``seq2seq``) and a ``TextToTextModel`` (one
    vocabulary, ``span_corruption``); the teacher-forced loss is the interface's ``token_losses``,
    ``forward`` and ``translate`` are ``AttentionEncoderDecoder``'s. Relative positions set no limit
    on the length: ``translate``'s ``max_len`` has no upper bound."""

    config_class = T5Config

    @classmethod
    def seq2seq_fields(cls, data: PairData, config: T5Config) -> dict:
        """Two vocabularies are two id spaces: the source and the target get a table each."""
        return {**super().seq2seq_fields(data, config), "share_vocab": False}

    @classmethod
    def text_to_text_fields(cls, data: TextToTextData, config: T5Config) -> dict:
        """One vocabulary: T5's single table for encoder, decoder (and a tied head)."""
        return {**super().text_to_text_fields(data, config), "share_vocab": True}

    def __init__(self, config: T5Config):
        super().__init__()
        self.config = c = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model)
        self.tgt_embed = self.src_embed if c.share_vocab else nn.Embedding(c.tgt_vocab_size, c.d_model)
        self.encoder = T5Stack(c, c.num_layers, causal=False)
        self.decoder = T5Stack(c, c.num_decoder_layers, causal=True)
        self.lm_head = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        self._init_weights()
        if c.tie_output:
            self.lm_head.weight = self.tgt_embed.weight

    def _init_weights(self) -> None:
        """T5's (Mesh TensorFlow's) initialisation: N(0, f * fan_in**-0.5) for every matrix, with W_q's
        fan-in d * hs folding in the 1/sqrt(hs) that attention leaves out; N(0, f) embeddings."""
        c, f = self.config, self.config.init_factor
        inner = c.num_heads * c.d_kv
        for emb in dict.fromkeys((self.src_embed, self.tgt_embed, self.lm_head)):  # in order, shared ones once
            nn.init.normal_(emb.weight, std=f)
        for stack in (self.encoder, self.decoder):
            nn.init.normal_(stack.position_bias.weight, std=f * c.d_model ** -0.5)
            for m in stack.modules():
                if isinstance(m, T5Attention):
                    nn.init.normal_(m.W_q.weight, std=f * (c.d_model * c.d_kv) ** -0.5)
                    nn.init.normal_(m.W_k.weight, std=f * c.d_model ** -0.5)
                    nn.init.normal_(m.W_v.weight, std=f * c.d_model ** -0.5)
                    nn.init.normal_(m.W_o.weight, std=f * inner ** -0.5)
                elif isinstance(m, GatedFeedForward):
                    nn.init.normal_(m.W_1.weight, std=f * c.d_model ** -0.5)
                    nn.init.normal_(m.V.weight, std=f * c.d_model ** -0.5)
                    nn.init.normal_(m.W_2.weight, std=f * c.d_ff ** -0.5)
                elif isinstance(m, FeedForward):
                    nn.init.normal_(m.W_1.weight, std=f * c.d_model ** -0.5)
                    nn.init.normal_(m.W_2.weight, std=f * c.d_ff ** -0.5)

    # --------------------------------------------------------------------------------------------
    # Teacher-forced forward pass
    # --------------------------------------------------------------------------------------------

    def encode(self, src_ids: torch.Tensor, src_padding_mask: torch.Tensor | None = None):
        """Encoder output m (B, S, d) and the source mask (B, S), True = real token."""
        keep = self._check_ids("src_ids", src_ids, self.config.src_vocab_size, src_padding_mask)
        return self.encoder(self.src_embed(src_ids), keep), keep

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        if self.config.output_scaled:  # a tied head reads embeddings of std 1: bring h to their scale
            h = h * self.config.d_model ** -0.5
        return self.lm_head(h)  # (B, T, V)

    def decode(self, tgt_ids: torch.Tensor, memory: torch.Tensor, src_keep: torch.Tensor,
               tgt_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits (B, T, V) for every target prefix, all positions at once."""
        # Right-padded targets need no mask (causal attention never looks ahead to the padding).
        keep = self._check_ids("tgt_ids", tgt_ids, self.config.tgt_vocab_size, tgt_padding_mask, default_keep=False)
        h = self.decoder(self.tgt_embed(tgt_ids), keep, memory=memory, memory_keep=src_keep)
        return self._logits(h)

    # --------------------------------------------------------------------------------------------
    # Incremental decoding
    # --------------------------------------------------------------------------------------------

    def decode_step_cached(self, y: torch.Tensor, memory: torch.Tensor, src_keep: torch.Tensor,
                           caches: list[tuple[KVCache, KVCache]], offset: int) -> torch.Tensor:
        """Logits (B, t, V) of t new target positions y (B, t), given the caches of the ``offset``
        before them (the decoder's relative position bias reads the offset from the caches)."""
        h = self.decoder(self.tgt_embed(y), memory=memory, memory_keep=src_keep, kv_caches=caches)
        return self._logits(h)

    def new_decoder_cache(self) -> list[tuple[KVCache, KVCache]]:
        """Empty (self-attention, cross-attention) caches, one pair per decoder layer."""
        return self.decoder.new_cache()


# name: (d_model, d_kv, d_ff, num_layers, num_heads, description). Vocabulary 32,128 (SentencePiece), tied.
T5_CONFIGS = {
    "t5_small": (512, 64, 2048, 6, 8, "T5-Small (Raffel et al. 2019): 6+6 layers, d_model 512, 60.5M parameters"),
    "t5_base": (768, 64, 3072, 12, 12, "T5-Base (Raffel et al. 2019): 12+12 layers, d_model 768, 222.9M parameters"),
}


def _register(name: str, row: tuple) -> None:
    d_model, d_kv, d_ff, layers, heads, description = row
    defaults = dict(d_model=d_model, d_kv=d_kv, d_ff=d_ff, num_layers=layers, num_decoder_layers=layers,
                    num_heads=heads)

    @register_model(name, family="transformer", description=description)
    def builder(**config) -> T5:
        return T5(build_config(T5Config, defaults, config))


for _name, _row in T5_CONFIGS.items():
    _register(_name, _row)


@register_model("t5", family="transformer",
                description="T5 encoder-decoder of any size (defaults: T5-Small's shape); Hugging Face T5 loads as it")
def t5(**config) -> T5:
    return T5(build_config(T5Config, {}, config))


# ------------------------------------------------------------------------------------------------
# Hugging Face checkpoints: config.json ("model_type": "t5") + model.safetensors / pytorch_model.bin
# ------------------------------------------------------------------------------------------------

_HF_FEED_FORWARD = {"relu": "relu", "gated-gelu": "gated-gelu"}
_HF_BLOCK = re.compile(r"(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.(.+)")
_HF_ATTENTION = {"q": "W_q", "k": "W_k", "v": "W_v", "o": "W_o"}
_HF_FFN = {"wi": "0", "wo": "3"}                           # FeedForward (a Sequential): W_1, W_2
_HF_GATED_FFN = {"wi_0": "W_1", "wi_1": "V", "wo": "W_2"}  # GatedFeedForward


def hf_t5_config(hf: dict, state: dict[str, torch.Tensor]) -> dict:
    """Our config fields from a Hugging Face T5 config.json and the tensors present."""
    proj = hf.get("feed_forward_proj", "relu")
    if proj not in _HF_FEED_FORWARD:
        raise CheckpointError(f"feed_forward_proj must be one of {sorted(_HF_FEED_FORWARD)}, got {proj!r}")
    shared = state.get("shared.weight")
    head = state.get("lm_head.weight")
    # The weights decide: a separate lm_head that differs from the shared table is an untied head (v1.1).
    tied = head is None or (shared is not None and head.shape == shared.shape and torch.equal(head, shared))
    # Older configs say tie_word_embeddings; transformers 5 writes scale_decoder_outputs beside it.
    scale = hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True) is not False)
    pad = hf.get("pad_token_id", 0)
    pad = 0 if pad is None else pad
    eos = hf.get("eos_token_id", 1)
    eos = eos[0] if isinstance(eos, list) else (1 if eos is None else eos)
    start = hf.get("decoder_start_token_id")
    return dict(
        src_vocab_size=hf["vocab_size"], tgt_vocab_size=hf["vocab_size"], share_vocab=True, tie_output=tied,
        scale_output=bool(scale), d_model=hf["d_model"], d_kv=hf["d_kv"], d_ff=hf["d_ff"],
        num_layers=hf["num_layers"], num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
        num_heads=hf["num_heads"], num_buckets=hf.get("relative_attention_num_buckets", 32),
        max_distance=hf.get("relative_attention_max_distance", 128), feed_forward=_HF_FEED_FORWARD[proj],
        dropout=hf.get("dropout_rate", 0.1), layer_norm_eps=hf.get("layer_norm_epsilon", 1e-6),
        pad_id=pad, bos_id=pad if start is None else start, eos_id=eos,
        init_factor=hf.get("initializer_factor", 1.0),
    )


def hf_to_archlab_state_dict(hf_state: dict[str, torch.Tensor], gated: bool) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face T5 state_dict to ours; every tensor is placed, checked, or an error.

    Copies of the shared table (``encoder.embed_tokens``, ``decoder.embed_tokens``, a tied
    ``lm_head``) are checked for equality and dropped. Hugging Face's unused cross-attention bias
    table (``decoder.block.0.layer.1.EncDecAttention.relative_attention_bias``) is dropped.
    """
    shared = hf_state.get("shared.weight")
    if shared is None:
        raise CheckpointError("T5 checkpoint has no shared.weight (the token embedding table)")
    ours: dict[str, torch.Tensor] = {"src_embed.weight": shared}
    unknown = []
    ffn_names = _HF_GATED_FFN if gated else _HF_FFN
    for name, t in hf_state.items():
        block = _HF_BLOCK.fullmatch(name)
        if name == "shared.weight":
            continue
        if name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            if not torch.equal(t, shared):
                raise CheckpointError(f"T5 checkpoint tensor {name} should repeat shared.weight but differs")
        elif name == "lm_head.weight":
            if not (t.shape == shared.shape and torch.equal(t, shared)):
                ours["lm_head.weight"] = t  # an untied head (T5 v1.1); a copy of shared.weight is the tied one
        elif name in ("encoder.final_layer_norm.weight", "decoder.final_layer_norm.weight"):
            ours[name.split(".")[0] + ".final_norm.weight"] = t
        elif block:
            stack, i, sub, rest = block.group(1), block.group(2), int(block.group(3)), block.group(4)
            prefix = f"{stack}.layers.{i}."
            ff_index = 2 if stack == "decoder" else 1
            parts = rest.split(".")
            if rest == "SelfAttention.relative_attention_bias.weight" and sub == 0 and i == "0":
                ours[f"{stack}.position_bias.weight"] = t
            elif rest == "EncDecAttention.relative_attention_bias.weight":
                continue  # created by Hugging Face's first cross-attention layer, never used
            elif sub == 0 and parts[0] == "SelfAttention" and parts[1] in _HF_ATTENTION and parts[2] == "weight":
                ours[prefix + f"self_attn.{_HF_ATTENTION[parts[1]]}.weight"] = t
            elif sub == 0 and rest == "layer_norm.weight":
                ours[prefix + "self_attn_norm.weight"] = t
            elif (stack == "decoder" and sub == 1 and parts[0] == "EncDecAttention" and parts[1] in _HF_ATTENTION
                  and parts[2] == "weight"):
                ours[prefix + f"cross_attn.{_HF_ATTENTION[parts[1]]}.weight"] = t
            elif stack == "decoder" and sub == 1 and rest == "layer_norm.weight":
                ours[prefix + "cross_attn_norm.weight"] = t
            elif sub == ff_index and parts[0] == "DenseReluDense" and parts[1] in ffn_names and parts[2] == "weight":
                ours[prefix + f"ffn.{ffn_names[parts[1]]}.weight"] = t
            elif sub == ff_index and rest == "layer_norm.weight":
                ours[prefix + "ffn_norm.weight"] = t
            else:
                unknown.append(name)
        else:
            unknown.append(name)
    if unknown:
        raise CheckpointError(f"T5 checkpoint has tensors archlab cannot place: {', '.join(sorted(unknown)[:8])}")
    return ours


@register_checkpoint_format("t5")
def load_hf_t5(path: Path, hf_config: dict, **overrides) -> T5:
    """A Hugging Face T5 directory (T5ForConditionalGeneration, v1.0 or v1.1) as archlab's T5."""
    state = load_state_dict(path)
    try:
        fields = {**hf_t5_config(hf_config, state), **overrides}
        model = T5(build_config(T5Config, {}, fields))
    except KeyError as e:
        raise CheckpointError(f"{path}/config.json lacks the T5 field {e}") from e
    except ConfigError as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}/config.json does not describe a valid T5: {e}") from e
    model.model_name = "t5"
    ours = hf_to_archlab_state_dict(state, gated=FEED_FORWARDS[model.config.feed_forward][1])
    expected = set(model.state_dict())
    if model.config.tie_output:
        expected.discard("lm_head.weight")
    if not model.config.share_vocab:
        raise CheckpointError("Hugging Face T5 checkpoints have one shared embedding table")
    expected.discard("tgt_embed.weight")  # the same table as src_embed
    missing, unexpected = sorted(expected - set(ours)), sorted(set(ours) - expected)
    if missing or unexpected:
        raise CheckpointError(f"T5 checkpoint in {str(path)!r} does not fit its config.json: "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    ref = model.src_embed.weight
    try:
        model.load_state_dict({k: v.to(ref.dtype) for k, v in ours.items()}, strict=False)
    except RuntimeError as e:  # a shape that disagrees with config.json
        raise CheckpointError(f"T5 checkpoint in {str(path)!r} does not fit its config.json: {e}") from e
    return model
