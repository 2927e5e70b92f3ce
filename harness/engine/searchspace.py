"""The ``search:`` form of a suite file: distributions over a model's options.

A run entry's ``search:`` maps option names to one distribution each::

    search:
      lr: {loguniform: [1.0e-4, 3.0e-3]}
      beta: {uniform: [0.5, 4.0]}
      latent_dim: {int: [8, 64]}
      hidden_dim: {choice: [256, 512]}

The suite's top-level ``trials: K`` gives every searched entry the same K trials (the
equal tuning budget) and ``sampler: random | tpe`` picks Optuna's sampler. Every
problem is reported at validate time, one line each, like the rest of the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
import typing
from typing import Any, Optional

from ..api import options as opt
from ..errors import did_you_mean, install_hint, shown
from .precision import TrainingOptions

KINDS = ("loguniform", "uniform", "int", "choice")
SAMPLERS = ("random", "tpe")
MAX_CHOICES = 100
_PRIMITIVE = (str, int, float, bool)


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched option and its distribution."""

    name: str
    kind: str                      # one of KINDS
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple = ()            # for "choice": the option values as written

    def distribution(self):
        """The Optuna distribution (choices that are lists go in as JSON text)."""
        from optuna import distributions as d

        if self.kind == "choice":
            return d.CategoricalDistribution([_encode(c) for c in self.choices])
        if self.kind == "int":
            return d.IntDistribution(int(self.low), int(self.high))
        return d.FloatDistribution(float(self.low), float(self.high), log=self.kind == "loguniform")

    def value(self, drawn: Any) -> Any:
        """The option value for what Optuna drew."""
        if self.kind == "choice":
            for c in self.choices:
                if _encode(c) == drawn:
                    return c
            raise ValueError(f"{self.name}={drawn!r} is not one of the search's choices")
        if not isinstance(drawn, (int, float)) or isinstance(drawn, bool) or not self.low <= drawn <= self.high:
            raise ValueError(f"{self.name}={drawn!r} is outside the search's range [{self.low}, {self.high}]")
        return int(drawn) if self.kind == "int" else float(drawn)

    def written(self) -> dict:
        """As in the suite file."""
        if self.kind == "choice":
            return {"choice": [list(c) if isinstance(c, tuple) else c for c in self.choices]}
        return {self.kind: [self.low, self.high]}


def _encode(value: Any) -> Any:
    if isinstance(value, _PRIMITIVE) or value is None:
        return value
    return json.dumps(list(value) if isinstance(value, tuple) else value)


@dataclasses.dataclass(frozen=True)
class Search:
    """The search of one run entry: its label, model, fixed options and space."""

    label: str
    model: str
    fixed: tuple[tuple[str, Any], ...]   # the entry's options:, as written
    space: tuple[Param, ...]
    metric: str                          # scored on the validation split
    higher_is_better: bool
    where: tuple = ()                    # ("runs", i), for messages
    training: Optional[TrainingOptions] = None  # the entry's own, over the suite's; None: the suite's

    @property
    def study_name(self) -> str:
        """The Optuna study's name: the label plus a hash of what was searched, so a
        changed space is never mistaken for the same study."""
        what = {"model": self.model, "fixed": dict(self.fixed), "space": [p.written() | {"name": p.name}
                                                                           for p in self.space],
                "metric": self.metric}
        digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:12]
        return f"{self.label}#{digest}"

    def written(self) -> dict:
        return {p.name: p.written() for p in self.space}


def parse_space(raw: Any, Options: type, fixed: dict, where: tuple, errors: list) -> tuple[Param, ...]:
    """The ``search:`` mapping of one run entry, checked against the model's ``Options``."""
    if not isinstance(raw, dict) or not raw:
        errors.append((where, "expected a mapping of option -> distribution, e.g. "
                       "{lr: {loguniform: [1.0e-4, 3.0e-3]}}"))
        return ()
    names = [f.name for f in dataclasses.fields(Options) if not f.name.startswith("_")]
    params = []
    for name, dist in raw.items():
        at = where + (str(name),)
        if name not in names:
            errors.append((at, f"unknown option '{name}' of this model{did_you_mean(str(name), names)}"))
            continue
        if name in fixed:
            errors.append((at, f"'{name}' is both set in options: and searched; keep one"))
            continue
        param = _parse_param(str(name), dist, at, errors)
        if param is not None and _check_values(param, Options, fixed, at, errors):
            params.append(param)
    return tuple(params)


