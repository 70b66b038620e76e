"""The two-path convention: a readable ``reference`` path and a ``fused`` fast path, one function."""

from __future__ import annotations

import torch.nn as nn

from archlab.errors import ConfigError

IMPLS = ("reference", "fused")


class TwoPath:
    """Mixin for blocks with two implementations; ``self.impl`` chooses, ``"fused"`` by default.

    Subclasses (also subclassing ``nn.Module``) branch on ``self.impl`` in ``forward``.
    """

    _impl: str = "fused"

    @property
    def impl(self) -> str:
        return self._impl

    @impl.setter
    def impl(self, value: str) -> None:
        if value not in IMPLS:
            raise ConfigError(f"impl must be one of {IMPLS}, got {value!r}")
        self._impl = value


def set_impl(module: nn.Module, impl: str) -> nn.Module:
    """Set ``impl`` on every two-path block inside ``module``; returns ``module``."""
    if impl not in IMPLS:
        raise ConfigError(f"impl must be one of {IMPLS}, got {impl!r}")
    for m in module.modules():
        if isinstance(m, TwoPath):
            m.impl = impl
    return module
