"""The sections every kind of model can have, chosen by what the model contains.

    layers          every model: archlab.inspect.summarize's table (shapes, parameters, FLOPs)
    gradients       every model: ||dL/dW|| of each layer's own weights for one batch (gradient flow)
    activations     every model: statistics of each layer's output on the first example
    filters         a convolution: the first layers' filters as images
    feature-maps    a convolution: the maps of each stage (the last output at each resolution)
    saliency        an image classifier: input gradient, and Grad-CAM on the last convolutional stage
    gates, states   a recurrent layer: its gates and its h_t / c_t over time (recomputed from its
                    weights by ``archlab.explain.gates``, checked against the layer's own output)
    alignment       recurrent attention (seq2seq): which source position each output step reads
    attention       multi-head attention: every layer and head, tokens on the axes; self-, masked
                    and cross-attention told apart
    patch-attention a Vision Transformer: the class token's attention over the image patches
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch
import torch.nn as nn

from archlab.explain import gates as G
from archlab.explain import html as H
from archlab.explain import render
from archlab.explain.capture import Captured
from archlab.explain.subjects import Example, ImageSubject, Subject
from archlab.utils.runtime import eval_mode

MAX_UNITS = 32           # units of a recurrent layer shown (those whose state varies most)
MAX_CHANNELS = 16        # channels of a feature map shown
MAX_TABLE_ROWS = 60      # rows shown before the rest folds away


def _details(title: str, content: str) -> str:
    return f"<details><summary>{H.e(title)}</summary>{content}</details>"


# ------------------------------------------------------------------------------------------------
# Layers
# ------------------------------------------------------------------------------------------------


def layers(page, model: nn.Module, ex: Example, depth: int = 2) -> None:
    from archlab.inspect import summarize
    from archlab.inspect.summary import format_shapes, human, human_bytes

    summary = summarize(model, ex.args)
    s = page.section("layers", "Layers", "Every module in the order it runs, with the shape of its output for the "
                     "first example, its parameters and its FLOPs (a multiply-add counts 2; archlab summary's "
                     "table).")
    rows, classes = [], []
    for r in summary.layers:
        rows.append([r.label or summary.model_type, r.type, format_shapes(r.output_shapes), f"{r.params:,}",
                     f"{r.flops:,}" if r.flops else "--", ", ".join(r.notes)])
        classes.append(f"depth{min(r.depth, 4)}")
    shallow = [i for i, r in enumerate(summary.layers) if r.depth <= depth]
    header = ["layer", "type", "output shape", "parameters", "FLOPs", ""]
    s.add(H.table(header, [rows[i] for i in shallow], numeric=[3, 4], row_classes=[classes[i] for i in shallow]))
    if len(shallow) < len(rows):
        s.add(_details(f"all {len(rows)} modules", H.table(header, rows, numeric=[3, 4], row_classes=classes)))
    inputs = ", ".join(str(tuple(x)) for x in summary.input_shapes)
    s.note(f"{summary.total_params:,} parameters ({summary.trainable_params:,} trainable), "
           f"{human_bytes(summary.param_bytes)}; {human(summary.flops)}FLOPs for one forward pass of input {inputs}.")


# ------------------------------------------------------------------------------------------------
# Gradient flow and activation statistics
# ------------------------------------------------------------------------------------------------


def gradients(page, model: nn.Module, subject: Subject, examples: list[Example], captured: Captured) -> None:
    model.zero_grad(set_to_none=True)
    try:
        with eval_mode(model), torch.enable_grad():
            total = subject.batch_loss(examples)
            total.backward()
        order = {name: i for i, (name, _, _) in enumerate(captured.order)}
        rows = []
        for name, m in model.named_modules():
            own = [p for p in m.parameters(recurse=False) if p.grad is not None]
            if not own:
                continue
            g = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in own))
            w = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in own))
            rows.append((order.get(name, len(order)), name or type(model).__name__, type(m).__name__, g, w,
                         sum(p.numel() for p in own)))
        loss_value = float(total.detach())
    finally:
        model.zero_grad(set_to_none=True)
    rows.sort(key=lambda r: r[0])
    s = page.section("gradients", "Gradient flow",
                     f"The gradient of one batch ({len(examples)} example{'s' if len(examples) > 1 else ''}) "
                     f"reaching each layer's own weights, ||dL/dW||, in the order the layers run; L is "
                     f"{subject.loss_text} (dropout off). Bars are on a log scale: gradients that shrink "
                     "layer after layer towards the input are vanishing, ones that grow are exploding. The "
                     "ratio ||dL/dW|| / ||W|| is how much one step of plain SGD with learning rate 1 would "
                     "change the layer.")
    if not rows:
        s.note("No weights received a gradient.")
        return
    norms = np.array([r[3] for r in rows])
    positive = norms[norms > 0]
    lo = math.log10(float(positive.min())) if positive.size else 0.0
    hi = math.log10(float(positive.max())) if positive.size else 1.0
    span = max(hi - lo, 1e-9)
    bars = [(f"{r[1]} ({r[2]})", 0.0 if r[3] <= 0 else 0.04 + 0.96 * (math.log10(r[3]) - lo) / span,
             f"{H.fmt(r[3])}   |W| {H.fmt(r[4])}   ratio {H.fmt(r[3] / r[4]) if r[4] > 0 else '--'}") for r in rows]
    s.add(H.bars(bars[:MAX_TABLE_ROWS], highest=1.0))
    if len(bars) > MAX_TABLE_ROWS:
        s.add(_details(f"all {len(bars)} layers", H.bars(bars, highest=1.0)))
    zero = [r[1] for r in rows if r[3] == 0]
    s.note(f"L = {loss_value:.4g}; largest ||dL/dW|| {H.fmt(float(norms.max()))} ({rows[int(norms.argmax())][1]}), "
           f"smallest non-zero {H.fmt(10 ** lo)}: a spread of {hi - lo:.1f} orders of magnitude."
           + (f" {len(zero)} of {len(rows)} layers got no gradient at all (e.g. {', '.join(zero[:3])}): "
              "something after them passes none back -- a head initialised to zero (as ViT's is) or a "
              "dead unit." if zero else ""))


def activations(page, captured: Captured) -> None:
    s = page.section("activations", "Activation statistics",
                     "Each layer's output on the first example: mean, standard deviation and largest magnitude; "
                     "'zero' is the share of exact zeros (units a ReLU switched off), 'saturated' the share of a "
                     "tanh or sigmoid stuck near its limits, where its gradient vanishes.")
    rows = []
    for name, type_name, _ in captured.order:
        st = captured.stats.get(name)
        if st is None:
            continue
        rows.append([name, type_name, str(st.shape), H.fmt(st.mean), H.fmt(st.std), H.fmt(st.max_abs),
                     f"{100 * st.zeros:.1f}%", "" if st.saturated is None else f"{100 * st.saturated:.1f}%"])
    header = ["layer", "type", "shape", "mean", "std", "max |x|", "zero", "saturated"]
    s.add(H.table(header, rows[:MAX_TABLE_ROWS], numeric=[3, 4, 5, 6, 7]))
    if len(rows) > MAX_TABLE_ROWS:
        s.add(_details(f"all {len(rows)} layers", H.table(header, rows, numeric=[3, 4, 5, 6, 7])))
    stds = [(r[0], float(captured.stats[r[0]].std), H.fmt(captured.stats[r[0]].std)) for r in rows]
    if stds:
        s.h3("Standard deviation, layer by layer")
        s.add(H.bars(stds[:MAX_TABLE_ROWS]))


# ------------------------------------------------------------------------------------------------
# Convolutions
# ------------------------------------------------------------------------------------------------


def _convs(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]


def has_convolutions(model: nn.Module) -> bool:
    return bool(_convs(model))


def filters(page, model: nn.Module) -> None:
    convs = _convs(model)
    s = page.section("filters", "Filters", "The weights of the first convolutions, each filter drawn as an image "
                     "(blue negative, red positive, white 0; each filter scaled to its own largest weight). A "
                     "filter is what its layer looks for: the feature map is large where the input resembles it.")
    for n, conv in convs[:2]:
        w = conv.weight.detach().float().cpu().numpy()
        if w.ndim == 3:  # Conv1d (O, C, k): one row per filter
            O, C, k = w.shape
            s.h3(f"{n}: {O} filters of {C} channel{'s' if C > 1 else ''} x {k} steps")
            s.add(H.heatmap(w.reshape(O, C * k)[:64], rows=[f"filter {o}" for o in range(min(O, 64))],
                            cols=[f"c{c} k{j}" for c in range(C) for j in range(k)], cmap="diverging",
                            legend_label="weight"))
            continue
        O, C, kh, kw = w.shape
        if kh * kw == 1:
            continue
        s.h3(f"{n}: {O} filters of {C} channel{'s' if C > 1 else ''} x {kh}x{kw}")
        size = max(32, min(72, 12 * kh))
        if C == 3:  # colour filters as colour images
            items = [(render.image_rgb(render.normalise(w[o])), f"{o}") for o in range(min(O, 64))]
        elif C == 1:
            items = [(render.colour(w[o, 0] / (np.abs(w[o, 0]).max() or 1), "diverging", -1, 1), f"{o}")
                     for o in range(min(O, 64))]
        else:  # deeper: each filter's kernels for the first input channels, one row per filter
            items = [(render.colour(w[o, c] / (np.abs(w[o]).max() or 1), "diverging", -1, 1), f"{o}:{c}")
                     for o in range(min(O, 12)) for c in range(min(C, 8))]
            s.note(f"Filters 0-{min(O, 12) - 1} (rows), their kernels for input channels 0-{min(C, 8) - 1} "
                   "(columns), labelled filter:channel.")
        s.add(H.picture_grid(items, size=size, columns=16 if C in (1, 3) else min(C, 8)))


def feature_maps(page, captured: Captured, subject: Subject, ex: Example) -> None:
    maps2d = [(n, m) for n, m in captured.maps.items() if m.dim() == 3]
    maps1d = [(n, m) for n, m in captured.maps.items() if m.dim() == 2]
    if not maps2d and not maps1d:
        return
    s = page.section("feature-maps", "Feature maps",
                     f"What the convolutional stages compute for {H.e(ex.title)}: the output of each stage (the "
                     f"last layer at each resolution), its first {MAX_CHANNELS} channels, each scaled to its own "
                     "range (dark low, bright high). Resolution falls and channels grow stage by stage: from "
                     "edges and strokes to parts of the class.")
    if ex.image is not None:
        s.add(H.picture(render.image_rgb(ex.image.numpy()), scale=max(1, 96 // ex.image.shape[-1]),
                        caption="the input"))
    stages: dict[tuple, tuple[str, torch.Tensor]] = {}
    for n, m in maps2d:
        stages[tuple(m.shape[1:])] = (n, m)  # the last map at each resolution
    for n, m in stages.values():
        C = m.shape[0]
        if min(m.shape[1:]) < 2:
            continue
        items = [(render.colour(render.normalise(m[c].numpy()), "viridis", 0, 1), f"{c}") for c in range(min(C, MAX_CHANNELS))]
        s.h3(f"{n}: {C} maps of {m.shape[1]}x{m.shape[2]}")
        s.add(H.picture_grid(items, size=max(40, min(96, 4 * m.shape[2])), columns=8))
    for n, m in maps1d:
        C, T = m.shape
        s.h3(f"{n}: {C} channels over {T} steps")
        s.add(H.heatmap(m.numpy()[:64], rows=[f"ch {c}" for c in range(min(C, 64))],
                        cols=subject.time_labels(ex, T, n), cmap="diverging", legend_label="activation"))


def saliency(page, subject: ImageSubject, examples: list[Example], captured: Captured, model: nn.Module) -> None:
    from archlab.nn.attention import MultiHeadAttention

    cam_name = None
    if not any(isinstance(m, MultiHeadAttention) for m in model.modules()):
        spatial = [n for n, m in captured.maps.items() if m.dim() == 3 and min(m.shape[1:]) >= 3]
        cam_name = spatial[-1] if spatial else None
    cam_module = dict(model.named_modules())[cam_name] if cam_name else None
    s = page.section("saliency", "Saliency", "Where the evidence for the predicted class lies. Input gradient: "
                     "|d score / d pixel| (Simonyan et al. 2013), bright where a small change of the pixel would "
                     "change the class score most."
                     + (f" Grad-CAM (Selvaraju et al. 2017) on <code>{H.e(cam_name)}</code>: its feature maps "
                        "weighted by the mean gradient of the class score, ReLU'd." if cam_name else ""))
    cells = []
    for ex in examples:
        sal, cam, c = subject.saliency(ex, cam_module)
        scale = max(1, 112 // ex.image.shape[-1])
        parts = [H.picture(render.image_rgb(ex.image.numpy()), scale=scale, caption=H.e(ex.title)),
                 H.picture(render.overlay(ex.image.numpy(), sal, 0.7), scale=scale,
                           caption=f"input gradient, class {H.e(subject.classes[c])}")]
        if cam is not None:
            parts.append(H.picture(render.overlay(ex.image.numpy(), cam), scale=scale,
                                   caption=f"Grad-CAM ({cam.shape[0]}x{cam.shape[1]}), class {H.e(subject.classes[c])}"))
        cells.append(f"<div class='flex'>{''.join(parts)}</div>")
    s.add("".join(cells))


# ------------------------------------------------------------------------------------------------
# Recurrent layers
# ------------------------------------------------------------------------------------------------


def recurrent(page, captured: Captured, subject: Subject, ex: Example) -> None:
    traces = {}
    for name, call in captured.recurrent.items():
        t = G.trace(call.module, call.x, call.h0, call.c0)
        traces[name] = (t, G.max_difference(t, call.output))
    kinds = sorted({t.kind for t, _ in traces.values()})
    gate_words = {"LSTM": "forget, input and output gates f_t, i_t, o_t and the candidate g_t",
                  "GRU": "reset and update gates r_t, z_t and the candidate n_t"}
    s = page.section("gates", "Gates over time",
                     f"For {H.e(ex.title)}: the {'; '.join(gate_words[k] for k in kinds if k in gate_words) or 'states'} "
                     "of each recurrent layer at every step (columns), for the units whose state varies most "
                     "(rows). A gate near 1 lets through, near 0 blocks: a forget gate near 1 keeps the cell's "
                     "memory, an update gate near 1 keeps the old state. Computed from the layer's weights with "
                     "the equations (archlab.explain.gates) while the layer itself ran its fused kernel; the "
                     "recomputed h_t equal the layer's own output to the difference shown.")
    st = page.section("states", "Hidden and cell states",
                      "h_t (and for an LSTM the cell state c_t) of the same units over time: blue negative, red "
                      "positive. The cell state is the LSTM's long-term memory; h_t is what the layer passes on.")
    summary_rows = []
    for name, (t, diff) in traces.items():
        for lt in t.layers:
            where = f"{name} layer {lt.layer}" + (" backward" if lt.direction == 1 else "") \
                if (len(t.layers) > 1) else name
            T = lt.h.shape[0]
            cols = subject.time_labels(ex, T, name)
            units = _top_units(lt.h)
            rows = [f"unit {u}" for u in units]
            s.h3(f"{where} ({t.kind}, {lt.h.shape[1]} units; max |recomputed - own output| = {diff:.1e})")
            figs = [H.heatmap(v[:, units].T.numpy(), rows=rows, cols=cols, vmin=0.0 if g != "candidate" else -1.0,
                              vmax=1.0, cmap="viridis" if g != "candidate" else "diverging",
                              caption=H.e(G.GATE_TITLES.get(g, g))) for g, v in lt.gates.items()]
            s.add(f"<div class='flex'>{''.join(figs)}</div>" if figs else
                  "<p class='note'>A simple RNN has no gates: h_t = tanh(W_ih x_t + W_hh h_{t-1} + b).</p>")
            st.h3(where)
            states = [H.heatmap(lt.h[:, units].T.numpy(), rows=rows, cols=cols, cmap="diverging",
                                caption="hidden state h_t")]
            if lt.c is not None:
                states.append(H.heatmap(lt.c[:, units].T.numpy(), rows=rows, cols=cols, cmap="diverging",
                                        caption="cell state c_t"))
            st.add(f"<div class='flex'>{''.join(states)}</div>")
            summary_rows.append([where, t.kind] + [f"{float(lt.gates[g].mean()):.3f}" if g in lt.gates else ""
                                                   for g in ("forget_gate", "input_gate", "output_gate",
                                                             "reset_gate", "update_gate")])
    keep = [i for i in range(2, 7) if any(r[i] for r in summary_rows)]
    if keep:
        names = ["layer", "cell", "forget", "input", "output", "reset", "update"]
        s.h3("Mean gate values over all units and steps")
        s.add(H.table([names[0], names[1], *(names[i] for i in keep)], [[r[0], r[1], *(r[i] for i in keep)]
                                                                       for r in summary_rows],
                      numeric=range(2, 2 + len(keep))))


def _top_units(h: torch.Tensor) -> list[int]:
    """The (at most MAX_UNITS) units whose h_t varies most over time, in unit order."""
    if h.shape[1] <= MAX_UNITS:
        return list(range(h.shape[1]))
    spread = h.std(0) if h.shape[0] > 1 else h[0].abs()
    return sorted(torch.topk(spread, MAX_UNITS).indices.tolist())


# ------------------------------------------------------------------------------------------------
# Attention
# ------------------------------------------------------------------------------------------------


def _family(name: str) -> tuple[str, int]:
    """'transformer.encoder.layers.3.self_attn' -> ('transformer.encoder.layers.*.self_attn', 3)."""
    m = re.search(r"(\d+)(?!.*\d)", name)
    if not m:
        return name, 0
    return name[:m.start()] + "*" + name[m.end():], int(m.group(1))


def _flavour(name: str, w: torch.Tensor, subject: Subject) -> str:
    """Cross-attention reads another sequence; masked self-attention has nothing above the diagonal
    (told by the name when a single query row cannot show it)."""
    T, S = w.shape[-2:]
    if "multihead_attn" in name or "cross" in name or T != S:
        return "cross-attention"
    causal = float(w.triu(diagonal=1).abs().max()) == 0.0 if T > 1 else ("decoder" in name or subject.kind == "lm")
    return "masked (causal) self-attention" if causal else "self-attention"


def attention(page, captured: Captured, subject: Subject, ex: Example) -> None:
    multi = [a for a in captured.attention if a.kind == "multi-head"]
    single = [a for a in captured.attention if a.kind != "multi-head"]
    if single:
        s = page.section("alignment", "Attention alignment",
                         f"For {H.e(ex.title)}: the recurrent attention weights alpha_t,j, softmax over the "
                         "positions j read (columns), for each query (rows): each output step of a decoder, or "
                         "the one learnt query of a classifier's attention pooling. In a trained G2P model the "
                         "bright cells run along the letters each phoneme comes from.")
        for a in single:
            rows, cols = subject.axes(a.name, a.weights.shape[1], a.weights.shape[2], ex)
            s.add(H.heatmap(a.weights[0].numpy(), rows=rows, cols=cols, vmin=0.0, vmax=1.0,
                            caption=f"{H.e(a.name)}: {H.e(a.kind)} attention", legend_label="alpha"))
    if not multi:
        return
    families: dict[str, list] = {}
    for a in multi:
        fam, layer = _family(a.name)
        families.setdefault(fam, []).append((layer, a))
    s = page.section("attention", "Attention maps",
                     f"For {H.e(ex.title)}: every attention layer and head, softmax(Q K^T / sqrt(d_k)) row by "
                     "row -- each row is a query position, each column a key position it may read, the weights "
                     "of a row add up to 1. Masked self-attention leaves the future blank (above the diagonal); "
                     "cross-attention reads the encoder's positions. The weights were computed for this page "
                     "only, through the attention modules' weights hook; the model keeps its fused kernel "
                     "otherwise.")
    for fam, members in families.items():
        members.sort(key=lambda la: la[0])
        first = members[0][1]
        T, S = first.weights.shape[-2:]
        rows, cols = subject.axes(first.name, T, S, ex)
        flavour = _flavour(first.name, first.weights, subject)
        nh = first.weights.shape[0]
        maps = []
        for layer, a in members:
            for h in range(nh):
                maps.append((f"layer {layer}", f"head {h}", a.weights[h].numpy()))
            maps.append((f"layer {layer}", "mean", a.weights.mean(0).numpy()))
        s.h3(f"{fam.replace('*', 'N')}: {flavour}, {len(members)} layer{'s' if len(members) > 1 else ''} x {nh} heads")
        last = len(maps) - 1
        s.add(H.explorer(maps, columns=[f"head {h}" for h in range(nh)] + ["mean"],
                         rows=[f"layer {layer}" for layer, _ in members], row_labels=rows, col_labels=cols,
                         first=last, caption="Shown large: the last layer, averaged over its heads."))
    patches = [a for a in multi if subject.image_attention(a.name)]
    if patches and ex.image is not None:
        _patches(page, patches, ex)


def _patches(page, maps, ex: Example) -> None:
    """The class token's attention over the patches, per layer, and the rollout through all layers."""
    layers = sorted((_family(a.name)[1], a.weights) for a in maps)
    N = layers[0][1].shape[-1] - 1
    g = int(round(math.sqrt(N)))
    if g * g != N:
        return
    s = page.section("patch-attention", "Attention over the image patches",
                     f"A Vision Transformer reads the image as {N} patches ({g}x{g}) plus a class token whose "
                     "final state is classified. Bright: patches the class token attends to, in each layer "
                     "(mean over heads), and the rollout through all layers (Abnar &amp; Zuidema 2020: the "
                     "product of the layers' mean attention with the residual connection, 0.5 A + 0.5 I).")
    scale = max(1, 112 // ex.image.shape[-1])
    cells = []
    rollout = torch.eye(N + 1)
    for layer, w in layers:
        A = w.mean(0)
        cells.append(H.picture(render.overlay(ex.image.numpy(), render.normalise(A[0, 1:].reshape(g, g).numpy())),
                               scale=scale, caption=f"layer {layer}"))
        A_hat = 0.5 * A + 0.5 * torch.eye(N + 1)
        rollout = (A_hat / A_hat.sum(-1, keepdim=True)) @ rollout
    cells.append(H.picture(render.overlay(ex.image.numpy(), render.normalise(rollout[0, 1:].reshape(g, g).numpy())),
                           scale=scale, caption="rollout"))
    s.add(f"<div class='flex'>{''.join(cells)}</div>")
