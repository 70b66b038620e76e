"""Checking the values given to a config dataclass against its fields' annotated types.

Every config of archlab is a dataclass of plain fields (``int``, ``float``, ``bool``, ``str``,
tuples of them, ``X | None``). ``check_values(cls, values)`` refuses a value of the wrong type
(``"2"`` or ``2.5`` for an ``int``, ``1`` for a ``bool``, a list where a number belongs) and a
float that is not finite, with a ``ConfigError`` naming the field, what it takes and what it got --
before the constructor runs, so a wrong type never surfaces later as an obscure error inside
torch. An ``int`` is a fine ``float``; a list is a fine tuple (JSON has no tuples).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from archlab.errors import ConfigError


def field_types(config_cls) -> dict[str, Any]:
    """``{field name: resolved type}`` of a dataclass (annotations may be strings)."""
    try:
        hints = typing.get_type_hints(config_cls)
    except Exception:  # an annotation that cannot be resolved: fall back to the raw one
        hints = {}
    return {f.name: hints.get(f.name, f.type) for f in dataclasses.fields(config_cls)}


def describe(annotation: Any) -> str:
    """``int`` -> "an integer", ``tuple[int, ...]`` -> "a tuple of an integer", ..."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("None" if a is type(None) else describe(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a sequence of ({describe(args[0])})"
        return f"a sequence of {len(args)} values ({', '.join(describe(a) for a in args)})"
    return {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}.get(
        annotation, getattr(annotation, "__name__", str(annotation)))


def matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` is acceptable for a field annotated ``annotation`` (unknown ones: yes)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(value is None if a is type(None) else matches(value, a) for a in args)
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args))
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is str:
        return isinstance(value, str)
    return True


def check_values(config_cls, values: dict[str, Any]) -> None:
    """Raise ``ConfigError`` for the first of ``values`` that does not fit its field's type."""
    types_ = field_types(config_cls)
    for name, value in values.items():
        if name in types_ and not matches(value, types_[name]):
            raise ConfigError(f"{name} takes {describe(types_[name])}, got {value!r} ({type(value).__name__}) "
                              f"in {config_cls.__name__}")


def check_fields(obj) -> None:
    """``check_values`` on a constructed dataclass (for ``__post_init__``)."""
    check_values(type(obj), {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
