"""Checks the blocks share: sizes at construction, inputs and masks at the call, ``from_torch``'s module.

Every failure is a ``ConfigError`` (a ``ValueError``) naming the argument, what was expected and
what was given -- raised where the mistake is made, not later as an obscure error inside torch:

- ``check_sizes(owner, kernel_size=0)`` -- sizes must be positive integers (or tuples of them);
- ``check_input(x, owner, weight)`` -- a floating-point tensor of the weights' dtype (any float
  dtype under autocast, which casts per operation);
- ``check_mask(mask, name)`` -- a boolean or floating-point mask. An integer 0/1 mask is refused:
  a 1 means "may attend" in archlab's convention, "masked out" in torch's ``attn_mask`` and
  ``key_padding_mask``, so its meaning cannot be guessed; ``mask.bool()`` (or ``~mask.bool()``)
  says which;
- ``check_module_type(cls, m, expected)`` -- ``from_torch`` was given the module it copies.
"""

from __future__ import annotations

import numbers

import torch
import torch.nn as nn

from archlab.errors import ConfigError, check


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_sizes(owner: str, minimum: int = 1, **sizes) -> None:
    """Each of ``sizes`` is an integer >= ``minimum``, or a tuple/list of them."""
    for name, value in sizes.items():
        items = value if isinstance(value, (tuple, list)) else (value,)
        check(len(items) > 0 and all(_is_int(v) and v >= minimum for v in items),
              f"{owner}: {name} must be {'a positive integer' if minimum == 1 else f'an integer >= {minimum}'} "
              f"(or a tuple of them), got {value!r}")


def _autocast_on(x: torch.Tensor) -> bool:
    try:
        return torch.is_autocast_enabled(x.device.type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def check_input(x, owner: str, weight: torch.Tensor | None = None, name: str = "input") -> None:
    """``x`` is a floating-point tensor whose dtype matches ``weight``'s (unless under autocast)."""
    if not isinstance(x, torch.Tensor):
        raise ConfigError(f"{owner}: {name} must be a torch.Tensor, got {type(x).__name__}")
    check(x.is_floating_point(),
          f"{owner}: {name} must be a floating-point tensor, got {x.dtype}"
          + (f"; convert it with .to({weight.dtype})" if weight is not None else ""))
    if weight is not None and x.dtype != weight.dtype and not _autocast_on(x):
        raise ConfigError(f"{owner}: {name} has dtype {x.dtype}, the weights are {weight.dtype}; convert one "
                          f"({name}.to({weight.dtype}) or module.to({x.dtype}))")


def check_mask(mask: torch.Tensor | None, name: str, true_means: str = "may attend") -> None:
    """A mask is boolean (True = ``true_means``) or floating point (added to the scores)."""
    if mask is None:
        return
    if not isinstance(mask, torch.Tensor):
        raise ConfigError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise ConfigError(f"{name} must be a bool tensor (True = {true_means}) or a float tensor added to the "
                          f"scores, got {mask.dtype}; an integer 0/1 mask is ambiguous: convert it with "
                          f"{name}.bool() or (~{name}.bool()) to say which positions are {true_means.split()[0]}")


def check_module_type(cls: type, m, expected: type | tuple[type, ...]) -> None:
    """``cls.from_torch(m)`` needs ``m`` to be an ``expected`` (a TypeError otherwise)."""
    if not isinstance(m, expected):
        names = " or ".join(f"torch.nn.{e.__name__}" for e in (expected if isinstance(expected, tuple)
                                                                 else (expected,)))
        raise TypeError(f"{cls.__name__}.from_torch expects a {names}, got {type(m).__name__}")


def torch_class(module: nn.Module) -> type:
    """The ``torch.nn`` class an archlab drop-in derives from (for its constructor's signature)."""
    return next(c for c in type(module).__mro__ if c.__module__.startswith("torch.nn"))
