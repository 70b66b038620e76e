"""Ensembles: several trained models of one task read as one model, their predictions averaged.

Models trained from different seeds make different mistakes; averaging their predicted
distributions (Dietterich 2000; for sequence models, Sutskever et al. 2014 and every G2P and
translation system since) is usually worth more than training one of them longer. With M members:

    image classifier:   p(k | x)             = 1/M sum_m p_m(k | x)
    encoder-decoder:    p(y_t | y_<t, x)     = 1/M sum_m p_m(y_t | y_<t, x)
    forecaster:         x^_{t+k}             = 1/M sum_m x^_{m, t+k}      (forecast combination,
                                                                         Bates & Granger 1969)
    table model:        p(k | row) = 1/M sum_m p_m(k | row), or, for one value (regression),
                        y^ = 1/M sum_m y^_m  (networks and boosted trees alike)

The ensemble returns ``log p`` where a member returns logits (a normalised log-distribution is a
valid set of logits: softmax gives p back), so a task scores it as it scores one model. An
encoder-decoder ensemble decodes, greedily or by beam search, from the averaged next-token
distribution: every member runs its own decoder step on the same prefix (its own state, cache
and attention) and the search keeps one set of hypotheses for all of them. A forecaster ensemble
averages the members' forecasts in the data's units, each member rolling forward on its own
forecasts past its horizon (so members of either strategy combine).

``ensemble_of(models)`` builds the right one; ``archlab evaluate --checkpoint A --checkpoint B``
uses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from archlab.errors import ConfigError, check
from archlab.models.interfaces import Forecaster, ImageClassifier, Seq2SeqModel, TabularModel


def mean_probability_log(log_probs: list[torch.Tensor]) -> torch.Tensor:
    """log(1/M sum_m exp(log_probs[m])), the log of the members' averaged distribution (fp32 at least)."""
    dtype = torch.promote_types(log_probs[0].dtype, torch.float32)
    return torch.stack([lp.to(dtype) for lp in log_probs]).logsumexp(0) - math.log(len(log_probs))


def _same_fields(members, fields: tuple[str, ...], why: str = "members must read and write the same tokens") -> dict:
    first = members[0].config
    for i, m in enumerate(members[1:], 2):
        for name in fields:
            a, b = getattr(first, name), getattr(m.config, name)
            check(a == b, f"ensemble member {i} ({type(m).__name__}) has {name}={b}, member 1 "
                          f"({type(members[0]).__name__}) has {name}={a}: {why}")
    return {name: getattr(first, name) for name in fields}


class _Ensemble(nn.Module):
    def __init__(self, members):
        super().__init__()
        check(len(members) >= 2, f"an ensemble needs at least 2 models, got {len(members)}")
        self.members = nn.ModuleList(members)
        names = [getattr(m, "model_name", None) or type(m).__name__ for m in members]
        kinds = sorted(set(names), key=names.index)
        self.model_name = f"ensemble of {len(members)} " + (kinds[0] if len(kinds) == 1 else f"({', '.join(kinds)})")


class ImageClassifierEnsemble(_Ensemble):
    """Image classifiers averaged: ``forward(x)`` -> log of the mean class probabilities (B, K)."""

    def __init__(self, members):
        super().__init__(members)
        _same_fields(members, ("num_classes",))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_probability_log([m(x).log_softmax(-1) for m in self.members])


@dataclass
class Seq2SeqEnsembleConfig:
    src_vocab_size: int
    tgt_vocab_size: int
    pad_id: int
    bos_id: int
    eos_id: int


