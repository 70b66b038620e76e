"""A model's layers, their output shapes, parameters and FLOPs, from one forward pass.

``summarize(model, inputs)`` runs ``model(*inputs)`` once, in eval mode and without autograd, with
a hook on every submodule, and records per module, in the order the modules were first called:

- ``name`` (its qualified name, ``""`` for the model itself), ``type`` and ``depth`` (the nesting
  of the calls: 0 for the model, 1 for what it calls, ...);
- ``output_shapes``: the shapes of the tensors its first call returned (a tuple, list, dict or
  dataclass of tensors gives several);
- ``params``: the parameters of the module and its children, each tensor once; ``own_params``:
  those it holds itself; ``trainable``: the part of ``params`` that requires a gradient;
- ``flops``: the FLOPs of all its calls, its children included; ``calls``: how often it ran (a
  recurrent cell stepped in a Python loop runs once per time step).

What a FLOP is and what is counted comes from ``archlab.utils.flops`` -- the counter ``archlab
train`` uses for MFU: a multiply-add is 2 FLOPs; matrix products (``Linear``, attention written as
matmuls, the recurrent W_ih x_t and W_hh h_{t-1}), convolutions, fused attention (SDPA) and the
fused RNN/LSTM/GRU kernels are counted; element-wise work (activations, normalisation, softmax,
pooling, embeddings as look-ups, biases) is not. A product a module makes with another module's
weight (a tied output layer written as ``F.linear(h, wte.weight)``) counts in the module that makes it.

Totals are the model's, not sums of rows: ``total_params`` is ``count_parameters(model)``
(a tied or shared weight counts once, while each row holding it shows it), ``flops`` the whole
forward pass, ``param_bytes`` the memory of the parameters (each tensor once) and
``buffer_bytes`` that of the buffers (running statistics, position tables).

A module counts as called whether it ran through ``forward`` or through one of the other entry
points of ``archlab.inspect.calls`` (``attn.attend(...)`` in GPT, ViT and BERT). A module the forward
pass did not call is listed with ``calls == 0`` at the end of its parent's rows; containers whose
children run (``ModuleList``) are left out.

``Summary.to_dict()`` is the table as plain JSON-able data (``archlab summary --json``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.nn.utils.rnn import PackedSequence

from archlab.errors import check
from archlab.inspect.calls import watch_calls
from archlab.utils.flops import counting_flops
from archlab.utils.runtime import count_parameters


@dataclass
class LayerInfo:
    name: str                      # qualified name in the model ("" for the model itself)
    type: str                      # class name
    depth: int                     # call nesting: 0 = the model
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)  # of the first call
    params: int = 0                # this module and its children, each tensor once
    own_params: int = 0            # held by this module itself
    trainable: int = 0             # of ``params``, those with requires_grad
    flops: int = 0                 # all calls, children included
    calls: int = 0
    tied_to: str | None = None     # an earlier row that holds the same parameter tensor(s)
    parent: str | None = None      # the row this one is nested under (None for the model)

    @property
    def label(self) -> str:
        """The name below the parent row: ``conv1`` under ``layer1.0``, ``h.0`` under the model."""
        if self.parent and self.name.startswith(self.parent + "."):
            return self.name[len(self.parent) + 1:]
        return self.name

    @property
    def notes(self) -> list[str]:
        """What the table says beside the numbers: repeated or missing calls, tied parameters."""
        notes = []
        if self.calls > 1:
            notes.append(f"x{self.calls} calls")
        if self.calls == 0:
            notes.append("not called")
        if self.tied_to is not None:
            notes.append(f"tied to {self.tied_to}")
        return notes


@dataclass
class Summary:
    model_type: str
    input_shapes: list[tuple[int, ...]]
    layers: list[LayerInfo]
    total_params: int
    trainable_params: int
    flops: int
    param_bytes: int
    buffer_bytes: int

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    def layer(self, name: str) -> LayerInfo:
        """The row of the module with qualified name ``name``."""
        for info in self.layers:
            if info.name == name:
                return info
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain data (lists for shapes), in table order; what ``--json`` writes."""
        return {"model_type": self.model_type, "input_shapes": [list(s) for s in self.input_shapes],
                "total_params": self.total_params, "trainable_params": self.trainable_params,
                "non_trainable_params": self.non_trainable_params, "flops": self.flops,
                "param_bytes": self.param_bytes, "buffer_bytes": self.buffer_bytes,
                "layers": [{**dataclasses.asdict(r), "output_shapes": [list(s) for s in r.output_shapes]}
                           for r in self.layers]}

    def to_text(self, depth: int = 3) -> str:
        """A table of the rows nested ``depth`` deep or less (0: the model only), then the totals."""
        check(depth >= 0, f"depth must be >= 0, got {depth}")
        rows = [r for r in self.layers if r.depth <= depth]
        show_trainable = self.non_trainable_params > 0
        header = ["Layer (type)", "Output shape", "Params"] + (["Trainable"] if show_trainable else []) + ["FLOPs"]
        table = []
        for r in rows:
            label = "  " * r.depth + (f"{r.label}: {r.type}" if r.name else r.type)
            line = [label, format_shapes(r.output_shapes), _count(r.params)]
            if show_trainable:
                line.append(_count(r.trainable))
            table.append(line + [_count(r.flops), ", ".join(r.notes)])
        widths = [max(len(str(x)) for x in col) for col in zip(header + [""], *table)]
        right = {2, 3, 4} if show_trainable else {2, 3}  # numbers align right

        def fmt(cells):
            out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
            return "  ".join(out).rstrip()

        body = [fmt(header + [""]), *(fmt(line) for line in table)]
        rule = "-" * max(len(line) for line in body)
        inputs = ", ".join(str(s) for s in self.input_shapes)
        lines = [body[0], rule, *body[1:], rule,
                 f"Total params:          {self.total_params:,}",
                 f"Trainable params:      {self.trainable_params:,}",
                 f"Non-trainable params:  {self.non_trainable_params:,}",
                 f"Forward FLOPs:         {self.flops:,} ({human(self.flops)}FLOPs) for input {inputs}",
                 f"Parameter memory:      {human_bytes(self.param_bytes)}"]
        if self.buffer_bytes:
            lines.append(f"Buffer memory:         {human_bytes(self.buffer_bytes)}")
        return "\n".join(lines)


