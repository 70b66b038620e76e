"""Refusing a model too large to build, before any memory is allocated for it.

A config can ask for far more than a machine holds (``n_layer: 1000000`` in a crafted
``config.json``). ``check_model_size(build, what)`` runs ``build()`` on PyTorch's meta device --
shapes only, no storage, no random numbers drawn -- while global registration hooks count the
parameters and submodules as they are created, and stops the build as soon as either passes its
limit: ``ARCHLAB_MAX_PARAMETERS`` (default 2**31, 8 GiB of float32 weights) and
``ARCHLAB_MAX_MODULES`` (default 10,000; the largest registered model, EfficientNet-B7, has 1,105).
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable

import torch
from torch.nn.modules import module as _module
from torch.overrides import TorchFunctionMode

from archlab.errors import ConfigError

DEFAULT_MAX_PARAMETERS = 2**31
DEFAULT_MAX_MODULES = 10_000


class _TooLarge(Exception):
    pass


def _limit(env: str, default: int) -> int:
    text = os.environ.get(env, "")
    try:
        return int(float(text)) if text else default
    except ValueError:
        raise ConfigError(f"${env} must be a number, got {text!r}") from None


@contextlib.contextmanager
def _counting(max_parameters: int, max_modules: int):
    counts = {"parameters": 0, "modules": 0}

    def on_parameter(module, name, param):
        if param is not None:
            counts["parameters"] += param.numel()
            if counts["parameters"] > max_parameters:
                raise _TooLarge(f"more than {max_parameters:,} parameters")

    def on_module(module, name, submodule):
        counts["modules"] += 1
        if counts["modules"] > max_modules:
            raise _TooLarge(f"more than {max_modules:,} layers (modules)")

    handles = [_module.register_module_parameter_registration_hook(on_parameter),
               _module.register_module_module_registration_hook(on_module)]
    try:
        yield counts
    finally:
        for h in handles:
            h.remove()


class _SkipInPlaceOnMeta(TorchFunctionMode):
    """In-place ops (``normal_``, ``zero_``, ...) on meta tensors do nothing: there are no values,
    and skipping them skips PyTorch's slow reference implementations of random initialisation."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name.endswith("_") and not name.startswith("__"):
            first = args[0] if args else next(iter(kwargs.values()), None)
            if isinstance(first, torch.Tensor) and first.is_meta:
                return first
        return func(*args, **kwargs)


def _on_meta_already() -> bool:
    try:
        return torch.empty(0).device.type == "meta"
    except Exception:
        return False


def check_model_size(build: Callable[[], object], what: str) -> None:
    """Raise ``ConfigError`` when ``build()`` would create a model over the limits.

    Other errors of the trial build are left for the real build to raise (the same error, with
    the constructor's own message); a build already running on the meta device is not repeated.
    """
    if _on_meta_already():
        return
    max_parameters = _limit("ARCHLAB_MAX_PARAMETERS", DEFAULT_MAX_PARAMETERS)
    max_modules = _limit("ARCHLAB_MAX_MODULES", DEFAULT_MAX_MODULES)
    try:
        with _counting(max_parameters, max_modules), _SkipInPlaceOnMeta(), torch.device("meta"):
            build()
    except _TooLarge as e:
        raise ConfigError(f"{what} would have {e}: refused before building it (a typo in a size such as "
                          "n_layer?); set ARCHLAB_MAX_PARAMETERS or ARCHLAB_MAX_MODULES to allow it") from None
    except ConfigError:
        raise
    except Exception:  # e.g. a constructor that cannot run on meta: the real build decides
        pass