class Seq2SeqEnsemble(Seq2SeqModel, _Ensemble):
    """Encoder-decoders averaged at every target position (teacher forcing and decoding alike);
    ``translate`` is the interface's, over ``start_decoding``."""

    def __init__(self, members):
        super().__init__(members)
        self.config = Seq2SeqEnsembleConfig(**_same_fields(
            members, ("src_vocab_size", "tgt_vocab_size", "pad_id", "bos_id", "eos_id")))

    def forward(self, src_ids: torch.Tensor, tgt_in_ids: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: log p(y_t | y_<t, x) of the averaged distribution, (B, T, V)."""
        return mean_probability_log([m(src_ids, tgt_in_ids).log_softmax(-1) for m in self.members])

    def start_decoding(self, src_ids: torch.Tensor):
        """One step for all members: each advances its own state on the shared prefix; the
        distribution returned is their average. The state is the tuple of the members' states (beam
        search reorders all of them together)."""
        starts = [m.start_decoding(src_ids) for m in self.members]
        steps = [step for step, _ in starts]

        def step(tokens, states):
            outs = [f(tokens, s) for f, s in zip(steps, states)]
            return mean_probability_log([lp for lp, _ in outs]), tuple(s for _, s in outs)

        return step, tuple(state for _, state in starts)


@dataclass
class ForecasterEnsembleConfig:
    input_size: int
    context_length: int
    horizon: int


class ForecasterEnsemble(Forecaster, _Ensemble):
    """Forecasters averaged in the data's units: ``forecast(history, n)`` -> 1/M sum_m x^_m (B, n, F).

    ``forward`` gives the same average in the first member's normalised units (what the training
    loss compares), ``normalize`` / ``denormalize`` are the first member's: members trained on one
    series fit the same statistics on the same training part, and any that differ are still
    averaged in data units."""

    def __init__(self, members):
        super().__init__(members)
        self.config = ForecasterEnsembleConfig(**_same_fields(
            members, ("input_size", "context_length", "horizon"),
            why="members must read the same windows and forecast the same steps"))

    @property
    def mean(self) -> torch.Tensor:  # mu of the first member: the dtype and device the task reads
        return self.members[0].mean

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.members[0].normalize(x)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return self.members[0].denormalize(z)

    def forward(self, history: torch.Tensor, horizon: int | None = None) -> torch.Tensor:
        """history (B, T >= C, F) -> the averaged forecast, normalised as the first member's, (B, horizon, F)."""
        x_hat = torch.stack([m.denormalize(m(history, horizon)) for m in self.members]).mean(0)
        return self.normalize(x_hat)

    @torch.no_grad()
    def forecast(self, history: torch.Tensor, horizon: int | None = None) -> torch.Tensor:
        """The members' forecasts in data units, averaged: (B, horizon[, F]) as ``Forecaster.forecast``."""
        return torch.stack([m.forecast(history, horizon) for m in self.members]).mean(0)


class TabularEnsemble(_Ensemble):
    """Table models averaged: ``forward(x_num, x_cat)`` -> the log of the mean class probabilities
    (B, K), or with one output (regression) the mean prediction (B, 1), in the target's standardised
    units as each member's."""

    def __init__(self, members):
        super().__init__(members)
        fields = _same_fields(members, ("num_numeric", "cat_cardinalities", "num_outputs"),
                              why="members must read the same columns and predict the same outputs")
        self.regression = fields["num_outputs"] == 1

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        outputs = [m(x_num, x_cat) for m in self.members]
        if self.regression:
            return torch.stack(outputs).mean(0)
        return mean_probability_log([out.log_softmax(-1) for out in outputs])


ENSEMBLES = ((Seq2SeqModel, Seq2SeqEnsemble), (ImageClassifier, ImageClassifierEnsemble),
             (Forecaster, ForecasterEnsemble), (TabularModel, TabularEnsemble))


def ensemble_of(members: list[nn.Module]) -> nn.Module:
    """The ensemble of ``members`` (2 or more models of one interface): their averaged predictions."""
    check(len(members) >= 2, f"an ensemble needs at least 2 models, got {len(members)}")
    for interface, ensemble in ENSEMBLES:
        if all(isinstance(m, interface) for m in members):
            return ensemble(members)
    kinds = ", ".join(sorted({type(m).__name__ for m in members}))
    allowed = ", ".join(interface.title for interface, _ in ENSEMBLES)
    raise ConfigError(f"cannot average {kinds}: an ensemble's members are all of one of these kinds: {allowed}")
