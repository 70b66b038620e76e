"""Sequence classification with a recurrent encoder: one label for a whole sequence.

The RNN reads x_1..x_T (token embeddings, or feature vectors such as the rows of an image) into
states h_1..h_T (for a bidirectional RNN h_t = [h_t^fwd ; h_t^bwd]), then one vector summarises
the sequence and a linear layer scores the classes:

    final       z = h_T                       the final state, h_n of the last layer
    mean        z = (1/T) sum_t h_t           over the valid steps only
    max         z = max_t h_t                 elementwise, over the valid steps only
    attention   z = sum_t alpha_t h_t,  alpha = softmax_t(v^T tanh(W_1 q + W_2 h_t))
                                              a learned query q (Yang et al. 2016, "Hierarchical
                                              Attention Networks"; Bahdanau's additive score)
    logits = W_y dropout(z) + b_y

Variable lengths: a padded batch (right padding) is packed before the RNN, so padded steps never
enter the recurrence, and every pooling ignores them; appending padding never changes a result.

Bidirectional "final" is h_n, not ``output[:, -1]``: the forward half of h_n is the state after
the last *valid* step, the backward half the state after reading the whole sequence back to step
1. ``output[:, -1]`` holds the backward direction after one step only (and zeros on padded rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from archlab.checkpoint import PretrainedMixin
from archlab.errors import check
from archlab.models.interfaces import DEFAULT_SEQ_LEN, ImageClassifier, TokenClassifier, example_floats
from archlab.nn.sequence import check_cell, check_token_ids, lengths_from_mask, recurrent_layer, run_padded
from archlab.nn.seq_attention import AdditiveAttention, lengths_to_mask
from archlab.registry import build_config, register_model

POOLINGS = ("final", "mean", "max", "attention")


@dataclass
class SeqClassifierConfig:
    num_classes: int = 10
    vocab_size: int = 0             # > 0: token ids through an embedding; 0: feature vectors
    embed_dim: int = 64             # token embedding size (vocab_size > 0)
    input_size: int = 28            # features per step (vocab_size == 0); an image row: C * W pixels
    pad_id: int = 0                 # padding token (vocab_size > 0) when no lengths/mask are given
    cell: str = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    pooling: str = "final"          # "final" | "mean" | "max" | "attention"

    def __post_init__(self):
        check_cell(self.cell)
        check(self.pooling in POOLINGS, f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        for name in ("num_classes", "embed_dim", "input_size", "hidden_size", "num_layers"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        check(self.vocab_size >= 0, f"vocab_size must be >= 0 (0 = feature input), got {self.vocab_size}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")


class SeqClassifier(TokenClassifier, ImageClassifier, PretrainedMixin, nn.Module):
    """Token ids, feature sequences or images read row by row, into one of K classes."""

    config_class = SeqClassifierConfig
    head_name = "head"

    @classmethod
    def image_classifier_fields(cls, data, config):
        """An image is read row by row: H steps of C * W features."""
        return {"input_size": data.channels * data.width, "num_classes": data.num_classes, "vocab_size": 0}

    def __init__(self, config: SeqClassifierConfig):
        super().__init__()
        self.config = config
        self.uses_tokens = config.vocab_size > 0
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim) if self.uses_tokens else None
        in_size = config.embed_dim if self.uses_tokens else config.input_size
        self.rnn = recurrent_layer(config.cell, in_size, config.hidden_size, config.num_layers,
                                   config.dropout, config.bidirectional)
        self.num_directions = 2 if config.bidirectional else 1
        width = self.num_directions * config.hidden_size
        if config.pooling == "attention":
            self.query = nn.Parameter(torch.randn(width) / width ** 0.5)   # q
            self.attention = AdditiveAttention(width, width)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(width, config.num_classes)                    # W_y, b_y

    def _inputs(self, x: torch.Tensor, lengths, mask):
        """Embedded / checked inputs (B, T, F) and the lengths (B,) or None when nothing is padded."""
        cfg = self.config
        if self.uses_tokens:
            check_token_ids(x, cfg.vocab_size, "x")
            if lengths is None and mask is None:
                mask = x != cfg.pad_id
            x = self.embedding(x)  # (B, T, E)
        else:
            if x.dim() == 4:  # an image (B, C, H, W), read row by row: H steps of C * W features
                x = x.permute(0, 2, 1, 3).flatten(2)  # (B, H, C, W) -> (B, T=H, F=C*W)
            check(x.dim() == 3 and x.shape[-1] == cfg.input_size,
                  f"x must be (B, T, input_size={cfg.input_size}) features, got shape {tuple(x.shape)}")
        B, T = x.shape[:2]
        if mask is not None:
            lengths = lengths_from_mask(mask, (B, T))
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=x.device)
            check(tuple(lengths.shape) == (B,), f"lengths must have shape ({B},), got {tuple(lengths.shape)}")
            if bool((lengths == T).all()):
                lengths = None  # nothing padded: no need to pack
        return x, lengths

    def check_input(self, x: torch.Tensor) -> None:
        """Token ids, features or an image: ``_inputs`` checks whichever it is given."""

    def _encode(self, x: torch.Tensor, lengths, mask) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The pooled summary z (B, D * H) of a batch, and the pooling weights alpha (B, T) or None."""
        x, lengths = self._inputs(x, lengths, mask)
        B, T = x.shape[:2]
        if lengths is None:
            out, state = self.rnn(x)                                   # (B, T, D * H)
            valid = torch.ones(B, T, dtype=torch.bool, device=x.device)
        else:
            out, state = run_padded(self.rnn, x, lengths)              # (B, T, D * H), zeros on padding
            valid = lengths_to_mask(lengths, T)                        # (B, T)
        h_n = state[0] if isinstance(state, tuple) else state          # (L * D, B, H)

        alpha, pooling = None, self.config.pooling
        if pooling == "final":
            # the last layer's directions, side by side: (D, B, H) -> (B, D * H)
            z = h_n[-self.num_directions:].transpose(0, 1).reshape(B, -1)
        elif pooling == "mean":
            z = (out * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).to(out.dtype)
        elif pooling == "max":
            z = out.masked_fill(~valid[..., None], float("-inf")).amax(1)
        else:
            z, alpha = self.attention(self.query.to(out.dtype).expand(B, -1), out, mask=valid)
        return z, alpha

    def forward_features(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                         mask: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled summary z (B, D * H) that the head classifies."""
        return self._encode(x, lengths, mask)[0]

    def forward_head(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(z))                                 # (B, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                return_attention: bool = False):
        """x: token ids (B, T), features (B, T, input_size), or an image (B, C, H, W) read row by row
        (input_size = C * W) -> logits (B, num_classes).

        Padding: ``lengths`` (B,), or ``mask`` (B, T) boolean with True on real steps; token input
        without either treats ``pad_id`` as padding. ``return_attention=True`` also returns the
        pooling weights alpha (B, T) (``"attention"`` pooling; None otherwise).
        """
        z, alpha = self._encode(x, lengths, mask)
        logits = self.forward_head(z)
        return (logits, alpha) if return_attention else logits

    def token_logits(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self(input_ids, mask=mask)

    def example_input(self, batch_size: int = 1, seq_len: int | None = None) -> tuple[torch.Tensor, ...]:
        c = self.config
        if c.vocab_size > 0:
            return TokenClassifier.example_input(self, batch_size, seq_len)
        return (example_floats((batch_size, seq_len or DEFAULT_SEQ_LEN, c.input_size)),)


@register_model("rnn_classifier", family="rnn",
                description="Sequence classifier: RNN/LSTM/GRU encoder, final/mean/max/attention pooling")
def rnn_classifier(**config) -> SeqClassifier:
    return SeqClassifier(build_config(SeqClassifierConfig, {}, config))
