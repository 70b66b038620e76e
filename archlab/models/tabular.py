"""Neural networks for tables: an MLP with category embeddings, and the FT-Transformer.

Both read a row as ``(x_num, x_cat)``: n standardised numeric features (B, n) and m category codes
(B, m) (``archlab.data.tabular.TabularEncoder``), and return (B, num_outputs): class logits, or one
regression value. Dimension letters: B batch, n numeric, m categorical, k = n + m, d width.

**MLP with embeddings** (the dense baseline of tabular deep learning; Guo & Berkhahn 2016, "Entity
Embeddings of Categorical Variables"): each categorical column gets its own embedding table, and the
network is the plain ``archlab.models.mlp`` stack over the numeric features and the embeddings::

    h_0 = [x_num; E_1[c_1]; ...; E_m[c_m]]              (B, n + m * embed_dim)
    h_l = Dropout(ReLU(W_l h_{l-1} + b_l))               l = 1..L
    y   = W_out h_L + b_out

**FT-Transformer** (Gorishniy, Rubachev, Khrulkov & Babenko 2021, "Revisiting Deep Learning Models
for Tabular Data"): every feature becomes a token (``archlab.nn.tabular.FeatureTokenizer``:
numerical x_j -> b_j + x_j W_j, categorical c_j -> b_j + e_{c_j}^T W_j), a [CLS] token goes in
front, and a pre-norm Transformer encoder (``archlab.nn.TransformerEncoder``) lets every feature
attend to every other; the prediction reads the [CLS] token's final state::

    T_0 = [CLS; FeatureTokenizer(x_num, x_cat)]         (B, 1 + k, d)
    T_l = T'_l + FFN(LN(T'_l)),  T'_l = T_{l-1} + MHSA(LN(T_{l-1}))      l = 1..L
    y   = W_out ReLU(LN(T_L[CLS])) + b_out

Differences from the paper, kept small: the feed-forward activation is GELU (the paper's ReGLU is
not among ``archlab.nn``'s activations), one ``dropout`` serves attention, feed-forward and
residual, the [CLS] token comes first instead of last (attention has no order, so this changes
nothing), and the first block keeps its first LayerNorm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from archlab.checkpoint import PretrainedMixin
from archlab.errors import check
from archlab.models.interfaces import TabularModel
from archlab.models.mlp import MLP, MLPConfig
from archlab.nn.norm import LayerNorm
from archlab.nn.tabular import CategoricalEmbedding, FeatureTokenizer
from archlab.nn.transformer import TransformerEncoder, TransformerEncoderLayer
from archlab.registry import build_config, register_model


def _check_table(num_numeric: int, cat_cardinalities: tuple[int, ...], num_outputs: int) -> None:
    check(num_numeric >= 0, f"num_numeric must be >= 0, got {num_numeric}")
    check(all(k >= 1 for k in cat_cardinalities), f"cat_cardinalities must be >= 1 each, got {cat_cardinalities}")
    check(num_numeric + len(cat_cardinalities) > 0, "a table needs at least one feature column: num_numeric=0 and no "
                                                    "cat_cardinalities")
    check(num_outputs >= 1, f"num_outputs must be >= 1 (classes, or 1 for regression), got {num_outputs}")


def _check_row(model: nn.Module, x_num: torch.Tensor, x_cat: torch.Tensor) -> None:
    c = model.config
    check(x_num.dim() == 2 and x_num.shape[1] == c.num_numeric and x_cat.dim() == 2
          and x_cat.shape[1] == len(c.cat_cardinalities) and x_num.shape[0] == x_cat.shape[0],
          f"{type(model).__name__} expects x_num (batch, {c.num_numeric}) and x_cat (batch, "
          f"{len(c.cat_cardinalities)}), got {tuple(x_num.shape)} and {tuple(x_cat.shape)}")


# --------------------------------------------------------------------------------------------
# MLP with embeddings


@dataclass
class TabularMLPConfig:
    num_numeric: int = 8                      # n: numeric features (missing-value indicators included)
    cat_cardinalities: tuple[int, ...] = ()   # K_j: codes of each categorical column (0 = missing / unseen)
    num_outputs: int = 2                      # classes, or 1 for regression
    embed_dim: int = 8                        # width of every category embedding
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1

    def __post_init__(self):
        _check_table(self.num_numeric, self.cat_cardinalities, self.num_outputs)
        check(self.embed_dim > 0, f"embed_dim must be positive, got {self.embed_dim}")


class TabularMLP(TabularModel, PretrainedMixin, nn.Module):
    config_class = TabularMLPConfig

    def __init__(self, config: TabularMLPConfig):
        super().__init__()
        self.config = c = config
        self.embed = CategoricalEmbedding(c.cat_cardinalities, c.embed_dim) if c.cat_cardinalities else None
        width = c.num_numeric + len(c.cat_cardinalities) * c.embed_dim
        self.body = MLP(MLPConfig(in_features=width, num_classes=c.num_outputs, hidden=c.hidden, dropout=c.dropout))

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        _check_row(self, x_num, x_cat)
        parts = [x_num]
        if self.embed is not None:
            parts.append(self.embed(x_cat).flatten(1))  # (B, m, e) -> (B, m * e)
        return self.body(torch.cat(parts, dim=1))  # h_0: (B, n + m * e) -> (B, num_outputs)


# --------------------------------------------------------------------------------------------
# FT-Transformer


@dataclass
class FTTransformerConfig:
    num_numeric: int = 8
    cat_cardinalities: tuple[int, ...] = ()
    num_outputs: int = 2
    d_token: int = 64            # d: width of every feature token
    num_layers: int = 3          # L: Transformer blocks
    num_heads: int = 8
    dim_feedforward: int = 0     # FFN width; 0 = 2 * d_token
    dropout: float = 0.1
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        _check_table(self.num_numeric, self.cat_cardinalities, self.num_outputs)
        for name in ("d_token", "num_layers", "num_heads"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        check(self.d_token % self.num_heads == 0,
              f"d_token must be divisible by num_heads={self.num_heads}, got d_token={self.d_token}")
        check(self.dim_feedforward >= 0, f"dim_feedforward must be >= 0 (0 = 2 * d_token), got {self.dim_feedforward}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


class FTTransformer(TabularModel, PretrainedMixin, nn.Module):
    config_class = FTTransformerConfig

    def __init__(self, config: FTTransformerConfig):
        super().__init__()
        self.config = c = config
        d = c.d_token
        self.tokenizer = FeatureTokenizer(c.num_numeric, c.cat_cardinalities, d)
        bound = 1 / math.sqrt(d)
        self.cls_token = nn.Parameter(torch.empty(1, 1, d).uniform_(-bound, bound))
        layer = TransformerEncoderLayer(d, c.num_heads, c.dim_feedforward or 2 * d, c.dropout, activation="gelu",
                                        layer_norm_eps=c.layer_norm_eps, batch_first=True, norm_first=True)
        self.encoder = TransformerEncoder(layer, c.num_layers, norm=LayerNorm(d, eps=c.layer_norm_eps))
        self.head = nn.Linear(d, c.num_outputs)

    def forward_features(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        """Final states of every token (B, 1 + k, d), [CLS] first."""
        _check_row(self, x_num, x_cat)
        tokens = self.tokenizer(x_num, x_cat)                       # (B, k, d)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)        # (B, 1, d)
        return self.encoder(torch.cat([cls, tokens], dim=1))  # (B, 1 + k, d)

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.forward_features(x_num, x_cat)[:, 0]))  # (B, num_outputs)


# --------------------------------------------------------------------------------------------
# Registered constructors


@register_model("tabular_mlp", family="mlp",
                description="MLP for tables: numeric features + category embeddings -> [Linear, ReLU, Dropout] x L")
def tabular_mlp(**config) -> TabularMLP:
    return TabularMLP(build_config(TabularMLPConfig, {}, config))


@register_model("ft_transformer", family="transformer",
                description="FT-Transformer (Gorishniy et al. 2021): a token per feature, [CLS], Transformer encoder")
def ft_transformer(**config) -> FTTransformer:
    return FTTransformer(build_config(FTTransformerConfig, {}, config))
