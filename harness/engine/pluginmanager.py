"""Finding plugins through entry points and collecting what they register.

Every plugin, built-in or third-party, is an entry point in the ``genbench`` group.
``GENBENCH_LOAD_PLUGINS`` (comma-separated entry-point or distribution names; empty
for none) limits which load, and ``GENBENCH_DISABLE_PLUGINS`` leaves some out. A plugin
that fails to import, implements a hook that does not exist (a misspelt name), breaks a
rule, or registers a name twice is reported as a warning naming its distribution and
left out; the rest keep working. The torchvision workaround is applied before any
plugin is imported, so a plugin may ``import torchvision`` next to the CPU torch.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
import os
import re
import warnings
from collections.abc import Callable
from typing import Any

import pluggy

from ..api import hookspecs
from ..compat import GenbenchDeprecationWarning
from ..api.dataset import Dataset
from ..api.likelihood import Likelihood
from ..api.logger import Logger
from ..api.metric import Metric
from ..api.model import Capability, Model, expand, missing_methods
from ..errors import did_you_mean

GROUP = "genbench"
ENV_LOAD = "GENBENCH_LOAD_PLUGINS"
ENV_DISABLE = "GENBENCH_DISABLE_PLUGINS"
_NAME = re.compile(r"[a-z][a-z0-9_]*")

pm = pluggy.PluginManager(GROUP)
pm.add_hookspecs(hookspecs)


@dataclasses.dataclass(frozen=True)
class Source:
    """Where a plugin came from."""

    plugin: str
    distribution: str
    version: str

    def __str__(self) -> str:
        return f"plugin '{self.plugin}' ({self.distribution} {self.version})"


RUNTIME = "(registered at run time)"
_sources: dict[str, Source] = {}  # plugin name -> source, for entry-point plugins
_load_warnings: list[str] = []
_loaded = False


def _names(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _prepare_imports() -> None:
    """What a plugin's imports need: torchvision importable next to the CPU torch."""
    from .._torchvision_compat import ensure_torchvision

    try:
        ensure_torchvision()
    except ImportError:
        pass  # not installed: a plugin that needs it fails to load, with a warning


