"""Watching every call of every module of a model: forward, and the other entry points archlab uses.

A forward hook sees ``module(...)`` only. Some of archlab's blocks are also called through another
method -- GPT, ViT and BERT call ``attn.attend(x, ...)`` (batch first, boolean masks, a KV cache)
rather than torch's ``forward`` signature -- and a hook on ``forward`` alone would report those
modules as never called. ``watch_calls(model, before, after)`` calls ``before(module, args)`` and
``after(module, args, output)`` around both kinds of call, for as long as the ``with`` block lasts::

    with watch_calls(model, before, after):
        model(x)

The other entry points are the methods named in ``CALL_METHODS``; they are wrapped on the instance
(the class is untouched) and unwrapped on exit.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch.nn as nn

CALL_METHODS = ("attend",)  # methods through which a module is called instead of ``forward``

Before = Callable[[nn.Module, tuple], None]
After = Callable[[nn.Module, tuple, Any], None]


def _wrapped(module: nn.Module, method: Callable, before: Before, after: After) -> Callable:
    def call(*args, **kwargs):
        before(module, args)
        output = method(*args, **kwargs)
        after(module, args, output)
        return output

    return call


@contextlib.contextmanager
def watch_calls(model: nn.Module, before: Before, after: After) -> Iterator[None]:
    """Call ``before``/``after`` around every call of every module of ``model`` (see the module doc)."""
    handles, wrapped = [], []
    try:
        for m in model.modules():
            handles.append(m.register_forward_pre_hook(before))
            handles.append(m.register_forward_hook(after))
            for name in CALL_METHODS:
                if callable(getattr(type(m), name, None)) and name not in vars(m):
                    vars(m)[name] = _wrapped(m, getattr(m, name), before, after)  # shadows the class's method
                    wrapped.append((m, name))
        yield
    finally:
        for h in handles:
            h.remove()
        for m, name in wrapped:
            vars(m).pop(name, None)
