"""One registry that creates every model by name.

A model family registers a builder per architecture name::

    @register_model("resnet18", family="cnn", description="ResNet-18 (He et al. 2015)")
    def resnet18(**overrides) -> ResNet: ...

``create_model(name, **config)`` calls the builder with the user's config fields. Builders accept
*every* field of their config dataclass as a keyword, so a saved ``config.json`` rebuilds the same
model (see ``archlab.checkpoint``).

Building the registry imports every model module, and with them torch (a few seconds). What only
names and describes the models -- ``archlab list`` -- reads ``model_index()`` instead: the same
metadata from ``model_index.json`` beside this file, generated from the registry by
``python -m archlab.registry`` and stamped with a digest of ``archlab/models``' sources. When the
sources no longer match the stamp (a model was edited since), the live registry answers instead,
so the index is never stale; a test checks that the committed file is current.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib
import json
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from archlab.errors import ConfigError

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
    """Build the architecture registered as ``name``; ``config`` overrides its config fields."""
    model = model_info(name).builder(**config)
    # The registry name travels with the model so save_pretrained can write it to config.json.
    model.model_name = name
    return model


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
    return config_cls(**values)


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


# ------------------------------------------------------------------------------------------------
# The light index: names, families and descriptions without importing the models

INDEX_FILE = Path(__file__).with_name("model_index.json")
MODELS_DIR = Path(__file__).with_name("models")


def models_source_digest(models_dir: Path = MODELS_DIR) -> str:
    """SHA-256 of every ``.py`` file under ``archlab/models`` (relative path and bytes, sorted)."""
    digest = hashlib.sha256()
    for path in sorted(models_dir.rglob("*.py")):
        digest.update(path.relative_to(models_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_model_index() -> dict[str, Any]:
    """The index as ``model_index.json`` holds it, from the live registry."""
    _discover()
    models = [{"name": e.name, "family": e.family, "description": e.description}
              for e in sorted(_MODELS.values(), key=lambda e: e.name)]
    return {"models_source_sha256": models_source_digest(), "models": models}


def write_model_index(path: Path = INDEX_FILE) -> Path:
    path.write_text(json.dumps(build_model_index(), indent=1) + "\n")
    return path


def model_index(family: str | None = None) -> list[dict[str, str]]:
    """``[{"name", "family", "description"}, ...]`` sorted by name, optionally of one family.

    Read from ``model_index.json`` when it matches the sources of ``archlab/models`` (no torch
    import); otherwise from the live registry.
    """
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"family must be one of {FAMILIES} or None, got {family!r}")
    try:
        index = json.loads(INDEX_FILE.read_text())
        fresh = index.get("models_source_sha256") == models_source_digest()
    except (OSError, ValueError):
        fresh = False
    if not fresh:
        index = build_model_index()
    return [m for m in index["models"] if family is None or m["family"] == family]


if __name__ == "__main__":  # python -m archlab.registry: regenerate model_index.json
    # Through the imported module: the models register into its table, not into __main__'s.
    print(f"wrote {importlib.import_module('archlab.registry').write_model_index()}")
