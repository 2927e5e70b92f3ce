"""Typed, documented option structures, validated against plain YAML data.

Model options, data set options and the sections of a suite file are frozen
dataclasses whose fields are declared with :func:`option`. :func:`build` turns a
mapping from YAML into such an object and collects every problem on the way, each
with the dotted path of the field that caused it, so a suite file reports all its
mistakes at once.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from ..errors import did_you_mean

Path = tuple  # of str keys and int indices


def option(default: Any = dataclasses.MISSING, help: str = "", *, min: float | None = None,
           max: float | None = None, default_factory: Any = dataclasses.MISSING, evaluation: bool = False) -> Any:
    """Declare one option of an options dataclass.

    ``help`` is shown by ``genbench plugins --model NAME``; ``min``/``max`` bound numbers
    (inclusive). Choices come from a ``Literal[...]`` type annotation. ``evaluation=True``
    marks a model option that training never reads (a sampler's steps, importance
    samples): ``genbench rescore DIR --set NAME=VALUE`` changes it on saved models.
    """
    meta = {"help": help, "min": min, "max": max, "evaluation": evaluation}
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple, not a mutable default, for an option")
    return dataclasses.field(default=default, default_factory=default_factory, metadata=meta)


def evaluation_only(cls: type) -> set[str]:
    """The fields of an options dataclass declared with ``evaluation=True``."""
    return {f.name for f in dataclasses.fields(cls) if f.metadata.get("evaluation")}


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """One field of an options dataclass, for documentation tables."""

    name: str
    type: str
    default: Any
    help: str
    required: bool
    evaluation: bool = False  # training never reads it (rescore --set may change it)


def describe(cls: type) -> list[OptionInfo]:
    """The fields of an options dataclass with their types, defaults and help."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name.startswith("_"):
            continue
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = None if required else (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        default = list(default) if isinstance(default, tuple) else default
        out.append(OptionInfo(f.name, type_name(hints[f.name]), default, f.metadata.get("help", ""), required,
                              bool(f.metadata.get("evaluation"))))
    return out


def type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is tuple:
        return f"list of {type_name(args[0])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp) or tp is dict:
        return "a mapping"
    if tp is list:
        return "a list"
    return getattr(tp, "__name__", str(tp))


def build(cls: type, data: Any, path: Path = ()) -> tuple[Any, list[tuple[Path, str]]]:
    """Validate ``data`` against dataclass ``cls``; return (instance or None, errors)."""
    errors: list[tuple[Path, str]] = []
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        return None, [(path, f"expected a mapping of options, got {_kind(data)}")]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            errors.append((path + (str(key),), f"unknown option '{key}'{did_you_mean(str(key), fields)}"))
    values = {}
    for name, f in fields.items():
        if name in data and data[name] == [] and f.default == ():
            values[name] = ()  # an empty list is fine where empty is the default
        elif name in data:
            value, errs = _convert(hints[name], data[name], path + (name,), f.metadata)
            errors.extend(errs)
            values[name] = value
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            errors.append((path + (name,), f"missing (required: {type_name(hints[name])})"))
    if errors:
        return None, errors
    try:
        return cls(**values), []
    except (TypeError, ValueError) as err:  # __post_init__ checks across fields
        return None, [(path, str(err))]


def _convert(tp: Any, value: Any, path: Path, meta: Mapping) -> tuple[Any, list]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None, []
        non_none = [a for a in args if a is not type(None)]
        last: list = []
        for arm in non_none:
            out, errs = _convert(arm, value, path, meta)
            if not errs:
                return out, []
            last = errs
        if len(non_none) == 1:
            return None, last
        # The one arm of the value's own kind (a mapping's dataclass, a string's choices) says what is wrong.
        fits = [a for a in non_none if (isinstance(value, Mapping) and dataclasses.is_dataclass(a))
                or (isinstance(value, str) and typing.get_origin(a) is Literal)]
        if len(fits) == 1:
            return None, _convert(fits[0], value, path, meta)[1]
        return None, [(path, f"expected {type_name(tp)}, got {_kind(value)}")]
    if origin is Literal:
        if value in args:
            return value, []
        return None, [(path, f"{value!r} is not valid{did_you_mean(str(value), map(str, args))}")]
    if origin is tuple:
        items = value if isinstance(value, (list, tuple)) else [value]
        out, errs = [], []
        for i, item in enumerate(items):
            v, e = _convert(args[0], item, path + (i,) if isinstance(value, list) else path, meta)
            out.append(v)
            errs.extend(e)
        if not items:
            errs.append((path, "expected at least one value"))
        return tuple(out), errs
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path)
    if tp is typing.Any:
        return value, []
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, tp)
    if not ok:
        return None, [(path, f"expected {type_name(tp)}, got {_kind(value)}")]
    if tp is float and not math.isfinite(value):  # YAML's .nan and .inf pass every bound check
        return None, [(path, f"expected a finite number, got {value}")]
    lo, hi = meta.get("min"), meta.get("max")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if lo is not None and value < lo:
            return None, [(path, f"must be at least {lo}, got {value}")]
        if hi is not None and value > hi:
            return None, [(path, f"must be at most {hi}, got {value}")]
    return value, []


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return f"{type(value).__name__} {value!r}"


def as_dict(obj: Any) -> dict:
    """A dataclass as plain JSON-friendly data (tuples become lists)."""
    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {k: plain(v) for k, v in dataclasses.asdict(obj).items()}
