"""What goes in and comes out of each kind of model (see ``base``); ``subject_for`` picks one.

A run's task decides (``classify``, ``lm``, ``seq2seq``, ``mlm``, ``textclass``, ``forecast``,
``tabular``, ``clip``);
without a task (a saved model, a Hugging Face folder, a registry name) the model's main interface
does, and for BERT its head.
"""

from __future__ import annotations

from archlab.errors import ConfigError
from archlab.explain.subjects.base import Example, Subject, read_input
from archlab.explain.subjects.clip import ClipSubject
from archlab.explain.subjects.image import ImageSubject
from archlab.explain.subjects.seq2seq import Seq2SeqSubject
from archlab.explain.subjects.series import ForecastSubject
from archlab.explain.subjects.tabular import TabularSubject
from archlab.explain.subjects.text import EncoderSubject, LanguageSubject, MaskedSubject, TokenClassSubject
from archlab.models.interfaces import (Forecaster, ImageClassifier, ImageTextModel, LanguageModel, MaskedLM,
                                       Seq2SeqModel, TabularModel, TokenClassifier, capabilities)

BY_TASK = {"classify": ImageSubject, "lm": LanguageSubject, "seq2seq": Seq2SeqSubject, "mlm": MaskedSubject,
           "textclass": TokenClassSubject, "forecast": ForecastSubject, "tabular": TabularSubject,
           "clip": ClipSubject}
BY_INTERFACE = {ImageClassifier: ImageSubject, LanguageModel: LanguageSubject, Seq2SeqModel: Seq2SeqSubject,
                MaskedLM: MaskedSubject, TokenClassifier: TokenClassSubject, Forecaster: ForecastSubject,
                TabularModel: TabularSubject, ImageTextModel: ClipSubject}


def subject_for(target, *, resize: bool = False) -> Subject:
    """The subject that explains ``target`` (an ``archlab.inspect.target.Target``)."""
    model = target.model
    if target.task is not None:
        cls = BY_TASK.get(target.task.name)
        if cls is None:
            raise ConfigError(f"archlab explain has no page for task {target.task.name!r} runs; it explains "
                              f"{', '.join(sorted(BY_TASK))}")
        return cls(target, resize=resize)
    head = getattr(model.config, "head", None)
    if head is not None:  # BERT: its head says what it does
        cls = {"mlm": MaskedSubject, "classification": TokenClassSubject}.get(head, EncoderSubject)
        return cls(target, resize=resize)
    if getattr(model.config, "vocab_size", None) == 0 and isinstance(model, ImageClassifier):
        return ImageSubject(target, resize=resize)  # a recurrent classifier of feature rows: read as an image
    for interface in capabilities(type(model)):
        if interface in BY_INTERFACE:
            return BY_INTERFACE[interface](target, resize=resize)
    raise ConfigError(f"{target.name} ({type(model).__name__}) declares no interface archlab can explain")


__all__ = ["subject_for", "Subject", "Example", "read_input", "ImageSubject", "LanguageSubject", "Seq2SeqSubject",
           "MaskedSubject", "TokenClassSubject", "EncoderSubject", "ForecastSubject", "TabularSubject",
           "ClipSubject"]