def _parse_param(name: str, dist: Any, at: tuple, errors: list) -> Param | None:
    example = "{loguniform: [1.0e-4, 3.0e-3]}, {uniform: [0, 1]}, {int: [8, 64]} or {choice: [a, b]}"
    if not isinstance(dist, dict) or len(dist) != 1:
        errors.append((at, f"expected one distribution, as {example}"))
        return None
    kind, values = next(iter(dist.items()))
    if kind not in KINDS:
        errors.append((at + (str(kind),), f"unknown distribution '{kind}' (one of {', '.join(KINDS)})"
                       f"{did_you_mean(str(kind), KINDS)}"))
        return None
    at = at + (kind,)
    if kind == "choice":
        if not isinstance(values, list) or not values:
            errors.append((at, "expected a non-empty list of values"))
            return None
        if len(values) > MAX_CHOICES:
            errors.append((at, f"{len(values)} values; at most {MAX_CHOICES}"))
            return None
        choices = tuple(tuple(v) if isinstance(v, list) else v for v in values)
        if len({_encode(c) for c in choices}) < len(choices):
            errors.append((at, "a value is listed twice"))
            return None
        return Param(name, kind, choices=choices)
    if (not isinstance(values, list) or len(values) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        errors.append((at, f"expected [low, high], two numbers, got {shown(values)}"))
        return None
    low, high = values
    if not all(math.isfinite(v) for v in values):
        errors.append((at, f"the range must be finite, got {shown(values)}"))
    elif kind == "int" and not all(isinstance(v, int) for v in values):
        errors.append((at, f"an int range takes whole numbers, got {shown(values)}"))
    elif low == high:
        errors.append((at, f"empty range [{low}, {high}]: give low < high (or set the option under options:)"))
    elif low > high:
        errors.append((at, f"inverted range [{low}, {high}]: write [{high}, {low}]"))
    elif kind == "loguniform" and low <= 0:
        errors.append((at, f"a log-uniform range must lie above 0, got [{low}, {high}]; "
                       f"use uniform for a range that includes 0"))
    else:
        return Param(name, kind, low, high)
    return None


def _check_values(param: Param, Options: type, fixed: dict, at: tuple, errors: list) -> bool:
    """Every value the distribution can give is one the option accepts (both ends of a
    range; each choice), so no trial fails on an invalid option."""
    if param.kind == "choice":
        tries = [(at + ("choice", i), c) for i, c in enumerate(param.choices)]
    else:
        cast = int if param.kind == "int" else float
        tries = [(at + (param.kind,), cast(param.low)), (at + (param.kind,), cast(param.high))]
        hint = typing.get_type_hints(Options).get(param.name)
        if cast is float and hint in (int, typing.Optional[int]):
            errors.append((at + (param.kind,), f"option '{param.name}' takes whole numbers: use "
                           f"{{int: [{math.ceil(param.low)}, {math.floor(param.high)}]}} or a choice"))
            return False
    ok = True
    for path, value in tries:
        value = list(value) if isinstance(value, tuple) else value
        _, errs = opt.build(Options, {**fixed, param.name: value})
        for _, message in [(p, m) for p, m in errs if p[:1] in ((param.name,), ())]:
            errors.append((path, f"{shown(value)} is not a valid '{param.name}': {message}"))
            ok = False
    return ok


def check_searches(top, searched: list, primary: str | None, dataset, reg, errors: list) -> tuple[Search, ...]:
    """The searched entries with their metrics; a search needs trials and a validation split."""
    if top is None:
        return ()
    if top.search_metric is not None and top.search_metric not in reg.metrics:
        errors.append((("search_metric",), f"unknown metric '{top.search_metric}'"
                       f"{did_you_mean(top.search_metric, reg.metrics)}"))
    if not searched:
        if top.trials is not None:
            errors.append((("trials",), "no run entry has a search: to spend the trials on; add "
                           "search: {option: distribution} to a run, or remove trials"))
        return ()
    first = searched[0][3] + ("search",)
    if importlib.util.find_spec("optuna") is None:
        errors.append((first, "a search needs Optuna, which is not installed: " + install_hint("genbench[optuna]")))
    if top.trials is None:
        errors.append((("trials",), "a search needs trials: K at the top level (the same K trials for "
                       "every searched run entry)"))
    if dataset is not None and dataset.validation == 0:
        errors.append((("dataset", "validation"), "a search scores its trials on a validation split held out "
                       "of the training images, never on the test split: set dataset.validation: N "
                       "(e.g. 5000)"))
    if dataset is not None and dataset.eval_split == "validation":
        errors.append((("dataset", "eval_split"), "with a search, trials are scored on the validation split "
                       "and the final runs on the test split: remove eval_split: validation"))
    out = []
    for label, entry, space, where, training in searched:
        if not space:
            continue  # its problems are reported already
        metric = entry.search_metric or top.search_metric or primary
        if metric not in reg.metrics:
            if entry.search_metric:
                errors.append((where + ("search_metric",), f"unknown metric '{metric}'"
                               f"{did_you_mean(metric, reg.metrics)}"))
            continue
        model = reg.models[entry.model]
        if not reg.metrics[metric].applies_to(model):
            fits = [m for m in (top.metrics or ()) if isinstance(m, str) and m in reg.metrics
                    and reg.metrics[m].applies_to(model)]
            errors.append((where + ("search_metric",), f"metric '{metric}' cannot score model '{entry.model}' "
                           f"(it needs {', '.join(sorted(c.value for c in reg.metrics[metric].requires))}); "
                           f"set search_metric to one that can" + (f": {', '.join(fits)}" if fits else "")))
            continue
        out.append(Search(label, entry.model, tuple(entry.options.items()), space, metric,
                          reg.metrics[metric].higher_is_better, where, training))
    return tuple(out)