def summarize(model: nn.Module, inputs: Any, **forward_kwargs: Any) -> Summary:
    """Run ``model(*inputs, **forward_kwargs)`` once and describe every layer; see the module docstring.

    ``inputs`` is one tensor or a tuple/list of the positional arguments. The model is left in the
    training mode it was in, and the global RNG state is unchanged.
    """
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    modules = dict(model.named_modules())          # name -> module, a shared module under its first name
    names = {id(m): n for n, m in modules.items()}
    rows: dict[int, LayerInfo] = {}                 # id(module) -> row, in first-call order
    stack: list[tuple[nn.Module, int]] = []          # modules being called, with the FLOP count at entry
    active: dict[int, int] = {}                      # id(module) -> how deep it is re-entered
    parents: dict[int, int | None] = {}              # id(module) -> id of the module that first called it

    with counting_flops(model) as counter:
        def pre_hook(module, _args):
            key = id(module)
            if key not in rows:
                rows[key] = LayerInfo(names[key], type(module).__name__, depth=len(stack))
                parents[key] = id(stack[-1][0]) if stack else None
            rows[key].calls += 1
            stack.append((module, counter.get_total_flops()))
            active[key] = active.get(key, 0) + 1

        def post_hook(module, _args, output):
            key = id(module)
            _, at_entry = stack.pop()
            active[key] -= 1
            info = rows[key]
            if active[key] == 0:  # a module that calls itself counts its outermost call only
                info.flops += counter.get_total_flops() - at_entry
            if info.calls == 1 and not info.output_shapes:
                info.output_shapes = tensor_shapes(output)

        with watch_calls(model, pre_hook, post_hook):
            model(*args, **forward_kwargs)
        total_flops = counter.get_total_flops()

    layers = _tree_order(model, modules, names, rows, parents)

    first_owner: dict[int, str] = {}  # id(parameter) -> the first row (in table order) holding it
    for info in layers:
        m = modules[info.name]
        own = list(m.parameters(recurse=False))
        everything = list(m.parameters())
        info.own_params = sum(p.numel() for p in own)
        info.params = sum(p.numel() for p in everything)
        info.trainable = sum(p.numel() for p in everything if p.requires_grad)
        for p in own:
            if id(p) in first_owner and info.tied_to is None:
                info.tied_to = first_owner[id(p)] or type(model).__name__
            first_owner.setdefault(id(p), info.name)

    return Summary(
        model_type=type(model).__name__,
        input_shapes=[s for a in args for s in tensor_shapes(a)],
        layers=layers,
        total_params=count_parameters(model),
        trainable_params=count_parameters(model, trainable_only=True),
        flops=int(total_flops),
        param_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
    )


