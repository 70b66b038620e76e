"""BERT, the encoder-only Transformer (Devlin et al. 2018, "BERT: Pre-training of Deep
Bidirectional Transformers for Language Understanding").

Every token sees every other token (no causal mask): BERT reads, it does not write.

    e_t   = LN(W_word[x_t] + P[t] + W_type[s_t])           embeddings, then dropout
    h^l   = EncoderLayer(h^{l-1}),  l = 1..L               post-norm, GELU feed-forward:
              a = LN(h + Dropout(MultiHead(h, h, h)))       (keys at padding positions masked out)
              h = LN(a + Dropout(W_2 GELU(W_1 a + b_1) + b_2))
    pooled = tanh(W_p h^L_0 + b_p)                          the first ([CLS]) token
    MLM:    logits_t = LN(GELU(W_t h^L_t + b_t)) W_word^T + b   decoder tied to the word embeddings
    classification: logits = W_c Dropout(pooled) + b_c

Dimension letters: B batch, T sequence length, H hidden_size, V vocab_size.

``head`` chooses what is built on top of the encoder ("none", "mlm", "classification"), ``pooler``
whether the pooler is; one class covers BertModel, BertForMaskedLM and
BertForSequenceClassification. Hugging Face checkpoints of all three load unchanged through
``archlab.from_pretrained(dir)`` (the mapping is at the end of this file).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.checkpoint import PretrainedMixin, load_state_dict, register_checkpoint_format
from archlab.errors import CheckpointError, ConfigError, check
from archlab.nn.activations import HF_ACTIVATIONS, check_activation, make_activation
from archlab.nn.attention import MultiHeadAttention, PackedTokens
from archlab.nn.norm import LayerNorm
from archlab.nn.positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from archlab.nn.transformer import TransformerEncoder, TransformerEncoderLayer
from archlab.models.interfaces import IGNORE_INDEX, MaskedLM, TokenClassifier, example_ids, masked_lm_loss
from archlab.registry import build_config, create_model, register_model

HEADS = ("none", "mlm", "classification")
POSITIONS = ("learned", "sinusoidal", "none")


@dataclass
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    position: str = "learned"       # P[t]: "learned" (BERT), "sinusoidal" (Vaswani et al. 2017, fixed) or
                                    # "none": no position signal, so the encoder cannot tell word order
    type_vocab_size: int = 2
    activation: str = "gelu"
    dropout: float = 0.1            # embeddings, residual branches, classifier (HF hidden_dropout_prob)
    attention_dropout: float = 0.1  # attention weights (HF attention_probs_dropout_prob)
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    pooler: bool = True             # build the pooler (dense + tanh on the first token)
    head: str = "none"              # "none" | "mlm" | "classification"
    num_labels: int = 2             # classification head outputs
    classifier_dropout: float | None = None  # None: use `dropout`
    init_std: float = 0.02

    def __post_init__(self):
        for name in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size", "num_labels"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        check(self.hidden_size % self.num_heads == 0,
              f"hidden_size must be divisible by num_heads={self.num_heads}, got hidden_size={self.hidden_size}")
        check_activation(self.activation)
        check(self.head in HEADS, f"head must be one of {HEADS}, got {self.head!r}")
        check(self.position in POSITIONS, f"position must be one of {POSITIONS}, got {self.position!r}")
        check(self.head != "classification" or self.pooler,
              "head='classification' classifies the pooled output and needs pooler=True, got pooler=False")
        for name in ("dropout", "attention_dropout"):
            check(0.0 <= getattr(self, name) < 1.0, f"{name} must be in [0, 1), got {getattr(self, name)}")
        check(self.classifier_dropout is None or 0.0 <= self.classifier_dropout < 1.0,
              f"classifier_dropout must be None or in [0, 1), got {self.classifier_dropout}")
        check(0 <= self.pad_token_id < self.vocab_size,
              f"pad_token_id must be in [0, vocab_size={self.vocab_size}), got {self.pad_token_id}")


@dataclass
class BertOutput:
    last_hidden_state: torch.Tensor                    # (B, T, H)
    pooler_output: torch.Tensor | None = None          # (B, H) when pooler=True
    logits: torch.Tensor | None = None                 # (B, T, V) mlm, (B, num_labels) classification
    loss: torch.Tensor | None = None                   # when labels are given
    attentions: tuple[torch.Tensor, ...] | None = None  # per layer (B, nh, T, T), when asked


class BertEmbeddings(nn.Module):
    """e_t = Dropout(LN(W_word[x_t] + P[t] + W_type[s_t])).

    P[t] is learned (BERT), sinusoidal, or absent (``position="none"``): then e_t depends on the
    token alone and the encoder is permutation-equivariant -- permuting the tokens permutes the
    outputs, and the [CLS] output cannot depend on word order.
    """

    def __init__(self, c: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        if c.position == "learned":
            self.position_embeddings = LearnedPositionalEmbedding(c.max_position_embeddings, c.hidden_size,
                                                                  init_std=c.init_std)
        elif c.position == "sinusoidal":
            self.position_embeddings = SinusoidalPositionalEncoding(c.hidden_size, c.max_position_embeddings)
        else:
            self.position_embeddings = nn.Identity()
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.layer_norm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        e = self.position_embeddings(self.word_embeddings(input_ids))  # (B, T, H): word + position
        e = e + self.token_type_embeddings(token_type_ids)
        return self.dropout(self.layer_norm(e))


class BertPooler(nn.Module):
    """pooled = tanh(W_p h_0 + b_p): the [CLS] token's state, summarising the sequence."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(h[:, 0]))


