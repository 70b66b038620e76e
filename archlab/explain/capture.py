"""One watched forward pass: every layer's output, the attention weights, what recurrent layers read.

``capture(model, run)`` calls ``run()`` (a forward pass of one example, batch of one) once, in
evaluation mode and without autograd, and records

- ``order``: the modules in the order they were first called, with their depth;
- ``stats``: for every module without called children (the leaves of the computation), its first
  output's mean, standard deviation, largest magnitude, share of exact zeros (units a ReLU switched
  off) and, after a tanh or sigmoid, share of saturated values (|y| > 0.97 or y beyond 0.015..0.985);
- ``maps``: the outputs of those leaves shaped like feature maps, (C, H, W) or (C, T) for a
  convolution over time, for the first example;
- ``attention``: each attention module's weights for its first call, per head (nh, T, S) --
  ``MultiHeadAttention`` through its weights hook, so the fused kernel serves every pass but this
  one; recurrent attention (``SeqAttention``: additive, dot, general) from its returned alpha;
- ``recurrent``: each recurrent layer's input sequence, initial state and output, from which
  ``archlab.explain.gates`` recomputes its gates.

Nothing else changes: hooks are removed afterwards, and the model is put back in the mode it was in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence

from archlab.inspect.calls import watch_calls
from archlab.nn.attention import MultiHeadAttention
from archlab.nn.recurrent import RecurrentLayer
from archlab.nn.seq_attention import SeqAttention
from archlab.utils.runtime import eval_mode

SATURATING = ("Tanh", "Sigmoid", "Hardtanh")


@dataclass
class Stats:
    shape: tuple[int, ...]
    mean: float
    std: float
    max_abs: float
    zeros: float                 # share of exact zeros
    saturated: float | None      # share of saturated values, after a saturating activation


@dataclass
class AttentionMap:
    name: str                    # qualified module name
    kind: str                    # "multi-head" | "additive" | "dot" | "general"
    weights: torch.Tensor        # (nh, T, S) for the first example; nh = 1 for recurrent attention


@dataclass
class RecurrentCall:
    module: nn.Module
    x: torch.Tensor              # (T, F) the sequence it read
    h0: torch.Tensor | None      # (L * D, P)
    c0: torch.Tensor | None      # (L * D, H)
    output: torch.Tensor         # (T, D * P) what it returned


@dataclass
class Captured:
    output: Any = None
    order: list[tuple[str, str, int]] = field(default_factory=list)  # (name, type, depth), first-call order
    stats: dict[str, Stats] = field(default_factory=dict)
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    attention: list[AttentionMap] = field(default_factory=list)
    recurrent: dict[str, RecurrentCall] = field(default_factory=dict)


def _first_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, PackedSequence):
        return x.data
    if isinstance(x, (tuple, list)):
        for v in x:
            t = _first_tensor(v)
            if t is not None:
                return t
    if isinstance(x, dict):
        return _first_tensor(list(x.values()))
    if hasattr(x, "__dataclass_fields__"):
        return _first_tensor([getattr(x, f) for f in x.__dataclass_fields__])
    return None


def stats_of(y: torch.Tensor, module_type: str) -> Stats:
    y = y.detach().float()
    sat = None
    if module_type in SATURATING:
        sat = float(((y.abs() > 0.97) if module_type != "Sigmoid" else ((y < 0.015) | (y > 0.985))).float().mean())
    return Stats(tuple(y.shape), float(y.mean()), float(y.std()) if y.numel() > 1 else 0.0, float(y.abs().max()),
                 float((y == 0).float().mean()), sat)


def _sequence(x: Any, batch_first: bool) -> torch.Tensor:
    """The first sequence of a recurrent layer's input or output: (T, F)."""
    if isinstance(x, PackedSequence):
        if int(x.batch_sizes[0]) == 1:
            return x.data
        # Several sequences packed: the first (longest) is the first row of every step.
        starts = torch.cumsum(torch.cat([x.batch_sizes.new_zeros(1), x.batch_sizes[:-1]]), 0)
        return x.data[starts.to(x.data.device)]
    if x.dim() == 2:
        return x
    return x[0] if batch_first else x[:, 0]


def capture(model: nn.Module, run: Callable[[], Any]) -> Captured:
    """Run ``run()`` once under watch; see the module docstring."""
    names = {id(m): n for n, m in model.named_modules()}
    got = Captured()
    stack: list[nn.Module] = []
    called_children: set[int] = set()
    outputs: dict[int, Any] = {}

    def before(module, _args):
        if stack:
            called_children.add(id(stack[-1]))
        if id(module) not in outputs:
            got.order.append((names.get(id(module), "?"), type(module).__name__, len(stack)))
            outputs[id(module)] = None
        stack.append(module)

    def after(module, _args, output):
        stack.pop()
        if outputs.get(id(module)) is None:
            outputs[id(module)] = output

    def on_weights(module, weights):
        name = names[id(module)]
        if not any(a.name == name for a in got.attention):
            got.attention.append(AttentionMap(name, "multi-head", weights[0].detach().float().cpu()))

    def on_seq_attention(module, _args, output):
        name = names[id(module)]
        if not any(a.name == name for a in got.attention):
            alpha = output[1].detach().float().cpu()
            alpha = alpha[0] if alpha.dim() == 3 else alpha[:1]  # (T, S) or one step (1, S)
            got.attention.append(AttentionMap(name, module.score_name, alpha[None]))

    def on_recurrent(module, args, kwargs, output):
        name = names[id(module)]
        if name in got.recurrent:
            return
        x = args[0] if args else kwargs["input"]
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        h0 = c0 = None
        if hx is not None:
            h0, c0 = (hx if isinstance(hx, tuple) else (hx, None))
            h0 = h0[:, 0] if h0.dim() == 3 else h0
            c0 = (c0[:, 0] if c0.dim() == 3 else c0) if c0 is not None else None
        got.recurrent[name] = RecurrentCall(module, _sequence(x, module.batch_first).detach(), h0, c0,
                                            _sequence(output[0], module.batch_first).detach())

    handles = []
    try:
        for m in model.modules():
            if isinstance(m, MultiHeadAttention):
                handles.append(m.register_weights_hook(on_weights))
            elif isinstance(m, SeqAttention):
                handles.append(m.register_forward_hook(on_seq_attention))
            elif isinstance(m, RecurrentLayer):
                handles.append(m.register_forward_hook(on_recurrent, with_kwargs=True))
        with eval_mode(model), torch.no_grad(), watch_calls(model, before, after):
            got.output = run()
    finally:
        for h in handles:
            h.remove()

    modules = {id(m): m for m in model.modules()}
    keys = {n: k for k, n in names.items()}
    for name, type_name, _depth in got.order:
        key = keys.get(name)
        if key is None or key in called_children:
            continue
        y = _first_tensor(outputs.get(key))
        if y is None or not y.is_floating_point() or y.numel() == 0:
            continue
        got.stats[name] = stats_of(y, type_name)
        if y.dim() in (3, 4) and _is_map(modules[key], y):
            got.maps[name] = y[0].detach().float().cpu()
    return got


def _is_map(module: nn.Module, y: torch.Tensor) -> bool:
    """A feature map: any 4-D output (B, C, H, W); a 3-D one (B, C, T) only from a 1-D convolution."""
    return y.dim() == 4 or isinstance(module, (nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d, nn.BatchNorm1d))