def _tree_order(model, modules, names, rows, parents) -> list[LayerInfo]:
    """Rows depth first: a module's callees in call order, then its modules that never ran.

    A module that never ran is listed (under its parent by name) when it holds parameters or
    buffers of its own, or when nothing inside it ran either (dead code, e.g. a pooler no head
    uses); a container whose children are called directly (a ``ModuleList``) is left out.
    """
    ran = set(rows)
    for key, m in ((id(m), m) for m in modules.values()):
        if key in ran:
            continue
        owns = any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))
        if owns or not any(id(d) in ran for d in m.modules()):
            name = names[key]
            parent = name.rpartition(".")[0] if name else None
            while parent and id(modules[parent]) not in rows:  # a left-out container: go further up
                parent = parent.rpartition(".")[0]
            rows[key] = LayerInfo(name, type(m).__name__, depth=0)
            parents[key] = id(modules[parent]) if parent is not None else None
    children: dict[int | None, list[int]] = {}
    for key in rows:  # rows: called modules in first-call order, then the others in named order
        children.setdefault(parents[key], []).append(key)
    order: list[LayerInfo] = []

    def visit(key: int, depth: int) -> None:
        rows[key].depth = depth
        order.append(rows[key])
        for child in children.get(key, []):
            rows[child].parent = rows[key].name
            visit(child, depth + 1)

    visit(id(model), 0)
    return order


# --------------------------------------------------------------------------------------------
# Formatting


def tensor_shapes(x: Any) -> list[tuple[int, ...]]:
    """Shapes of the tensors in ``x``: a tensor, or tuples, lists, dicts and dataclasses of them."""
    if isinstance(x, torch.Tensor):
        return [tuple(x.shape)]
    if isinstance(x, PackedSequence):
        return [tuple(x.data.shape)]  # (sum of lengths, F)
    if isinstance(x, (tuple, list)):
        return [s for v in x for s in tensor_shapes(v)]
    if isinstance(x, dict):
        return [s for v in x.values() for s in tensor_shapes(v)]
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return [s for f in dataclasses.fields(x) for s in tensor_shapes(getattr(x, f.name))]
    return []


def format_shapes(shapes: list[tuple[int, ...]], most: int = 3) -> str:
    if not shapes:
        return "--"
    text = ", ".join(str(tuple(s)) for s in shapes[:most])
    return text + (f", ... (+{len(shapes) - most})" if len(shapes) > most else "")


def _count(n: int) -> str:
    return f"{n:,}" if n else "--"


def human(n: float) -> str:
    """1234567 -> '1.23 M'; small numbers as they are, followed by a space."""
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:g} "


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"
