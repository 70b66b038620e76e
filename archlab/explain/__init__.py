"""The insides of a model made visible: one self-contained HTML page (``archlab explain``).

    from archlab.explain import explain
    from archlab.inspect.target import load_target
    page = explain(load_target("runs/lenet", with_task=True))
    page.write("lenet.html")

``explain(target, inputs)`` shows what fits the model (``archlab.explain.sections``): for every
model the layer table, the prediction, gradient flow and activation statistics; filters, feature
maps and saliency for a convolutional network; gates and states over time for a recurrent one,
and a seq2seq model's attention alignment; every attention layer and head of a Transformer, the
next-token distribution under temperature / top-k / top-p for a language model, a ViT's
attention over its patches, and for an image-text model (CLIP) the similarity matrix of a batch of
images and captions with its zero-shot classification. What goes in and comes out is the business of a *subject*
(``archlab.explain.subjects``), one per capability.

Looking inside costs the ordinary path nothing: attention weights are materialised only while a
page is made (``MultiHeadAttention.register_weights_hook``), and the gates of a recurrent layer
are recomputed from its weights (``archlab.explain.gates``) while the layer keeps its fused kernel.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

from archlab.explain import sections
from archlab.explain.capture import capture
from archlab.explain.html import Page
from archlab.explain.subjects import ImageSubject, subject_for

__all__ = ["explain", "Page"]


def explain(target, inputs: Sequence[str] = (), *, resize: bool = False, count: int | None = None,
            progress: Callable[[str], None] | None = None) -> Page:
    """The page of ``target`` (``archlab.inspect.target.Target``, loaded ``with_task=True`` for a run) for
    the ``--input`` values ``inputs`` (default: ``count`` examples of the test data)."""
    from archlab.inspect.target import KINDS
    from archlab.utils.runtime import count_parameters

    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    model = target.model.eval()
    subject = subject_for(target, resize=resize)
    examples = subject.examples(list(inputs), count)
    first = examples[0]

    lines = [f"{target.name} &middot; {subject.what} &middot; {count_parameters(model):,} parameters &middot; "
             f"{KINDS[target.kind]}" + (f": <span class='mono'>{target.path}</span>" if target.path else "")]
    if target.task is not None:
        lines.append(f"trained by task <b>{target.task.name}</b> on <b>{target.task.data}</b>")
    lines.append(f"{len(examples)} example{'s' if len(examples) > 1 else ''}: "
                 + "; ".join(ex.title for ex in examples)[:400])
    warning = "" if target.trained else ("Random weights: a registry model that was never trained. The pictures "
                                         "show its initialisation, not anything learnt.")
    page = Page(f"archlab explain: {target.name}", lines, warning)

    say("layers")
    sections.layers(page, model, first)
    say("prediction")
    subject.prediction(page, examples)
    say("watching one forward pass")
    captured = capture(model, lambda: subject.forward(first))
    subject.extra(page, examples, captured)
    if sections.has_convolutions(model):
        say("filters and feature maps")
        sections.filters(page, model)
        sections.feature_maps(page, captured, subject, first)
    if isinstance(subject, ImageSubject):
        say("saliency")
        sections.saliency(page, subject, examples, captured, model)
    if captured.recurrent:
        say("gates")
        sections.recurrent(page, captured, subject, first)
    if captured.attention:
        say("attention")
        sections.attention(page, captured, subject, first)
    say("gradient flow")
    sections.gradients(page, model, subject, examples, captured)
    sections.activations(page, captured)
    page.subtitle_lines.append(f"made by archlab explain in {time.perf_counter() - started:.1f} s")
    return page
