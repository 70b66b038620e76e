"""What a model can do: one small declared interface per capability.

A task trains a model through one of these; a model class says which it implements by
subclassing them, and the registry records it (``archlab list`` shows it), so a task refuses a
model it cannot train with one clear line instead of failing deep inside::

    interface         the tasks that train it      what the task calls
    ImageClassifier   classify                     model(images (B, C, H, W)) -> logits (B, K)
    TokenClassifier   textclass, recall            model.token_logits(ids (B, T), mask (B, T)) -> (B, K)
    LanguageModel     lm                           model(ids (B, T)) -> logits (B, T, V); generate(...)
    MaskedLM          mlm                          model.masked_lm_logits(ids (B, T)) -> (B, T, V)
    Seq2SeqModel      seq2seq                      model(src (B, S), tgt_in (B, T)) -> logits (B, T, V);
                                                   token_losses(...); translate(src, max_len=...)
    TextToTextModel   span_corruption              model(src (B, S), tgt_in (B, T)) -> logits (B, T, V),
                                                   source and target ids of one vocabulary
    Forecaster        forecast                     model(history (B, C, F)) -> normalised (B, H, F);
                                                   fit_normalization, normalize, forecast
    ImageTextModel    clip                         encode_image(images) -> (B, d_e), encode_text(ids) ->
                                                   (B, d_e), unit length; temperature_scale; loss(...)
    TabularModel      tabular                      model(x_num (B, n), x_cat (B, m)) -> (B, K) or (B, 1)

Each interface also declares

- a classmethod ``<interface>_fields(data, config) -> {config field: value}``: the model's own
  answer to "which of my config fields does this data fix?" (vocabulary size, classes, channels,
  image size...). ``data`` is a small description of the data set (``ImageData``, ``TextData``...)
  that the task hands over, so no task guesses field names; ``config`` is the config the model
  would have without the data (its variant's defaults and the user's settings). The defaults below
  name the fields most configs use; a model whose config says it otherwise overrides its hook;
- ``example_input(batch_size, seq_len)``: the arguments of one sensible forward pass (summaries,
  the test that runs every registered model). A model with several interfaces lists its main one
  first.

A model class also names its config dataclass in ``config_class``; the registry reads it from the
class, without building a model. ``fitted`` says how it learns: False (the default) for a network
trained by gradient steps in ``archlab.train``'s loop, True for a model fitted by its own algorithm
(gradient-boosted trees): it has no torch parameters, ``fit``s on whole arrays in
``archlab.train.boosting`` and counts what it learned in ``num_parameters()``.

Losses that a model family defines are written once, here: ``teacher_forced`` (an
encoder-decoder's teacher forcing, behind ``Seq2SeqModel.token_losses`` and
``TextToTextModel.token_losses``), ``masked_lm_loss`` (BERT's masked-token cross-entropy) and
``contrastive_loss`` (CLIP's symmetric InfoNCE).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.errors import check
from archlab.models.decoding import search, teacher_forcing
from archlab.utils.runtime import eval_mode

IGNORE_INDEX = -100  # a label that is not scored (PyTorch's and Hugging Face's convention)
DEFAULT_SEQ_LEN = 64
DEFAULT_IMAGE_SIZE = 224


# ------------------------------------------------------------------------------------------------
# What a data set tells a model
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageData:
    channels: int
    height: int
    width: int
    num_classes: int


@dataclass(frozen=True)
class LabelledTokens:
    vocab_size: int
    pad_id: int
    num_classes: int


@dataclass(frozen=True)
class TextData:
    vocab_size: int
    block_size: int         # tokens of context per example
    pad_id: int | None = None


@dataclass(frozen=True)
class PairData:
    """Source and target sequences of two vocabularies: id 5 of the source and id 5 of the target
    are unrelated tokens (letters and phonemes, or two tokenizers fitted one per side)."""

    src_vocab_size: int
    tgt_vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int
    max_len: int            # longest source or target, in tokens (without bos / eos)


@dataclass(frozen=True)
class TextToTextData:
    """Inputs and targets that are ids of one vocabulary (T5's text-to-text format): an id means
    the same token on both sides."""

    vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int
    max_len: int            # longest input or target, in tokens (without bos / eos)


@dataclass(frozen=True)
class CaptionedImageData:
    channels: int
    height: int
    width: int
    vocab_size: int         # caption token ids
    pad_id: int
    eos_id: int             # the token that ends every caption
    max_caption_len: int    # the longest caption, in tokens (its special tokens included)
    tokenizer: str          # whose ids the captions are: "word" (fitted on the captions) or "minilm"


@dataclass(frozen=True)
class TableData:
    num_numeric: int                    # n: numeric features (standardised; missing-value indicators included)
    cat_cardinalities: tuple[int, ...]  # K_j: codes of categorical column j (code 0 = missing / unseen)
    num_outputs: int                    # K classes, or 1 for regression
    classification: bool                # False: one regression value per row


@dataclass(frozen=True)
class SeriesData:
    input_size: int         # values per time step
    context_length: int     # C: steps of history read
    horizon: int            # H: steps ahead predicted


# ------------------------------------------------------------------------------------------------
# Helpers for example inputs
# ------------------------------------------------------------------------------------------------


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def example_ids(vocab_size: int, shape: tuple[int, ...], *, avoid: tuple[int | None, ...] = (),
                seed: int = 0) -> torch.Tensor:
    """Token ids of ``shape`` drawn from a fixed seed, none of them a special id in ``avoid``."""
    special = {a for a in avoid if a is not None}
    usable = [i for i in range(min(vocab_size, len(special) + 64)) if i not in special] or [0]
    pick = torch.randint(0, len(usable), shape, generator=_generator(seed))
    return torch.tensor(usable)[pick]


def example_floats(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_generator(seed))


def _length(seq_len: int | None, *limits: int | None) -> int:
    if seq_len is not None:
        return seq_len  # too long for the model: the model's own check says so
    return min([DEFAULT_SEQ_LEN, *(m for m in limits if m)])


# ------------------------------------------------------------------------------------------------
# The interfaces
# ------------------------------------------------------------------------------------------------


class Capability:
    """Base of the interfaces: ``title`` names the capability, ``task`` the task that trains it and
    ``extra_tasks`` any further tasks that train it through the same methods (``tasks_of``);
    ``fitted`` is True for a model fitted by its own algorithm instead of gradient steps."""

    title: ClassVar[str] = ""
    task: ClassVar[str] = ""
    extra_tasks: ClassVar[tuple[str, ...]] = ()
    config_class: ClassVar[type]
    fitted: ClassVar[bool] = False

    def num_parameters(self) -> int:
        """The numbers the model learned: its parameters (tied weights once); a fitted model counts its own."""
        return sum(p.numel() for p in self.parameters())

    def example_input(self, batch_size: int = 1, seq_len: int | None = None) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError


class ImageClassifier(Capability):
    """An image in, K class scores out: ``forward(x) = forward_head(forward_features(x))`` (timm's shape).

    Implementations give ``forward_features(x)`` (the last feature map or features) and
    ``forward_head(features)``; this class gives ``forward``, an input check that names the model,
    the expected and the given shape, and ``reset_classifier(num_classes)`` whatever the head's
    attribute path. Class (or instance) attributes describe the inputs the architecture takes:

    - ``input_size``: the one spatial size it needs (LeNet-5's dense C5), or None;
    - ``min_input_size``: the smallest size whose feature map survives every downsampling;
    - ``head_name``: dotted path of the final linear layer; None finds the last ``nn.Linear``.

    ``image_classifier_fields`` fills ``in_channels`` and ``num_classes``.
    """

    title = "image classifier"
    task = "classify"
    input_size: int | None = None
    min_input_size: int = 1
    head_name: str | None = None

    @classmethod
    def image_classifier_fields(cls, data: ImageData, config: Any) -> dict[str, Any]:
        return {"in_channels": data.channels, "num_classes": data.num_classes}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))

    @property
    def display_name(self) -> str:
        return getattr(self, "model_name", None) or type(self).__name__

    def input_shape_for(self, height: int, width: int) -> tuple[int, int]:
        """The (H, W) images of ``height`` x ``width`` must be resized to before this model reads them:
        its one input size if it has one, else at least ``min_input_size`` on each side."""
        if self.input_size is not None:
            return self.input_size, self.input_size
        return max(height, self.min_input_size), max(width, self.min_input_size)

    def image_side(self) -> int:
        """The side of a square image this model takes by default."""
        return self.input_size or getattr(self.config, "image_size", None) or DEFAULT_IMAGE_SIZE

    def example_input(self, batch_size: int = 1, seq_len: int | None = None) -> tuple[torch.Tensor, ...]:
        check(seq_len is None, "--seq-len is for sequence models; this model reads images: give --input-size B,C,H,W")
        s = self.image_side()
        return (example_floats((batch_size, self.config.in_channels, s, s)),)

    def check_input(self, x: torch.Tensor) -> None:
        """ConfigError naming the model, the expected and the given shape, for an image it cannot take."""
        c = self.config.in_channels
        if self.input_size is not None:
            expected = f"(B, {c}, {self.input_size}, {self.input_size})"
        else:
            expected = f"(B, {c}, H, W) with H, W >= {self.min_input_size}"
        ok = x.dim() == 4 and x.shape[1] == c
        if ok and self.input_size is not None:
            ok = tuple(x.shape[2:]) == (self.input_size, self.input_size)
        elif ok:
            ok = min(x.shape[2:]) >= self.min_input_size
        check(ok, f"{self.display_name} expects input of shape {expected}, got {tuple(x.shape)}")

    # -- the classifier head ------------------------------------------------------------------

    def classifier_name(self) -> str:
        """Dotted path of the final linear layer."""
        if self.head_name is not None:
            return self.head_name
        linears = [name for name, m in self.named_modules() if isinstance(m, nn.Linear)]
        check(bool(linears), f"{self.display_name} has no nn.Linear head; set head_name")
        return linears[-1]

    def get_classifier(self) -> nn.Linear:
        return self.get_submodule(self.classifier_name())

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final linear layer by a freshly initialised one with ``num_classes`` outputs."""
        check(isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes > 0,
              f"num_classes must be a positive integer, got {num_classes!r}")
        name = self.classifier_name()
        old = self.get_submodule(name)
        parent_name, _, attr = name.rpartition(".")
        new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None, device=old.weight.device,
                        dtype=old.weight.dtype)
        setattr(self.get_submodule(parent_name) if parent_name else self, attr, new)
        self.config.num_classes = num_classes


class TokenClassifier(Capability):
    """A sequence of token ids in, K class scores out: ``token_logits(ids, mask) -> (B, K)``.

    ``mask`` (B, T) is True on real tokens: padding must never change a prediction.
    ``token_classifier_fields`` fills ``vocab_size``, ``num_classes`` and ``pad_id``.
    """

    title = "token classifier"
    task = "textclass"
    extra_tasks = ("recall",)  # the same token_logits on generated sequences (the long-memory experiment)

    @classmethod
    def token_classifier_fields(cls, data: LabelledTokens, config: Any) -> dict[str, Any]:
        return {"vocab_size": data.vocab_size, "num_classes": data.num_classes, "pad_id": data.pad_id}

    def token_logits(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def example_input(self, batch_size: int = 1, seq_len: int | None = None) -> tuple[torch.Tensor, ...]:
        T = _length(seq_len, getattr(self.config, "max_position_embeddings", None))
        return (example_ids(self.config.vocab_size, (batch_size, T), avoid=(getattr(self.config, "pad_id", None),)),)


class LanguageModel(Capability):
    """Token ids in, the next token's logits at every position out: ``forward(ids) -> (B, T, V)``.

    ``generate(ids, max_new_tokens, do_sample=..., temperature=..., top_k=..., top_p=...)``
    continues a prompt. ``language_model_fields`` fills ``vocab_size``; a model with a longest
    context (GPT's ``block_size``) also takes the task's block size.
    """

    title = "language model"
    task = "lm"
    context_field: ClassVar[str | None] = None  # the config field of the longest context, if any

    @classmethod
    def language_model_fields(cls, data: TextData, config: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"vocab_size": data.vocab_size}
        if cls.context_field:
            out[cls.context_field] = data.block_size
        return out

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, **sampling) -> torch.Tensor:
        raise NotImplementedError

    def max_context(self) -> int | None:
        return getattr(self.config, self.context_field) if self.context_field else None

    def example_input(self, batch_size: int = 1, seq_len: int | None = None) -> tuple[torch.Tensor, ...]:
        return (example_ids(self.config.vocab_size, (batch_size, _length(seq_len, self.max_context()))),)


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of the masked positions only: labels (B, T) hold the original token where a
    prediction is asked and ``IGNORE_INDEX`` elsewhere; logits (B, T, V). Computed in fp32.

    ``reduction="none"`` gives the loss of each asked position (M,), in order."""
    check(tuple(labels.shape) == tuple(logits.shape[:-1]),
          f"MLM labels must have the shape of input_ids {tuple(logits.shape[:-1])}, got {tuple(labels.shape)}")
    asked = labels != IGNORE_INDEX                                      # (B, T)
    if reduction == "none":
        return F.cross_entropy(logits[asked].float(), labels[asked], reduction="none")  # (M,)
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE_INDEX,
                           reduction=reduction)


class MaskedLM(Capability):
    """Token ids with some replaced by <mask> in, logits for every position out (BERT's pretraining).

    ``masked_lm_logits(ids) -> (B, T, V)``; the loss is ``masked_lm_loss``.
    ``masked_lm_fields`` fills ``vocab_size`` and ``pad_id``.
    """

    title = "masked language model"
    task = "mlm"

    @classmethod
    def masked_lm_fields(cls, data: TextData, config: Any) -> dict[str, Any]:
        return {"vocab_size": data.vocab_size, "pad_id": data.pad_id}

    def masked_lm_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def example_input(self, batch_size: int = 1, seq_len: int | None = None) -> tuple[torch.Tensor, ...]:
        T = _length(seq_len, getattr(self.config, "max_position_embeddings", None))
        return (example_ids(self.config.vocab_size, (batch_size, T), avoid=(getattr(self.config, "pad_id", None),)),)


def teacher_forced(model: nn.Module, src_ids: torch.Tensor, tgt_ids: torch.Tensor, *,
                   label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An encoder-decoder's teacher-forced pass, written once for every encoder-decoder task.

    ``tgt_ids`` (B, T): targets without bos/eos, right-padded with ``model.config.pad_id``. The
    decoder reads [bos] + y and is scored on y + [eos]; padding is not scored (its loss is 0).
    Returns the token losses (B * (T + 1),), the logits (B, T + 1, V), both fp32 (under autocast
    too), and the targets y + [eos] (B, T + 1).
    """
    c = model.config
    decoder_in, target = teacher_forcing(tgt_ids, pad_id=c.pad_id, bos_id=c.bos_id, eos_id=c.eos_id)
    logits = model(src_ids, decoder_in).float()  # (B, T + 1, V)
    token_loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=c.pad_id,
                                 label_smoothing=label_smoothing, reduction="none")  # (B * (T + 1),)
    return token_loss, logits, target


class Seq2SeqModel(Capability):
    """An encoder-decoder: a source sequence in, a target sequence out (translation, G2P).

    ``forward(src_ids, tgt_in_ids) -> logits (B, T, V)`` (teacher forcing: the decoder reads [bos] + y);
    ``translate(src_ids, max_len=..., beam_size=...) -> (B, L)`` target ids (eos, then eos-padding).
    The config holds ``pad_id``, ``bos_id``, ``eos_id``. ``seq2seq_fields`` fills the two
    vocabulary sizes and those ids; a model with a positional table also takes its length.
    """

    title = "sequence to sequence"
    task = "seq2seq"
    positions_field: ClassVar[str | None] = None  # config field of the longest sequence, if any

    @classmethod
    def seq2seq_fields(cls, data: PairData, config: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"src_vocab_size": data.src_vocab_size, "tgt_vocab_size": data.tgt_vocab_size,
                               "pad_id": data.pad_id, "bos_id": data.bos_id, "eos_id": data.eos_id}
        if cls.positions_field:
            out[cls.positions_field] = data.max_len + 2  # [bos] + the longest target + eos
        return out

    @torch.no_grad()
    def translate(self, src_ids: torch.Tensor, *, max_len: int, beam_size: int = 1,
                  length_penalty: float = 1.0) -> torch.Tensor:
        """Target ids (B, L) from ``start_decoding``: greedy (``beam_size=1``) or beam search, in
        evaluation mode (restored afterwards). Models with more options (masks, a cache switch,
        attention weights) give their own."""
        c = self.config
        with eval_mode(self):
            step, state = self.start_decoding(src_ids)
            return search(step, state, bos_id=c.bos_id, eos_id=c.eos_id, batch_size=src_ids.size(0),
                          max_len=max_len, beam_size=beam_size, length_penalty=length_penalty, device=src_ids.device)

    def start_decoding(self, src_ids: torch.Tensor) -> tuple[Any, Any]:
        """``(step, state)`` for ``archlab.models.decoding`` before the first target token of the
        sources ``src_ids`` (B, S), padded with ``pad_id``: what ``translate`` decodes from, and what an
        ensemble combines across models."""
        raise NotImplementedError

    def token_losses(self, src_ids: torch.Tensor, tgt_ids: torch.Tensor, *, label_smoothing: float = 0.0,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced cross-entropy of each scored target token, and how many there are.

        ``tgt_ids`` (B, T) are targets without bos/eos, right-padded with ``pad_id``. The decoder
        reads [bos] + y and is scored on y + [eos]; padding is not scored (its loss is 0):

            L = -1/N * sum_i sum_t log p(y_{i,t} | y_{i,<t}, x_i)

        Returns (token losses (B * (T + 1),) in fp32, N).
        """
        token_loss, _, target = teacher_forced(self, src_ids, tgt_ids, label_smoothing=label_smoothing)
        return token_loss, (target != self.config.pad_id).sum()

    def loss(self, src_ids: torch.Tensor, tgt_ids: torch.Tensor, *, label_smoothing: float = 0.0,
             reduction: str = "mean") -> torch.Tensor:
        """The teacher-forced loss of ``token_losses``: ``reduction`` "mean" over the scored tokens or "sum"."""
        check(reduction in ("mean", "sum"), f"reduction must be 'mean' or 'sum', got {reduction!r}")
        token_loss, n = self.token_losses(src_ids, tgt_ids, label_smoothing=label_smoothing)
        return token_loss.sum() / n if reduction == "mean" else token_loss.sum()

    def example_input(self, batch_size: int = 1, seq_len: int | None = None) -> tuple[torch.Tensor, ...]:
        return _source_and_target(self, batch_size, seq_len)


def _source_and_target(model, batch_size: int, seq_len: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Source ids (B, T) and decoder input ids (B, T) of an encoder-decoder, no special ids among them."""
    c = model.config
    limit = getattr(c, model.positions_field) if model.positions_field else None
    T = _length(seq_len, limit)
    avoid = (c.pad_id, c.bos_id, c.eos_id)
    return (example_ids(c.src_vocab_size, (batch_size, T), avoid=avoid),
            example_ids(c.tgt_vocab_size, (batch_size, T), avoid=avoid, seed=1))


class TextToTextModel(Capability):
    """An encoder-decoder whose input and output are ids of one vocabulary (T5's text-to-text
    format), so a token, or a sentinel standing for a dropped span, is the same id on both sides.

    ``forward(src_ids, tgt_in_ids) -> logits (B, T, V)`` as ``Seq2SeqModel``'s (teacher forcing), and
    its config holds ``pad_id``, ``bos_id``, ``eos_id``; ``token_losses`` and ``loss`` are
    ``Seq2SeqModel``'s (``teacher_forced``), the same functions. ``text_to_text_fields`` fills
    ``src_vocab_size = tgt_vocab_size`` (the one vocabulary), the ``pad_id``, ``bos_id`` and
    ``eos_id``, and a positional table's length; a model that can keep one embedding table for both
    sides says so in its override.
    """

    title = "text to text"
    task = "span_corruption"
    positions_field: ClassVar[str | None] = None  # config field of the longest sequence, if any

    @classmethod
    def text_to_text_fields(cls, data: TextToTextData, config: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"src_vocab_size": data.vocab_size, "tgt_vocab_size": data.vocab_size,
                               "pad_id": data.pad_id, "bos_id": data.bos_id, "eos_id": data.eos_id}
        if cls.positions_field:
            out[cls.positions_field] = data.max_len + 2  # [bos] + the longest target + eos
        return out

    token_losses = Seq2SeqModel.token_losses  # one teacher-forced loss for every encoder-decoder
    loss = Seq2SeqModel.loss

    def example_input(self, batch_size: int = 1, seq_len: int | None = None) -> tuple[torch.Tensor, ...]:
        return _source_and_target(self, batch_size, seq_len)


class Forecaster(Capability):
    """A window of a time series in, the next values out.

    ``forward(history (B, C, F)) -> (B, H, F)`` in normalised units (what the training loss
    compares with ``normalize(target)``); ``forecast(history, horizon) -> (B, horizon, F)`` in
    data units, rolling forward past its own horizon. ``fit_normalization(train_series)`` sets
    the statistics from the training part only; ``normalize`` / ``denormalize`` map between data
    and normalised units. ``forecaster_fields`` fills ``input_size``,
    ``context_length`` and ``horizon``.
    """

    title = "forecaster"
    task = "forecast"

    @classmethod
    def forecaster_fields(cls, data: SeriesData, config: Any) -> dict[str, Any]:
        return {"input_size": data.input_size, "context_length": data.context_length, "horizon": data.horizon}

    def fit_normalization(self, train_series: torch.Tensor) -> "Forecaster":
        raise NotImplementedError

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forecast(self, history: torch.Tensor, horizon: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def example_input(self, batch_size: int = 1, seq_len: int | None = None) -> tuple[torch.Tensor, ...]:
        T = self.config.context_length if seq_len is None else seq_len
        return (example_floats((batch_size, T, self.config.input_size)),)


def contrastive_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss of a square (B, B) matrix of pair logits, row i = image i:

        L = (CE(logits, arange(B)) + CE(logits^T, arange(B))) / 2

    image i must pick caption i among the B captions, and caption i image i. Computed in fp32."""
    check(logits_per_image.dim() == 2 and logits_per_image.size(0) == logits_per_image.size(1),
          f"the contrastive loss needs a square (B, B) logit matrix, got {tuple(logits_per_image.shape)}")
    labels = torch.arange(logits_per_image.size(0), device=logits_per_image.device)
    logits = logits_per_image.float()
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class ImageTextModel(Capability):
    """Two towers that map an image and a caption into one space, where matching pairs lie close (CLIP).

    ``encode_image(images (B, C, H, W)) -> I_e (B, d_e)`` and ``encode_text(ids (B, L),
    attention_mask=None) -> T_e (B, d_e)``, both of unit length (a caption's padding is ``pad_id``
    unless a mask says otherwise); ``temperature_scale``, the learned exp(tau) > 0. Given here:

        similarity_logits(images, ids) = exp(tau) * I_e T_e^T      (B_i, B_t): scaled cosine similarities
        loss(images, ids) = contrastive_loss(similarity_logits)    for B matching (image, caption) pairs

    ``image_text_fields`` fills ``in_channels``, ``image_size`` (square images), ``text_vocab_size``,
    ``pad_id``, ``eos_id`` and ``context_length`` (the longest caption).
    """

    title = "image-text model"
    task = "clip"

    @classmethod
    def image_text_fields(cls, data: CaptionedImageData, config: Any) -> dict[str, Any]:
        check(data.height == data.width,
              f"{cls.__name__} takes square images (one image_size), the data has {data.height}x{data.width}")
        return {"in_channels": data.channels, "image_size": data.height, "text_vocab_size": data.vocab_size,
                "pad_id": data.pad_id, "eos_id": data.eos_id, "context_length": data.max_caption_len}

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_text(self, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    @property
    def temperature_scale(self) -> torch.Tensor:
        raise NotImplementedError

    def similarity_logits(self, images: torch.Tensor, ids: torch.Tensor,
                          attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """exp(tau) * cos(image_i, caption_j) for every image and caption, (B_i, B_t)."""
        return self.temperature_scale * self.encode_image(images) @ self.encode_text(ids, attention_mask).T

    def loss(self, images: torch.Tensor, ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
             ) -> torch.Tensor:
        """The symmetric InfoNCE loss of a batch of matching (image, caption) pairs."""
        check(images.size(0) == ids.size(0),
              f"images and captions must pair up: got {images.size(0)} images and {ids.size(0)} captions")
        return contrastive_loss(self.similarity_logits(images, ids, attention_mask))

    def example_input(self, batch_size: int = 1, seq_len: int | None = None) -> tuple[torch.Tensor, ...]:
        c = self.config
        T = _length(seq_len, c.context_length)
        return (example_floats((batch_size, c.in_channels, c.image_size, c.image_size)),
                example_ids(c.text_vocab_size, (batch_size, T), avoid=(c.pad_id, c.eos_id), seed=1))


class TabularModel(Capability):
    """A table row in, class scores or one value out: ``forward(x_num, x_cat) -> (B, K)`` or ``(B, 1)``.

    ``x_num`` (B, n) holds the standardised numeric features, ``x_cat`` (B, m) the code of every
    categorical column (int64, 0 = missing or unseen; ``archlab.data.tabular.TabularEncoder``).
    Classification returns logits (softmax gives the probabilities), regression one value in the
    target's standardised units. ``tabular_fields`` fills ``num_numeric``, ``cat_cardinalities``
    and ``num_outputs``.

    A fitted model (``fitted = True``: gradient-boosted trees) also gives
    ``fit(train, valid=None, *, seed=0, on_round=None)`` on ``(x_num, x_cat, y)`` arrays (y: class
    codes, or standardised values), ``on_round(t, {"train": loss, "valid": loss})`` being called
    after each round (returning True stops the fit), and returns each round's losses.
    """

    title = "tabular model"
    task = "tabular"

    @classmethod
    def tabular_fields(cls, data: TableData, config: Any) -> dict[str, Any]:
        return {"num_numeric": data.num_numeric, "cat_cardinalities": tuple(data.cat_cardinalities),
                "num_outputs": data.num_outputs}

    def fit(self, train: tuple, valid: tuple | None = None, *, seed: int = 0, on_round=None) -> dict[str, list[float]]:
        raise NotImplementedError(f"{type(self).__name__} is trained by gradient steps, not fitted")

    def example_input(self, batch_size: int = 1, seq_len: int | None = None) -> tuple[torch.Tensor, ...]:
        check(seq_len is None, "--seq-len is for sequence models; a table model reads rows: its num_numeric and "
                               "cat_cardinalities fix the inputs")
        c = self.config
        g = _generator()
        x_num = torch.randn(batch_size, c.num_numeric, generator=g)
        codes = [torch.randint(0, k, (batch_size,), generator=g) for k in c.cat_cardinalities]
        x_cat = torch.stack(codes, dim=1) if codes else torch.zeros(batch_size, 0, dtype=torch.long)  # (B, m)
        return x_num, x_cat


INTERFACES: tuple[type[Capability], ...] = (ImageClassifier, TokenClassifier, LanguageModel, MaskedLM,
                                            Seq2SeqModel, TextToTextModel, Forecaster, ImageTextModel,
                                            TabularModel)


def tasks_of(interface: type[Capability]) -> tuple[str, ...]:
    """Every task that trains models of ``interface``, its own task first."""
    return (interface.task, *interface.extra_tasks)


def capabilities(model_cls: type) -> list[type[Capability]]:
    """The interfaces ``model_cls`` implements, its main one first (the order of its bases)."""
    return [c for c in model_cls.__mro__ if c in INTERFACES]
