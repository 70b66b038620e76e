"""One registry that creates every model by name.

A model family registers a builder per architecture name::

    @register_model("resnet18", family="cnn", description="ResNet-18 (He et al. 2015)")
    def resnet18(**overrides) -> ResNet: ...

``create_model(name, **config)`` calls the builder with the user's config fields. Builders accept
*every* field of their config dataclass as a keyword, so a saved ``config.json`` rebuilds the same
model (see ``archlab.checkpoint``).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

from archlab.errors import ConfigError
from archlab.utils.fields import check_values
from archlab.utils.size import check_model_size

FAMILIES = ("cnn", "rnn", "transformer", "mlp")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    builder: Callable[..., Any]
    description: str = ""


_MODELS: dict[str, ModelEntry] = {}
_discovered = False


def register_model(name: str, *, family: str, description: str = ""):
    """Decorator: register ``builder(**config) -> nn.Module`` under ``name``."""
    if family not in FAMILIES:
        raise ConfigError(f"family must be one of {FAMILIES}, got {family!r}")

    def wrap(builder):
        if name in _MODELS and _MODELS[name].builder is not builder:
            raise ConfigError(f"model name {name!r} is registered twice")
        doc = description or ((builder.__doc__ or "").strip().splitlines() or [""])[0]
        _MODELS[name] = ModelEntry(name, family, builder, doc)
        return builder

    return wrap


def _discover() -> None:
    """Import every module of ``archlab.models`` once, so their ``@register_model`` lines run."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    import archlab.models as pkg

    for info in pkgutil.walk_packages(pkg.__path__, prefix=pkg.__name__ + "."):
        importlib.import_module(info.name)


def list_models(family: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally of one family."""
    _discover()
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"family must be one of {FAMILIES} or None, got {family!r}")
    return sorted(n for n, e in _MODELS.items() if family is None or e.family == family)


def model_info(name: str) -> ModelEntry:
    _discover()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(_MODELS))}"
        raise ConfigError(f"unknown model {name!r}{hint}")
    return _MODELS[name]


def create_model(name: str, **config: Any):
    """Build the architecture registered as ``name``; ``config`` overrides its config fields.

    A config whose model would be absurdly large is refused before any memory is allocated."""
    builder = model_info(name).builder
    check_model_size(lambda: builder(**config), f"model {name!r} with {_sizes(config)}")
    model = builder(**config)
    # The registry name travels with the model so save_pretrained can write it to config.json.
    model.model_name = name
    return model


def _sizes(config: dict[str, Any]) -> str:
    """The integer settings given, the likeliest cause of a model too large (for the message)."""
    ints = [f"{k}={v:,}" for k, v in config.items() if isinstance(v, int) and not isinstance(v, bool)]
    return ", ".join(ints) if ints else "its default config"


def build_config(config_cls, defaults: dict[str, Any], overrides: dict[str, Any]):
    """``config_cls(**{**defaults, **overrides})`` with a clear error for unknown fields.

    The shared helper for builders: ``resnet18(**kw)`` is
    ``ResNet(build_config(ResNetConfig, RESNET18, kw))``.
    """
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(
            f"{config_cls.__name__} has no field(s) {', '.join(unknown)}; valid fields: {', '.join(sorted(fields))}"
        )
    values = {**defaults, **overrides}
    for f in dataclasses.fields(config_cls):
        # JSON has no tuples: a config read back from config.json gives lists where tuples were.
        if isinstance(values.get(f.name), list) and str(f.type).startswith("tuple"):
            values[f.name] = _to_tuple(values[f.name])
    check_values(config_cls, values)  # a wrong type names the field here, not deep inside torch
    return config_cls(**values)


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x
