"""Vision Transformer, ViT (Dosovitskiy et al. 2020, "An Image is Worth 16x16 Words").

An image is cut into P x P patches; each patch becomes a token, and a plain Transformer encoder
reads the tokens as if they were words:

    x_p^i  = flatten(patch_i) E + b            E: (P*P*C, D), written as a stride-P convolution
    z_0    = [x_class; x_p^1; ...; x_p^N] + E_pos          N = (H / P) * (W / P) patches
    z'_l   = z_{l-1} + MSA(LN_1(z_{l-1}))                   l = 1..L   (pre-norm)
    z_l    = z'_l + MLP(LN_2(z'_l))                          MLP: Linear, GELU, Linear
    y      = head(LN(z_L^0))                                 the class token's final state

Dimension letters: B batch, C channels, H x W image, P patch size, N patches, D hidden_dim.

Parameter names, shapes and count follow torchvision's ``vit_b_16`` exactly (``class_token``,
``conv_proj``, ``encoder.pos_embedding``, ``encoder.layers.encoder_layer_{i}.{ln_1, self_attention,
ln_2, mlp}``, ``encoder.ln``, ``heads.head``), so its state_dicts load unchanged. The same class,
with other numbers in the table below, gives the small ViTs for 28x28 digits.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn as nn

from archlab.checkpoint import PretrainedMixin
from archlab.errors import check
from archlab.models.interfaces import ImageClassifier
from archlab.nn.attention import MultiHeadAttention
from archlab.nn.feedforward import FeedForward
from archlab.nn.norm import LayerNorm
from archlab.registry import build_config, register_model


@dataclass
class ViTConfig:
    image_size: int = 224
    patch_size: int = 16
    in_channels: int = 3
    num_layers: int = 12
    num_heads: int = 12
    hidden_dim: int = 768
    mlp_dim: int = 3072
    num_classes: int = 1000
    dropout: float = 0.0            # on the embeddings, after attention and inside the MLP
    attention_dropout: float = 0.0  # on the attention weights
    layer_norm_eps: float = 1e-6

    def __post_init__(self):
        for name in ("image_size", "patch_size", "in_channels", "num_layers", "num_heads", "hidden_dim",
                     "mlp_dim", "num_classes"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        check(self.image_size % self.patch_size == 0,
              f"image_size must be a multiple of patch_size={self.patch_size}, got image_size={self.image_size}")
        check(self.hidden_dim % self.num_heads == 0,
              f"hidden_dim must be divisible by num_heads={self.num_heads}, got hidden_dim={self.hidden_dim}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        check(0.0 <= self.attention_dropout < 1.0, f"attention_dropout must be in [0, 1), got {self.attention_dropout}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class EncoderBlock(nn.Module):
    """z' = z + Dropout(MSA(LN_1(z)));  z_out = z' + MLP(LN_2(z'))   (pre-norm, torchvision's names)."""

    def __init__(self, c: ViTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(c.hidden_dim, eps=c.layer_norm_eps)
        self.self_attention = MultiHeadAttention(c.hidden_dim, c.num_heads, dropout=c.attention_dropout,
                                                 batch_first=True)
        self.dropout = nn.Dropout(c.dropout)
        self.ln_2 = LayerNorm(c.hidden_dim, eps=c.layer_norm_eps)
        self.mlp = FeedForward(c.hidden_dim, c.mlp_dim, dropout=c.dropout, activation="gelu")

    def forward(self, z: torch.Tensor, need_weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, weights = self.self_attention.attend(self.ln_1(z), need_weights=need_weights)
        z = z + self.dropout(a)
        return z + self.mlp(self.ln_2(z)), weights


class Encoder(nn.Module):
    """z_0 + E_pos -> L encoder blocks -> LN."""

    def __init__(self, c: ViTConfig):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.empty(1, c.num_patches + 1, c.hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.Sequential(OrderedDict(
            (f"encoder_layer_{i}", EncoderBlock(c)) for i in range(c.num_layers)))
        self.ln = LayerNorm(c.hidden_dim, eps=c.layer_norm_eps)

    def forward(self, z: torch.Tensor, need_weights: bool = False):
        z = self.dropout(z + self.pos_embedding)
        attentions = []
        for layer in self.layers:
            z, weights = layer(z, need_weights=need_weights)
            attentions.append(weights)
        return self.ln(z), attentions


class VisionTransformer(ImageClassifier, PretrainedMixin, nn.Module):
    config_class = ViTConfig
    head_name = "heads.head"

    @classmethod
    def image_classifier_fields(cls, data, config):
        """``image_size``: the images' side rounded up to whole patches (the task resizes to it)."""
        p = config.patch_size
        side = -(-max(data.height, data.width) // p) * p
        return {**super().image_classifier_fields(data, config), "image_size": side}

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.config = c = config
        self.input_size = c.image_size  # the positional table fixes the number of patches
        # Patch embedding: a P x P convolution with stride P is one linear map E per patch.
        self.conv_proj = nn.Conv2d(c.in_channels, c.hidden_dim, kernel_size=c.patch_size, stride=c.patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, c.hidden_dim))
        self.encoder = Encoder(c)
        self.heads = nn.Sequential(OrderedDict(head=nn.Linear(c.hidden_dim, c.num_classes)))
        self._init_weights()

    def _init_weights(self) -> None:
        # As torchvision: LeCun-normal patch projection, Xavier MLPs with tiny biases, a zero head.
        fan_in = self.conv_proj.in_channels * self.conv_proj.kernel_size[0] * self.conv_proj.kernel_size[1]
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        for block in self.encoder.layers:
            for linear in (block.mlp.W_1, block.mlp.W_2):
                nn.init.xavier_uniform_(linear.weight)
                nn.init.normal_(linear.bias, std=1e-6)
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    def check_input(self, x: torch.Tensor) -> None:
        c = self.config
        want = (c.in_channels, c.image_size, c.image_size)
        check(x.dim() == 4 and tuple(x.shape[1:]) == want,
              f"{self.model_name or type(self).__name__} expects images of shape (batch, {want[0]}, {want[1]}, "
              f"{want[2]}) (in_channels={c.in_channels}, image_size={c.image_size}), got {tuple(x.shape)}")

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> patch tokens (B, N, D)."""
        self.check_input(x)
        feature_map = self.conv_proj(x)  # (B, D, H/P, W/P)
        return feature_map.flatten(2).transpose(1, 2)  # (B, N, D)

    def forward_features(self, x: torch.Tensor, need_weights: bool = False):
        """Final (normalised) states of every token, (B, 1 + N, D), class token first.

        With ``need_weights`` also returns the attention weights of each layer, (B, 1 + N, 1 + N).
        """
        tokens = self.patchify(x)
        cls = self.class_token.expand(tokens.size(0), -1, -1)  # (B, 1, D)
        z, attentions = self.encoder(torch.cat([cls, tokens], dim=1), need_weights=need_weights)  # (B, 1+N, D)
        return (z, attentions) if need_weights else z

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from the class token's final state: (B, 1 + N, D) -> (B, num_classes)."""
        return self.heads(features[:, 0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        check(num_classes > 0, f"num_classes must be positive, got {num_classes}")
        self.config.num_classes = num_classes
        ref = self.heads.head.weight
        self.heads.head = nn.Linear(self.config.hidden_dim, num_classes, device=ref.device, dtype=ref.dtype)
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)


# name: (image_size, patch_size, in_channels, num_layers, num_heads, hidden_dim, mlp_dim, num_classes, description)
VIT_CONFIGS = {
    "vit_b_16": (224, 16, 3, 12, 12, 768, 3072, 1000, "ViT-B/16, torchvision's layout (86.6M parameters)"),
    "vit_b_32": (224, 32, 3, 12, 12, 768, 3072, 1000, "ViT-B/32, torchvision's layout (88.2M parameters)"),
    "vit_l_16": (224, 16, 3, 24, 16, 1024, 4096, 1000, "ViT-L/16, torchvision's layout (304.3M parameters)"),
    "vit_l_32": (224, 32, 3, 24, 16, 1024, 4096, 1000, "ViT-L/32, torchvision's layout (306.5M parameters)"),
    "vit_h_14": (224, 14, 3, 32, 16, 1280, 5120, 1000, "ViT-H/14, torchvision's layout (632.0M parameters)"),
    # Small images: 28x28 digits in 7x7 patches (16 tokens); patch_size=4 gives 49 tokens.
    "vit_tiny": (28, 7, 1, 4, 4, 64, 128, 10, "A 4-layer ViT for 28x28 grey digits, 7x7 patches"),
}
_FIELDS = ("image_size", "patch_size", "in_channels", "num_layers", "num_heads", "hidden_dim", "mlp_dim",
           "num_classes")


def _register(name: str, row: tuple) -> None:
    defaults = dict(zip(_FIELDS, row[:-1]))

    @register_model(name, family="transformer", description=row[-1])
    def builder(**config) -> VisionTransformer:
        return VisionTransformer(build_config(ViTConfig, defaults, config))


for _name, _row in VIT_CONFIGS.items():
    _register(_name, _row)
