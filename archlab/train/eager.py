"""Optimisers that start fast: the methods torch guards against torch.compile, called unguarded.

torch wraps ``add_param_group``, ``zero_grad``, ``state_dict`` and ``load_state_dict`` of
``torch.optim.Optimizer``, and the ``step`` of its optimisers, for torch.compile (to skip them, or
to break the graph around them); the wrapper imports ``torch._dynamo`` the first time one of them
runs, which takes about as long as importing torch itself -- seconds, before the first training
step ends. The trainer never compiles an optimiser (``compile`` compiles the model), so its
optimisers call the wrapped functions directly (``__wrapped__``; ``step`` under the grad mode the
wrapper would set), and a run pays for that import only if it compiles. Where a torch version does
not wrap them, these are simply torch's methods.
"""

from __future__ import annotations

import torch


def _unguarded(name: str):
    method = getattr(torch.optim.Optimizer, name)
    return getattr(method, "__wrapped__", method)


class EagerMethods:
    """Mixin, listed before the torch optimiser class: ``class AdamW(EagerMethods, torch.optim.AdamW)``."""

    add_param_group = _unguarded("add_param_group")
    zero_grad = _unguarded("zero_grad")
    state_dict = _unguarded("state_dict")
    load_state_dict = _unguarded("load_state_dict")


def _unguarded_step(cls: type[torch.optim.Optimizer]):
    """``cls.step`` without its graph-break wrapper, under the grad mode the wrapper sets."""
    inner = getattr(cls.step, "__wrapped__", None)
    if inner is None:
        return cls.step

    def step(self, closure=None):
        with torch.set_grad_enabled(self.defaults.get("differentiable", False)):
            return inner(self, closure)

    step.__doc__ = cls.step.__doc__
    return step


class AdamW(EagerMethods, torch.optim.AdamW):
    """``torch.optim.AdamW``, without the torch.compile guards' import on first use."""

    step = _unguarded_step(torch.optim.AdamW)


class SGD(EagerMethods, torch.optim.SGD):
    """``torch.optim.SGD``, without the torch.compile guards' import on first use."""

    step = _unguarded_step(torch.optim.SGD)
