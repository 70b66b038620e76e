"""One registry that creates every model by name.

A model family registers a builder per architecture name::

    @register_model("resnet18", family="cnn", description="ResNet-18 (He et al. 2015)")
    def resnet18(**overrides) -> ResNet: ...

``create_model(name, **config)`` calls the builder with the user's config fields. Builders accept
*every* field of their config dataclass as a keyword, so a saved ``config.json`` rebuilds the same
model (see ``archlab.checkpoint``).

The builder's return annotation names the model class; from it the registry knows, without
building anything, the model's config dataclass (``ModelClass.config_class``) and the
capabilities it implements (``archlab.models.interfaces``: image classifier, language model ...),
so a task can ask for ``models_for("lm")`` or refuse a model it cannot train.

Building the registry imports every model module, and with them torch (a few seconds). What only
names and describes the models -- ``archlab list`` -- reads ``model_index()`` instead: the same
metadata (name, family, description, the tasks that train each model) from ``model_index.json``
beside this file, generated from the registry by ``python -m archlab.registry`` and stamped with
a digest of ``archlab/models``' sources. When the sources no longer match the stamp (a model was
edited since), the live registry answers instead, so the index is never stale; a test checks that
the committed file is current.
"""

from __future__ import annotations

import contextvars
import dataclasses
import difflib
import hashlib
import importlib
import json
import pkgutil
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from archlab.errors import ConfigError
from archlab.utils.fields import check_values

FAMILIES = ("cnn", "rnn", "transformer", "mlp", "boosting")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str
    builder: Callable[..., Any]
    description: str = ""
    model_class: type | None = None   # what the builder returns (its return annotation)

    @property
    def config_class(self) -> type:
        """The model's config dataclass, read from the class (no model is built)."""
        return self.model_class.config_class

    @property
    def interfaces(self) -> list[type]:
        """The capabilities of ``archlab.models.interfaces`` the model implements, main one first."""
        from archlab.models.interfaces import capabilities

        return capabilities(self.model_class)

    @property
    def tasks(self) -> list[str]:
        """The tasks that can train this model."""
        from archlab.models.interfaces import tasks_of

        return [t for i in self.interfaces for t in tasks_of(i)]

    @property
    def fitted(self) -> bool:
        """True when the model is fitted by its own algorithm (gradient-boosted trees), not trained by
        gradient steps: its class declares ``fitted = True`` (``archlab.models.interfaces.Capability``)."""
        return bool(self.interfaces) and bool(self.model_class.fitted)


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
        model_class = typing.get_type_hints(builder).get("return")
        config_class = getattr(model_class, "config_class", None)
        if not (isinstance(model_class, type) and dataclasses.is_dataclass(config_class)):
            raise ConfigError(f"the builder of {name!r} must be annotated with the model class it returns, "
                              f"and that class must name its config dataclass in config_class; got {model_class!r}")
        _MODELS[name] = ModelEntry(name, family, builder, doc, model_class)
        return builder

    return wrap


def _discover() -> None:
    """Import every module of ``archlab.models`` once, so their ``@register_model`` lines run."""
    global _discovered
    if _discovered:
        return
    import archlab.models as pkg

    for info in pkgutil.walk_packages(pkg.__path__, prefix=pkg.__name__ + "."):
        importlib.import_module(info.name)
    _discovered = True  # only once every file imported: a failed import is retried, not hidden


def list_models(family: str | None = None) -> list[str]:
    """Sorted names of the registered models, optionally of one family."""
    _discover()
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"family must be one of {FAMILIES} or None, got {family!r}")
    return sorted(n for n, e in _MODELS.items() if family is None or e.family == family)


def models_for(task: str) -> list[str]:
    """Sorted names of the registered models that task ``task`` can train."""
    _discover()
    return sorted(n for n, e in _MODELS.items() if task in e.tasks)


def model_info(name: str) -> ModelEntry:
    _discover()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(_MODELS))}"
        raise ConfigError(f"unknown model {name!r}{hint}")
    return _MODELS[name]


class _ConfigOnly(Exception):
    """Raised by ``build_config`` while ``model_config`` asks a builder for its config alone."""

    def __init__(self, config):
        super().__init__("config only")
        self.config = config


_config_only = contextvars.ContextVar("archlab_config_only", default=False)


def model_config(name: str, **config: Any):
    """The config dataclass that ``create_model(name, **config)`` would build the model with, without
    building the model: the variant's defaults (e.g. ``vit_tiny``'s patch size) and ``config``."""
    entry = model_info(name)
    token = _config_only.set(True)
    try:
        entry.builder(**config)
    except _ConfigOnly as found:
        return found.config
    finally:
        _config_only.reset(token)
    raise ConfigError(f"the builder of {name!r} must make its config with build_config()")


def create_model(name: str, **config: Any):
    """Build the architecture registered as ``name``; ``config`` overrides its config fields.

    A config whose model would be absurdly large is refused before any memory is allocated."""
    from archlab.utils.size import check_model_size  # here: it imports torch, which `archlab list` never needs

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
    config = config_cls(**values)
    if _config_only.get():
        raise _ConfigOnly(config)
    return config


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


# ------------------------------------------------------------------------------------------------
# The light index: names, families, tasks and descriptions without importing the models

INDEX_FILE = Path(__file__).with_name("model_index.json")
MODELS_DIR = Path(__file__).with_name("models")


def models_source_digest(models_dir: Path = MODELS_DIR) -> str:
    """SHA-256 of every ``.py`` file under ``archlab/models`` (relative path and bytes, sorted)."""
    digest = hashlib.sha256()
    for path in sorted(models_dir.rglob("*.py")):
        digest.update(path.relative_to(models_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_model_index() -> dict[str, Any]:
    """The index as ``model_index.json`` holds it, from the live registry: every model's name,
    family, description and the tasks that train it, and every task a model can declare."""
    from archlab.models.interfaces import INTERFACES, tasks_of

    _discover()
    models = [{"name": e.name, "family": e.family, "description": e.description, "tasks": e.tasks}
              for e in sorted(_MODELS.values(), key=lambda e: e.name)]
    return {"models_source_sha256": models_source_digest(), "tasks": sorted(t for i in INTERFACES for t in tasks_of(i)),
            "models": models}


def write_model_index(path: Path = INDEX_FILE) -> Path:
    path.write_text(json.dumps(build_model_index(), indent=1) + "\n")
    return path


def _read_index() -> dict[str, Any]:
    """``model_index.json`` when it matches the sources of ``archlab/models`` (no torch import);
    otherwise the same index from the live registry."""
    try:
        index = json.loads(INDEX_FILE.read_text())
        if index.get("models_source_sha256") == models_source_digest():
            return index
    except (OSError, ValueError):
        pass
    return build_model_index()


def model_index(family: str | None = None) -> list[dict[str, Any]]:
    """``[{"name", "family", "description", "tasks"}, ...]`` sorted by name, optionally of one
    family, without importing the models when the committed index is current."""
    if family is not None and family not in FAMILIES:
        raise ConfigError(f"family must be one of {FAMILIES} or None, got {family!r}")
    return [m for m in _read_index()["models"] if family is None or m["family"] == family]


def task_index() -> list[str]:
    """The tasks the models' interfaces name (sorted): what ``list --task`` takes, without
    importing the models."""
    return list(_read_index()["tasks"])


if __name__ == "__main__":  # python -m archlab.registry: regenerate model_index.json
    # Through the imported module: the models register into its table, not into __main__'s.
    print(f"wrote {importlib.import_module('archlab.registry').write_model_index()}")
