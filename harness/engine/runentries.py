"""Run entries: each ``runs:`` entry of a suite file expanded into the runs it stands for.

An entry is one configuration, one per combination of its ``sweep:`` values, or a
search (handed on to :mod:`.searchspace`); each configuration runs once per seed.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Optional

from ..api import options as opt
from ..errors import did_you_mean
from .pluginmanager import Registry
from .precision import TrainingOptions
from .searchspace import parse_space
from .suitefile import RunEntry

MAX_RUNS = 10_000     # runs one suite may expand to (configurations x seeds)


@dataclasses.dataclass(frozen=True)
class TrialSpec:
    """What makes a run a trial of a search: scored on the validation split by one metric."""

    search: str                          # the searched entry's label
    study: str                           # the Optuna study's name
    number: int                          # 0-based
    metric: str
    params: tuple[tuple[str, Any], ...]  # the drawn options

    def as_dict(self) -> dict:
        return {"search": self.search, "study": self.study, "number": self.number, "metric": self.metric,
                "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.params}}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One training run: a configuration and a seed (and, for a trial, what it tries)."""

    label: str
    model: str
    options: Any  # the model's frozen Options instance
    seed: int
    trial: Optional[TrialSpec] = None
    training: Optional[TrainingOptions] = None  # its entry's training:, over the suite's; None: the suite's
    where: tuple = dataclasses.field(default=(), compare=False)  # its entry, ("runs", i), for messages

    def options_dict(self) -> dict:
        return opt.as_dict(self.options)


def expand_runs(entries: Any, seeds: tuple[int, ...], reg: Registry, errors: list,
                searched: list, suite_training: TrainingOptions | None) -> tuple[RunSpec, ...]:
    """The fixed runs; entries with a search go to ``searched`` as (label, entry, space, where, training)."""
    if not isinstance(entries, list):
        return ()  # the missing or mistyped field is already reported by SuiteFile
    configs: list[tuple[str, str, Any, tuple, TrainingOptions | None]] = []
    total = 0
    for i, raw in enumerate(entries):
        entry, errs = opt.build(RunEntry, raw, ("runs", i))
        errors.extend(errs)
        if entry is None:
            continue
        training = _entry_training(entry, suite_training, ("runs", i, "training"), errors)
        if entry.model not in reg.models:
            errors.append((("runs", i, "model"), f"unknown model '{entry.model}'"
                           f"{did_you_mean(entry.model, reg.models)}"))
            continue
        Options = reg.models[entry.model].Options
        if entry.search_metric is not None and "search" not in raw:
            errors.append((("runs", i, "search_metric"), "this entry has no search: its options are fixed"))
        if "search" in raw:
            if entry.sweep:
                errors.append((("runs", i, "sweep"), "sweep and search cannot be combined in one run entry; "
                               "search alone (a choice covers a sweep's values)"))
                continue
            base, errs = opt.build(Options, entry.options, ("runs", i, "options"))
            errors.extend(errs)
            space = parse_space(entry.search, Options, entry.options, ("runs", i, "search"), errors)
            searched.append((_label(entry, {}), entry, space if base is not None else (), ("runs", i), training))
            configs.append((_label(entry, {}), entry.model, None, ("runs", i), training))
            continue
        valid_names = {f.name for f in dataclasses.fields(Options)}
        bad_sweep = False
        for key, values in entry.sweep.items():
            if key not in valid_names:
                errors.append((("runs", i, "sweep", key), f"unknown option '{key}' of model "
                               f"'{entry.model}'{did_you_mean(str(key), valid_names)}"))
                bad_sweep = True
            elif not isinstance(values, list) or not values:
                errors.append((("runs", i, "sweep", key), "expected a non-empty list of values"))
                bad_sweep = True
        if bad_sweep:
            continue
        count = math.prod(len(v) for v in entry.sweep.values()) * max(1, len(seeds))
        if total + count > MAX_RUNS:
            errors.append((("runs", i) + (("sweep",) if entry.sweep else ()),
                           f"the suite expands to more than {MAX_RUNS:,} runs (configurations x "
                           f"{len(seeds)} seeds) by this entry; split it into several suites"))
            break
        total += count
        keys = list(entry.sweep)
        for combo in itertools.product(*(entry.sweep[k] for k in keys)) if keys else [()]:
            swept = dict(zip(keys, combo))
            where = ("runs", i, "sweep") if swept else ("runs", i, "options")
            options, errs = opt.build(Options, {**entry.options, **swept}, where)
            if errs and swept:  # name the offending sweep value, not the merged options
                errs = [(p if p[:3] != where else ("runs", i, "sweep") + p[3:], m) for p, m in errs]
            errors.extend(errs)
            if options is not None:
                configs.append((_label(entry, swept), entry.model, options, ("runs", i), training))
    seen: dict[str, tuple] = {}
    for label, _, _, where, _ in configs:
        if label in seen:
            errors.append((where + ("label",), f"two runs are both labelled '{label}' "
                           f"(also {opt.format_path(seen[label])}); give each a distinct label"))
        seen.setdefault(label, where)
    return tuple(RunSpec(label, model, options, seed, training=training, where=where)
                 for label, model, options, where, training in configs for seed in seeds if options is not None)


def check_shapes(runs: tuple[RunSpec, ...], searched: list, dataset: str, shape, reg: Registry,
                 errors: list) -> None:
    """Each run's model can take the data set's images (a searched entry: under its fixed options)."""
    seen = set()
    entries = [(r.model, r.options, r.where) for r in runs]
    for _, entry, _, where, _ in searched:
        base, _ = opt.build(reg.models[entry.model].Options, entry.options, where + ("options",))
        if base is not None:
            entries.append((entry.model, base, where))
    for model, options, where in entries:
        key = (model, repr(options), where)  # one check per configuration, not per seed
        if key in seen:
            continue
        seen.add(key)
        try:
            problem = reg.models[model].unsupported_shape(options, tuple(shape))
        except Exception as err:  # a plugin's broken check must not hide the others
            problem = f"its unsupported_shape raised {type(err).__name__}: {err}"
        if problem:
            size = "x".join(map(str, shape))
            errors.append((where + ("model",), f"model '{model}' cannot take the {size} images of data set "
                           f"'{dataset}': {problem}"))


def _entry_training(entry: RunEntry, suite_training: TrainingOptions | None, where: tuple,
                    errors: list) -> TrainingOptions | None:
    """An entry's own ``training:`` over the suite's (None where it has none)."""
    if not entry.training or suite_training is None:
        return None
    training, errs = opt.build(TrainingOptions, {**opt.as_dict(suite_training), **entry.training}, where)
    errors.extend(errs)
    return training


def _label(entry: RunEntry, swept: dict) -> str:
    shown = swept if entry.label else {**entry.options, **entry.training, **swept}
    base = entry.label or entry.model
    if not shown:
        return base
    return base + "[" + ",".join(f"{k}={_short(v)}" for k, v in shown.items()) + "]"


def _short(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "-".join(map(str, value))
    return str(value)