def load_entry_points() -> None:
    """Import and register every allowed entry point in the ``genbench`` group (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    _prepare_imports()
    allowed, disabled = _names(ENV_LOAD), _names(ENV_DISABLE) or set()
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = ep.dist
        source = Source(ep.name, dist.name if dist else "?", dist.version if dist else "?")
        if allowed is not None and ep.name not in allowed and source.distribution not in allowed:
            continue
        if ep.name in disabled or source.distribution in disabled:
            continue
        if pm.has_plugin(ep.name):
            _load_warnings.append(f"{source}: the plugin name is taken already; skipped")
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", GenbenchDeprecationWarning)
                plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as err:  # a broken third-party plugin must not break genbench
            _load_warnings.append(f"{source} failed to load: {type(err).__name__}: {err}")
            continue
        finally:
            _pass_on(source, caught)
        _sources[ep.name] = source
    _load_warnings.extend(_drop_unknown_hooks())


def _pass_on(source: Source, caught: list) -> None:
    """A plugin's use of an old genbench spelling becomes a load warning naming the plugin;
    any other warning its import raised goes on as it would have."""
    for w in caught:
        if issubclass(w.category, GenbenchDeprecationWarning):
            _load_warnings.append(f"{source}: {w.message}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)


def _drop_unknown_hooks() -> list[str]:
    """Leave out every plugin that implements a hook genbench does not have; say why."""
    known = [name for name in dir(hookspecs) if name.startswith("register_")]
    warnings = []
    for name, caller in list(vars(pm.hook).items()):
        if isinstance(caller, pluggy.HookCaller) and not caller.has_spec():
            for impl in caller.get_hookimpls():
                warnings.append(f"{source_of(impl.plugin_name)} implements unknown hook '{name}'"
                                f"{did_you_mean(name, known)}; the plugin is left out")
                pm.unregister(name=impl.plugin_name)
    return warnings


def source_of(plugin_name: str) -> Source:
    return _sources.get(plugin_name) or Source(plugin_name, RUNTIME, "")


@dataclasses.dataclass
class Registry:
    """Everything the loaded plugins registered, by name, and where each came from."""

    models: dict[str, type[Model]] = dataclasses.field(default_factory=dict)
    datasets: dict[str, type[Dataset]] = dataclasses.field(default_factory=dict)
    metrics: dict[str, Metric] = dataclasses.field(default_factory=dict)
    loggers: dict[str, type[Logger]] = dataclasses.field(default_factory=dict)
    sources: dict[tuple[str, str], Source] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)

    def plugin_sources(self) -> list[Source]:
        return sorted(set(self.sources.values()), key=lambda s: (s.distribution, s.plugin))


def get_registry() -> Registry:
    """Load the entry points (once) and collect all registrations afresh."""
    load_entry_points()
    reg = Registry(warnings=list(_load_warnings) + _drop_unknown_hooks())  # also plugins registered since
    kinds: list[tuple[str, str, dict, Callable[[Any], str]]] = [
        ("model", "register_models", reg.models, _check_model),
        ("dataset", "register_datasets", reg.datasets, _check_dataset),
        ("metric", "register_metrics", reg.metrics, _check_metric),
        ("logger", "register_loggers", reg.loggers, _check_logger),
    ]
    for kind, hook, table, check in kinds:
        for impl in getattr(pm.hook, hook).get_hookimpls():
            source = source_of(impl.plugin_name)

            def register(obj, _kind=kind, _table=table, _check=check, _source=source):
                try:
                    name = _check(obj)
                except (TypeError, ValueError) as err:
                    reg.warnings.append(f"{_source}: {_kind} not registered: {err}")
                    return
                if name in _table:
                    first = reg.sources[(_kind, name)]
                    reg.warnings.append(f"{_source}: {_kind} '{name}' is registered already by "
                                        f"{first}; the second one is ignored")
                    return
                _table[name] = obj
                reg.sources[(_kind, name)] = _source

            try:
                impl.function(register=register)
            except Exception as err:
                reg.warnings.append(f"{source}: {hook} failed: {type(err).__name__}: {err}")
    return reg


def _check_class(cls: Any, base: type) -> None:
    """A registered class: a subclass of ``base`` with a valid name and frozen Options."""
    if not (inspect.isclass(cls) and issubclass(cls, base)):
        raise TypeError(f"{cls!r} is not a subclass of genbench.{base.__name__}")
    _check_name(cls.name, cls)
    _check_options(cls.Options, cls)


def _check_model(cls: Any) -> str:
    _check_class(cls, Model)
    try:
        missing = missing_methods(cls)
    except ValueError as err:  # not a Capability
        raise TypeError(f"model '{cls.name}': {err}") from None
    for cap, method in missing:
        raise TypeError(f"model '{cls.name}' declares '{cap.value}' but does not implement {method}()")
    if Capability.LIKELIHOOD in expand(cls.capabilities) and not isinstance(cls.likelihood, Likelihood):
        raise TypeError(f"model '{cls.name}' declares 'likelihood' but its likelihood attribute is not a "
                        f"genbench.Likelihood (say the convention and whether the value is exact or a bound)")
    if getattr(cls, "train_step") is Model.train_step:
        raise TypeError(f"model '{cls.name}' does not implement train_step()")
    return cls.name


def _check_dataset(cls: Any) -> str:
    _check_class(cls, Dataset)
    return cls.name


def _check_metric(metric: Any) -> str:
    if not isinstance(metric, Metric):
        raise TypeError(f"{metric!r} is not a genbench.Metric")
    return metric.name


def _check_logger(cls: Any) -> str:
    _check_class(cls, Logger)
    if not (isinstance(cls.requires, tuple) and all(isinstance(m, str) for m in cls.requires)):
        raise TypeError(f"{cls.__name__}.requires must be a tuple of module names")
    return cls.name


def _check_name(name: Any, cls: Any) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{cls.__name__}.name {name!r} must match [a-z][a-z0-9_]*")


def _check_options(options: Any, cls: Any) -> None:
    if not (dataclasses.is_dataclass(options) and options.__dataclass_params__.frozen):
        raise TypeError(f"{cls.__name__}.Options must be a frozen dataclass")
