"""The encoder-decoder Transformer for translation (Vaswani et al. 2017, "Attention Is All You Need").

The encoder reads the whole source sentence at once; the decoder writes the target one token at a
time, attending to its own past (masked self-attention) and to the encoder's output
(cross-attention):

    x_0 = Dropout(E_src[src] * sqrt(d_model) + PE)          PE: sinusoidal positions
    m   = Encoder(x_0)                                       N encoder layers (+ final LayerNorm)
    y_0 = Dropout(E_tgt[tgt] * sqrt(d_model) + PE)
    h   = Decoder(y_0, m)                                    N decoder layers (+ final LayerNorm)
    p(tgt_{t+1} | tgt_<=t, src) = softmax(h_t W_out^T + b_out)   W_out = E_tgt when tied

The default shape is seed 002's ``nn.Transformer(d_model=512, nhead=8, num_encoder_layers=6,
num_decoder_layers=6)``, built from ``archlab.nn.Transformer`` (``model.transformer`` has exactly
torch's parameter names). Source and target may share one vocabulary and embedding table
(``share_vocab``; fixed to True when the data has one vocabulary, as ``span_corruption``'s); the
output projection may reuse the target embeddings (``tie_output``).

Dimension letters: B batch, S source length, T target length, d d_model, V vocabulary size.

Masks: ``src_padding_mask`` / ``tgt_padding_mask`` are boolean (B, S) / (B, T) with archlab's
polarity, True = a real token (may be attended), False = padding. By default they are computed
as ``ids != pad_id``.

Generation (``translate``, ``archlab.models.encoder_decoder``'s) runs the decoder incrementally:
each layer keeps the keys and values of the target positions already written (``archlab.nn.KVCache``)
and computes the encoder's keys and values once, so a step costs one position, not the whole prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from archlab.checkpoint import PretrainedMixin
from archlab.errors import check
from archlab.models.encoder_decoder import AttentionEncoderDecoder
from archlab.models.interfaces import Seq2SeqModel, TextToTextData, TextToTextModel
from archlab.nn.attention import KVCache, causal_mask
from archlab.nn.activations import check_activation
from archlab.nn.positional import SinusoidalPositionalEncoding
from archlab.nn.transformer import Transformer
from archlab.registry import build_config, register_model


@dataclass
class TransformerConfig:
    src_vocab_size: int = 32000
    tgt_vocab_size: int = 32000
    share_vocab: bool = False       # one embedding table for source and target (equal vocabularies)
    tie_output: bool = True         # output projection W_out = target embedding matrix
    d_model: int = 512
    nhead: int = 8
    num_encoder_layers: int = 6
    num_decoder_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1
    activation: str = "relu"
    norm_first: bool = False        # False: post-norm, as in 2017
    layer_norm_eps: float = 1e-5
    max_len: int = 1024             # longest source or target the positional table covers
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2

    def __post_init__(self):
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "nhead", "num_encoder_layers",
                     "num_decoder_layers", "dim_feedforward", "max_len"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        check(self.d_model % self.nhead == 0,
              f"d_model must be divisible by nhead={self.nhead}, got d_model={self.d_model}")
        check(self.d_model % 2 == 0, f"d_model must be even (sinusoidal positions), got {self.d_model}")
        check(not self.share_vocab or self.src_vocab_size == self.tgt_vocab_size,
              f"share_vocab=True needs src_vocab_size == tgt_vocab_size, got {self.src_vocab_size} "
              f"and {self.tgt_vocab_size}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        check_activation(self.activation)
        vocab = min(self.src_vocab_size, self.tgt_vocab_size)
        for name in ("pad_id", "bos_id", "eos_id"):
            check(0 <= getattr(self, name) < vocab,
                  f"{name} must be in [0, {vocab}) (the smaller vocabulary), got {getattr(self, name)}")


class Seq2SeqTransformer(AttentionEncoderDecoder, Seq2SeqModel, TextToTextModel, PretrainedMixin, nn.Module):
    config_class = TransformerConfig
    positions_field = "max_len"

    @classmethod
    def text_to_text_fields(cls, data: TextToTextData, config: TransformerConfig) -> dict:
        """One vocabulary on both sides (span corruption): one embedding table."""
        return {**super().text_to_text_fields(data, config), "share_vocab": True}

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = c = config
        self.transformer = Transformer(
            d_model=c.d_model, nhead=c.nhead, num_encoder_layers=c.num_encoder_layers,
            num_decoder_layers=c.num_decoder_layers, dim_feedforward=c.dim_feedforward, dropout=c.dropout,
            activation=c.activation, layer_norm_eps=c.layer_norm_eps, batch_first=True, norm_first=c.norm_first)
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_embed = self.src_embed if c.share_vocab else nn.Embedding(c.tgt_vocab_size, c.d_model,
                                                                            padding_idx=c.pad_id)
        self.positions = SinusoidalPositionalEncoding(c.d_model, max_len=c.max_len)
        self.dropout = nn.Dropout(c.dropout)
        self.output = nn.Linear(c.d_model, c.tgt_vocab_size)
        # Embeddings ~ N(0, 1/d): scaled by sqrt(d) they enter the model with unit variance.
        for emb in dict.fromkeys((self.src_embed, self.tgt_embed)):  # in order (a set's follows addresses)
            nn.init.normal_(emb.weight, std=c.d_model ** -0.5)
            with torch.no_grad():
                emb.weight[c.pad_id].zero_()
        nn.init.zeros_(self.output.bias)
        if c.tie_output:
            self.output.weight = self.tgt_embed.weight

    # --------------------------------------------------------------------------------------------
    # Teacher-forced forward pass
    # --------------------------------------------------------------------------------------------

    def _embed(self, ids: torch.Tensor, table: nn.Embedding, offset: int = 0) -> torch.Tensor:
        return self.dropout(self.positions(table(ids) * math.sqrt(self.config.d_model), offset=offset))  # (B, L, d)

    def encode(self, src_ids: torch.Tensor, src_padding_mask: torch.Tensor | None = None):
        """Encoder states m (B, S, d) and the source mask (B, S), True = real token."""
        keep = self._check_ids("src_ids", src_ids, self.config.src_vocab_size, src_padding_mask)
        memory = self.transformer.encoder(self._embed(src_ids, self.src_embed), src_key_padding_mask=~keep)
        return memory, keep

    def decode(self, tgt_ids: torch.Tensor, memory: torch.Tensor, src_keep: torch.Tensor,
               tgt_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Next-token logits (B, T, V) for every target prefix, all positions at once."""
        keep = self._check_ids("tgt_ids", tgt_ids, self.config.tgt_vocab_size, tgt_padding_mask)
        T = tgt_ids.size(1)
        # torch's layers take masks with True = masked out: the future, and padding.
        h = self.transformer.decoder(self._embed(tgt_ids, self.tgt_embed), memory,
                                     tgt_mask=~causal_mask(T, device=tgt_ids.device),
                                     tgt_key_padding_mask=~keep, memory_key_padding_mask=~src_keep)
        return self.output(h)

    # --------------------------------------------------------------------------------------------
    # Incremental decoding
    # --------------------------------------------------------------------------------------------

    def decode_step_cached(self, y: torch.Tensor, memory: torch.Tensor, src_keep: torch.Tensor,
                           caches: list[tuple[KVCache, KVCache]], offset: int) -> torch.Tensor:
        """Logits (B, t, V) of t new target positions, given the caches of the ``offset`` before them.

        ``caches`` (from ``self.transformer.decoder.new_cache()``): per decoder layer, the
        self-attention keys/values so far (the new ones are appended) and the encoder memory's
        projected keys/values (computed on the first step, reused after).
        """
        x = self._embed(y, self.tgt_embed, offset=offset)  # (B, t, d)
        h = self.transformer.decoder(x, memory, memory_key_padding_mask=~src_keep, tgt_is_causal=True,
                                     kv_caches=caches)
        return self.output(h)

    def new_decoder_cache(self) -> list[tuple[KVCache, KVCache]]:
        """Empty (self-attention, cross-attention) caches, one pair per decoder layer."""
        return self.transformer.decoder.new_cache()


@register_model("transformer", family="transformer",
                description="Encoder-decoder Transformer for translation (base: d_model 512, 8 heads, 6+6 layers)")
def transformer(**config) -> Seq2SeqTransformer:
    return Seq2SeqTransformer(build_config(TransformerConfig, {}, config))