class MaskedLMHead(nn.Module):
    """logits_t = LN(act(W_t h_t + b_t)) W_word^T + b: the output matrix is the word embedding matrix."""

    def __init__(self, c: BertConfig):
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)
        self.activation = make_activation(c.activation)
        self.layer_norm = LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(c.vocab_size))

    def forward(self, h: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(self.layer_norm(self.activation(self.dense(h))), word_embeddings, self.bias)  # (B, T, V)


class Bert(MaskedLM, TokenClassifier, PretrainedMixin, nn.Module):
    """BERT's encoder with a choice of head (``head``): none (states and pooled output), the masked
    language model (a ``MaskedLM``) or a sequence classifier (a ``TokenClassifier``)."""

    config_class = BertConfig

    @classmethod
    def masked_lm_fields(cls, data, config):
        return {"vocab_size": data.vocab_size, "pad_token_id": data.pad_id, "head": "mlm"}

    @classmethod
    def token_classifier_fields(cls, data, config):
        return {"vocab_size": data.vocab_size, "pad_token_id": data.pad_id, "num_labels": data.num_classes,
                "head": "classification"}

    def masked_lm_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        check(self.mlm_head is not None, f"masked_lm_logits needs head='mlm', got head={self.config.head!r}")
        return self(input_ids).logits  # (B, T, V)

    def token_logits(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check(self.classifier is not None,
              f"token_logits needs head='classification', got head={self.config.head!r}")
        return self(input_ids, attention_mask=mask).logits  # (B, num_labels)

    def example_input(self, batch_size: int = 1, seq_len: int | None = None) -> tuple[torch.Tensor, ...]:
        T = seq_len or min(64, self.config.max_position_embeddings)
        return (example_ids(self.config.vocab_size, (batch_size, T), avoid=(self.config.pad_token_id,)),)

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = c = config
        self.embeddings = BertEmbeddings(c)
        layer = TransformerEncoderLayer(c.hidden_size, c.num_heads, dim_feedforward=c.intermediate_size,
                                        dropout=c.dropout, activation=c.activation, layer_norm_eps=c.layer_norm_eps,
                                        batch_first=True, norm_first=False)
        layer.self_attn.dropout = c.attention_dropout  # BERT drops attention weights at their own rate
        self.encoder = TransformerEncoder(layer, c.num_layers)
        self.pooler = BertPooler(c) if c.pooler else None
        self.mlm_head = MaskedLMHead(c) if c.head == "mlm" else None
        if c.head == "classification":
            p = c.dropout if c.classifier_dropout is None else c.classifier_dropout
            self.classifier = nn.Sequential(nn.Dropout(p), nn.Linear(c.hidden_size, c.num_labels))
        else:
            self.classifier = None
        self.apply(self._init_weights)

    def _init_weights(self, m: nn.Module) -> None:
        # BERT's initialisation: N(0, 0.02) for every matrix and embedding, zero biases.
        std = self.config.init_std
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, MultiHeadAttention):  # W_q, W_k, W_v packed in one (3H, H) matrix
            nn.init.normal_(m.in_proj_weight, std=std)
            nn.init.zeros_(m.in_proj_bias)

    def _check_inputs(self, input_ids, attention_mask, token_type_ids) -> None:
        c = self.config
        check(input_ids.dim() == 2 and not input_ids.is_floating_point(),
              f"input_ids must be integer token ids of shape (batch, length), got {input_ids.dtype} "
              f"of shape {tuple(input_ids.shape)}")
        T = input_ids.size(1)
        check(T <= c.max_position_embeddings,
              f"input_ids has length {T}, BERT expects at most max_position_embeddings={c.max_position_embeddings}")
        if input_ids.numel():
            lo, hi = int(input_ids.min()), int(input_ids.max())
            check(lo >= 0 and hi < c.vocab_size,
                  f"input_ids must be in [0, vocab_size={c.vocab_size}), got values in [{lo}, {hi}]")
        for name, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if t is not None:
                check(tuple(t.shape) == tuple(input_ids.shape),
                      f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(t.shape)}")
        if attention_mask is not None and attention_mask.dtype != torch.bool:
            # HF's convention: 1 = a real token, 0 = padding; anything else would be read as padding.
            check(bool(((attention_mask == 0) | (attention_mask == 1)).all()),
                  f"attention_mask must hold 0 (padding) and 1 (a real token) only, or be boolean, got values "
                  f"{sorted(set(attention_mask.flatten().tolist()))[:5]}")
        if token_type_ids is not None and token_type_ids.numel():
            lo, hi = int(token_type_ids.min()), int(token_type_ids.max())
            check(lo >= 0 and hi < c.type_vocab_size,
                  f"token_type_ids must be in [0, type_vocab_size={c.type_vocab_size}), got values in [{lo}, {hi}]")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, *, labels: torch.Tensor | None = None,
                output_attentions: bool = False) -> BertOutput:
        """input_ids (B, T); attention_mask (B, T), 1/True = a real token, 0/False = padding (HF's convention).

        ``labels``: (B, T) token ids for the MLM head (``-100`` = not scored), or (B,) class ids for
        the classification head; the output then carries the cross-entropy ``loss``.
        ``output_attentions``: each layer's attention weights (B, nh, T, T), from a second call of
        the layer's attention module on the same input, so the layers keep their fused kernel
        (identical weights in eval mode; in training the dropout draws differ).
        """
        self._check_inputs(input_ids, attention_mask, token_type_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        h = self.embeddings(input_ids, token_type_ids)  # (B, T, H)
        # torch's layers take a key padding mask with True = masked out: the opposite of attention_mask.
        padding = None if attention_mask is None else ~attention_mask.bool()  # (B, T)
        attentions = []
        if padding is not None and not self.training and not output_attentions and bool(padding.any()):
            # Inference on a padded batch: the layers run on the real tokens only (the padding's
            # share of every matrix product is skipped; padding positions come out as zeros), their
            # weights packed once for the CPU's kernels (archlab.nn.inference).
            tokens = PackedTokens(~padding)
            packed = tokens.pack(h)  # (N, H): the real tokens, row by row
            for layer in self.encoder.layers:
                packed = layer.forward_packed(packed, tokens)
            h = tokens.unpack(packed)  # (B, T, H)
        else:
            for layer in self.encoder.layers:
                if output_attentions:
                    # The layer's own attention module on the layer's input (post-norm: the input itself).
                    keep = None if padding is None else ~padding[:, None, None, :]  # (B, 1, 1, T)
                    attentions.append(layer.self_attn.attend(h, mask=keep, need_weights=True,
                                                             average_attn_weights=False)[1])
                h = layer(h, src_key_padding_mask=padding)
        out = BertOutput(last_hidden_state=h, attentions=tuple(attentions) if output_attentions else None)
        if self.pooler is not None:
            out.pooler_output = self.pooler(h)
        if self.mlm_head is not None:
            out.logits = self.mlm_head(h, self.embeddings.word_embeddings.weight)
        elif self.classifier is not None:
            out.logits = self.classifier(out.pooler_output)
        if labels is not None:
            out.loss = self._loss(out.logits, labels, input_ids)
        return out

    def _loss(self, logits: torch.Tensor | None, labels: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        check(logits is not None, f"labels need a head that makes logits, got head={self.config.head!r}")
        if self.config.head == "mlm":
            check(tuple(labels.shape) == tuple(input_ids.shape),
                  f"MLM labels must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(labels.shape)}")
            return masked_lm_loss(logits, labels)
        check(tuple(labels.shape) == (input_ids.size(0),),
              f"classification labels must have shape (batch,) = ({input_ids.size(0)},), got {tuple(labels.shape)}")
        return F.cross_entropy(logits.float(), labels)

    def reset_classifier(self, num_labels: int) -> None:
        """A new, freshly initialised classification head with ``num_labels`` outputs."""
        check(self.config.pooler, "reset_classifier needs the pooler: build the model with pooler=True")
        check(num_labels > 0, f"num_labels must be positive, got {num_labels}")
        c = self.config
        c.head, c.num_labels = "classification", num_labels
        ref = self.embeddings.word_embeddings.weight
        p = c.dropout if c.classifier_dropout is None else c.classifier_dropout
        self.classifier = nn.Sequential(nn.Dropout(p), nn.Linear(c.hidden_size, num_labels)).to(ref.device, ref.dtype)
        self.classifier.apply(self._init_weights)
        self.mlm_head = None


def mean_pool(last_hidden_state: torch.Tensor, attention_mask: torch.Tensor, *, normalize: bool = True):
    """Sentence embedding: the mean of the real tokens' states (B, T, H) -> (B, H), L2-normalised.

    The pooling of sentence-transformers models such as all-MiniLM-L6-v2.
    """
    m = attention_mask[..., None].to(last_hidden_state.dtype)  # (B, T, 1)
    pooled = (last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return F.normalize(pooled, dim=-1) if normalize else pooled


def mask_tokens(input_ids: torch.Tensor, *, mask_token_id: int, vocab_size: int, mlm_probability: float = 0.15,
                special_ids: tuple[int, ...] = (), generator: torch.Generator | None = None):
    """BERT's masking for MLM pre-training: returns (corrupted input_ids, labels).

    Each token (other than ``special_ids``) is chosen with probability ``mlm_probability``; a chosen
    token becomes [MASK] 80% of the time, a random token 10%, stays 10%. ``labels`` hold the
    original ids at chosen positions and -100 elsewhere.
    """
    check(0.0 < mlm_probability < 1.0, f"mlm_probability must be in (0, 1), got {mlm_probability}")

    def coin(p: float) -> torch.Tensor:
        return torch.rand(input_ids.shape, generator=generator, device=input_ids.device) < p

    chosen = coin(mlm_probability)
    for s in special_ids:
        chosen &= input_ids != s
    labels = input_ids.masked_fill(~chosen, IGNORE_INDEX)
    to_mask = chosen & coin(0.8)
    to_random = chosen & ~to_mask & coin(0.5)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=input_ids.device)
    corrupted = input_ids.masked_fill(to_mask, mask_token_id)
    corrupted = torch.where(to_random, random_ids, corrupted)
    return corrupted, labels


@register_model("bert", family="transformer",
                description="BERT encoder (base: 12 layers, 768 hidden); head='mlm' or 'classification'")
def bert(**config) -> Bert:
    return Bert(build_config(BertConfig, {}, config))


# ------------------------------------------------------------------------------------------------
# Hugging Face checkpoints: config.json (model_type "bert") + model.safetensors / pytorch_model.bin
# ------------------------------------------------------------------------------------------------


# HF name -> ours, outside the layers.
_HF_NAMES = {
    "embeddings.word_embeddings.weight": "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight": "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight": "embeddings.token_type_embeddings.weight",
    "embeddings.LayerNorm.weight": "embeddings.layer_norm.weight",
    "embeddings.LayerNorm.bias": "embeddings.layer_norm.bias",
    "pooler.dense.weight": "pooler.dense.weight",
    "pooler.dense.bias": "pooler.dense.bias",
    "cls.predictions.transform.dense.weight": "mlm_head.dense.weight",
    "cls.predictions.transform.dense.bias": "mlm_head.dense.bias",
    "cls.predictions.transform.LayerNorm.weight": "mlm_head.layer_norm.weight",
    "cls.predictions.transform.LayerNorm.bias": "mlm_head.layer_norm.bias",
    "cls.predictions.bias": "mlm_head.bias",
    "classifier.weight": "classifier.1.weight",
    "classifier.bias": "classifier.1.bias",
}
# HF name inside encoder.layer.{i} -> ours inside encoder.layers.{i} (torch's TransformerEncoderLayer).
_HF_LAYER_NAMES = {
    "attention.output.dense.weight": "self_attn.out_proj.weight",
    "attention.output.dense.bias": "self_attn.out_proj.bias",
    "attention.output.LayerNorm.weight": "norm1.weight",
    "attention.output.LayerNorm.bias": "norm1.bias",
    "intermediate.dense.weight": "linear1.weight",
    "intermediate.dense.bias": "linear1.bias",
    "output.dense.weight": "linear2.weight",
    "output.dense.bias": "linear2.bias",
    "output.LayerNorm.weight": "norm2.weight",
    "output.LayerNorm.bias": "norm2.bias",
}
_HF_LAYER = re.compile(r"encoder\.layer\.(\d+)\.(.+)")
_HF_QKV = re.compile(r"attention\.self\.(query|key|value)\.(weight|bias)")
# Heads archlab does not build (next-sentence prediction): reported, then left out.
_HF_UNUSED_PREFIXES = ("cls.seq_relationship.",)


def _hf_name(name: str) -> str:
    """Strip the task models' ``bert.`` prefix; old checkpoints call LayerNorm's parameters gamma/beta."""
    name = name.removeprefix("bert.")
    return re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", name))


def hf_to_archlab_state_dict(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face BERT state_dict to ours; every tensor is used, checked, or an error.

    Query/key/value weights of each layer are packed into ``in_proj_weight`` (3H, H) in the order
    W_q, W_k, W_v (torch's layout). Tensors that repeat others (position_ids, the tied MLM decoder
    weight, its bias) are checked for equality and then dropped.
    """
    hf = {_hf_name(k): v for k, v in hf_state.items()}
    ours: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    unknown, unused = [], []
    for name, t in hf.items():
        layer = _HF_LAYER.fullmatch(name)
        if name in _HF_NAMES:
            ours[_HF_NAMES[name]] = t
        elif layer and layer.group(2) in _HF_LAYER_NAMES:
            ours[f"encoder.layers.{layer.group(1)}.{_HF_LAYER_NAMES[layer.group(2)]}"] = t
        elif layer and _HF_QKV.fullmatch(layer.group(2)):
            which, kind = _HF_QKV.fullmatch(layer.group(2)).groups()
            qkv.setdefault((int(layer.group(1)), kind), {})[which] = t
        elif name == "embeddings.position_ids":
            _check_same(name, t.flatten(), torch.arange(t.numel(), dtype=t.dtype))
        elif name == "cls.predictions.decoder.weight":
            _check_same(name, t, hf.get("embeddings.word_embeddings.weight"))
        elif name == "cls.predictions.decoder.bias":
            _check_same(name, t, hf.get("cls.predictions.bias"))
        elif name.startswith(_HF_UNUSED_PREFIXES):
            unused.append(name)
        else:
            unknown.append(name)
    if unknown:
        raise CheckpointError(f"BERT checkpoint has tensors archlab cannot place: {', '.join(sorted(unknown))}")
    for (i, kind), parts in sorted(qkv.items()):
        missing = [w for w in ("query", "key", "value") if w not in parts]
        if missing:
            raise CheckpointError(f"BERT checkpoint layer {i} lacks attention.self.{'/'.join(missing)}.{kind}")
        ours[f"encoder.layers.{i}.self_attn.in_proj_{kind}"] = torch.cat(
            [parts["query"], parts["key"], parts["value"]], dim=0)  # (3H, H) or (3H,): W_q, W_k, W_v
    if unused:
        warnings.warn(f"left out {len(unused)} tensors of a head archlab does not build: {', '.join(sorted(unused))}")
    return ours


def _check_same(name: str, t: torch.Tensor, expected: torch.Tensor | None) -> None:
    if expected is None or t.shape != expected.shape or not torch.equal(t, expected.to(t.dtype)):
        raise CheckpointError(f"BERT checkpoint tensor {name} should repeat another tensor (tied or fixed) but differs")


def hf_bert_config(hf: dict, state: dict[str, torch.Tensor]) -> dict:
    """Our config fields from a Hugging Face BERT config.json and the tensors present."""
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"position_embedding_type must be 'absolute', got {hf['position_embedding_type']!r}")
    if hf.get("is_decoder") or hf.get("add_cross_attention"):
        raise CheckpointError("BERT checkpoints used as decoders (is_decoder / add_cross_attention) are not supported")
    act = hf.get("hidden_act", "gelu")
    if act not in HF_ACTIVATIONS:
        raise CheckpointError(f"hidden_act must be one of {sorted(HF_ACTIVATIONS)}, got {act!r}")
    names = {_hf_name(k) for k in state}
    head = ("mlm" if "cls.predictions.bias" in names
            else "classification" if "classifier.weight" in names else "none")
    fields = dict(
        vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"], num_layers=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"], intermediate_size=hf["intermediate_size"],
        max_position_embeddings=hf["max_position_embeddings"], type_vocab_size=hf.get("type_vocab_size", 2),
        activation=HF_ACTIVATIONS[act], dropout=hf.get("hidden_dropout_prob", 0.1),
        attention_dropout=hf.get("attention_probs_dropout_prob", 0.1), layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
        pad_token_id=hf.get("pad_token_id") or 0, pooler="pooler.dense.weight" in names, head=head,
        classifier_dropout=hf.get("classifier_dropout"),
    )
    if head == "classification":
        fields["num_labels"] = next(t for k, t in state.items() if _hf_name(k) == "classifier.weight").shape[0]
    return fields


@register_checkpoint_format("bert")
def load_hf_bert(path: Path, hf_config: dict, **overrides) -> Bert:
    """A Hugging Face BERT checkpoint directory (BertModel, BertForMaskedLM, BertForSequenceClassification)."""
    state = load_state_dict(path)
    try:
        model = create_model("bert", **{**hf_bert_config(hf_config, state), **overrides})
    except KeyError as e:
        raise CheckpointError(f"{path}/config.json lacks the BERT field {e}") from e
    except ConfigError as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}/config.json does not describe a valid BERT: {e}") from e
    ours = hf_to_archlab_state_dict(state)
    ref = model.embeddings.word_embeddings.weight
    try:
        missing, unexpected = model.load_state_dict({k: v.to(ref.dtype) for k, v in ours.items()}, strict=False)
    except RuntimeError as e:  # a shape that disagrees with config.json
        raise CheckpointError(f"BERT checkpoint in {str(path)!r} does not fit its config.json: {e}") from e
    if missing or unexpected:
        raise CheckpointError(f"BERT checkpoint in {str(path)!r} does not fit the model: "
                              f"missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    return model
