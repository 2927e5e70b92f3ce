"""Suite files: YAML -> validated, frozen configuration objects.

Every problem in a file is collected and reported together, one line each, as
``FILE: path.to.field: message (line N)``. Names of models, data sets, metrics and
options are checked against what the loaded plugins registered, with suggestions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..api import options as opt
from ..api.extractor import ExtractorFile, ExtractorSpec, file_sha256
from ..api.metric import EvalOptions
from ..errors import ConfigErrors, did_you_mean, install_hint, shown
from ..results.files import slug
from ..results import yamlfile
from .pluginmanager import Registry
from .precision import TrainingOptions
from .runentries import RunSpec, check_shapes, expand_runs
from .searchspace import Search, check_searches
from .suitefile import BudgetConfig, DatasetConfig, ReportOptions, SuiteFile


@dataclasses.dataclass(frozen=True)
class Suite:
    """A validated suite: the file's settings plus the expanded, resolved runs."""

    path: str
    name: str
    description: str
    dataset: DatasetConfig
    dataset_options: Any
    budget: BudgetConfig
    seeds: tuple[int, ...]
    batch_size: int
    metrics: tuple[str, ...]
    primary_metric: str
    save_models: bool
    runs: tuple[RunSpec, ...]
    evaluation: EvalOptions = EvalOptions()
    report: ReportOptions = ReportOptions()
    training: TrainingOptions = TrainingOptions()
    metric_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # name -> Options (or None)
    loggers: tuple[tuple[str, Any], ...] = ()  # (name, Options) of each selected logger
    searches: tuple[Search, ...] = ()  # the searched entries; their final runs come after the search
    trials: int = 0
    sampler: str = "random"
    search_seed: int = 1000
    warnings: tuple[str, ...] = ()  # deprecated settings that still work, for validate and run to show
    lines: Mapping[tuple, int] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    def training_of(self, run: RunSpec) -> TrainingOptions:
        """The precision and compile setting ``run`` trains with."""
        return self.training if run.training is None else run.training

    def trainings(self) -> list[tuple[tuple, TrainingOptions]]:
        """(where in the file, settings) of the suite's training: and of each entry's own."""
        entries = [(r.where, r.training) for r in self.runs] + [(s.where, s.training) for s in self.searches]
        out = [(("training",), self.training)]
        for where, training in entries:
            item = (where + ("training",), training)
            if training is not None and item not in out:
                out.append(item)
        return out

    def describe_runs(self) -> str:
        """``18 runs (6 configurations x 3 seeds)``, with the search's trials when it has one."""
        configs = len({r.label for r in self.runs}) + len(self.searches)
        runs = configs * len(self.seeds)
        text = f"{runs} runs ({configs} configurations x {len(self.seeds)} seeds)"
        if self.searches:
            text += (f" after a search of {self.trials} trials x {len(self.searches)} searched configurations "
                     f"({self.sampler} sampler) on the validation split")
        return text

    def where(self, path: tuple, message: str) -> str:
        """A problem at ``path`` of the file, as ``FILE: path: message (line N)``."""
        return _format(self.path, path, message, self.lines)

    def metric_path(self, name: str) -> tuple:
        """Where a metric is listed: ``("metrics", i)``."""
        return ("metrics", self.metrics.index(name)) if name in self.metrics else ("metrics",)

    def metrics_resolved(self) -> list:
        """The metrics as written back: a name, or a mapping with every option filled in."""
        return [metric_entry(name, self.metric_options.get(name)) for name in self.metrics]

    def options_of(self, metric) -> Any:
        """A metric's options as the suite sets them; its defaults if the suite does not list it."""
        return self.metric_options.get(metric.name) or metric.default_options()

    def metric_options_dict(self) -> dict:
        """The options of each listed metric that has some, as a record keeps them."""
        return {name: opt.as_dict(o) for name, o in self.metric_options.items() if o is not None}

    def dataset_dict(self) -> dict:
        dataset = opt.as_dict(self.dataset)
        dataset["options"] = opt.as_dict(self.dataset_options)
        return dataset

    def resolved(self) -> dict:
        """The suite with every default filled in, as plain data (written as suite.yaml)."""
        dataset = self.dataset_dict()
        configs = {}
        for run in self.runs:
            configs.setdefault(run.label, {"label": run.label, "model": run.model,
                                           "options": run.options_dict(), **_training_entry(run.training)})
        for s in self.searches:
            configs[s.label] = {"label": s.label, "model": s.model, "options": dict(s.fixed),
                                "search": s.written(), "search_metric": s.metric, **_training_entry(s.training)}
        search = {"trials": self.trials, "sampler": self.sampler, "search_seed": self.search_seed}
        return {"name": self.name, "description": self.description, "dataset": dataset,
                "budget": self.budget.limits(), "seeds": list(self.seeds),
                "batch_size": self.batch_size, "metrics": self.metrics_resolved(),
                "primary_metric": self.primary_metric, "save_models": self.save_models,
                "evaluation": opt.as_dict(self.evaluation), "training": opt.as_dict(self.training),
                "report": opt.as_dict(self.report),
                "loggers": [{"name": n, **opt.as_dict(o)} for n, o in self.loggers],
                **(search if self.searches else {}), "runs": list(configs.values())}

    def run_config(self, run: RunSpec) -> dict:
        """Everything that determines a run's outcome; its hash keys resume."""
        config = {"dataset": self.dataset_dict(), "budget": self.budget.limits(), "batch_size": self.batch_size,
                  "model": run.model, "options": run.options_dict(), "seed": run.seed}
        training = self.training_of(run).as_config()
        if training:
            config["training"] = training
        if run.trial is not None:  # scored elsewhere and otherwise: never the same run as a final one
            config["trial"] = {"split": "validation", "metric": run.trial.metric}
        return config

    def run_hash(self, run: RunSpec) -> str:
        return config_hash(self.run_config(run))

    def run_id(self, run: RunSpec) -> str:
        return f"{slug(run.label)}-seed{run.seed}-{self.run_hash(run)[:8]}"


def _training_entry(training: TrainingOptions | None) -> dict:
    return {} if training is None else {"training": opt.as_dict(training)}


def metric_entry(name: str, options: Any) -> str | dict:
    """One entry of a resolved ``metrics:`` list: the name, or a mapping with its options."""
    return name if options is None else {"name": name, **opt.as_dict(options)}


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def load_suite(path: str | Path, registry: Registry, loggers: bool = True, extractor: bool = True) -> Suite:
    """Read, validate and expand a suite file; raise ConfigErrors listing every problem.

    ``loggers=False`` leaves the ``loggers:`` entry out (unchecked): for commands that
    train nothing, such as rescore, a tracker uninstalled since must not stand in the way.
    ``extractor=False`` leaves the feature extractor unchecked: for ``extractor train``,
    which makes it.
    """
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise ConfigErrors(f"{name}: no such suite file" if not path.exists() else f"{name}: not a file")
    try:
        if path.stat().st_size > yamlfile.MAX_FILE_BYTES:
            raise ConfigErrors(f"{name}: {path.stat().st_size} bytes; a suite file may have at most "
                               f"{yamlfile.MAX_FILE_BYTES // 1024} KiB")
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigErrors(f"{name}: cannot be read: {err.strerror or type(err).__name__}") from None
    except UnicodeDecodeError as err:
        raise ConfigErrors(f"{name}: not UTF-8 text (byte {err.start})") from None
    try:
        data, lines = yamlfile.parse(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigErrors(f"{name}: YAML syntax error: {problem}{where}") from None
    except yamlfile.TooLarge as err:
        raise ConfigErrors(f"{name}: {err}") from None
    errors: list[tuple[tuple, str]] = []
    warnings: list[tuple[tuple, str]] = []
    if not loggers and isinstance(data, dict):
        data.pop("loggers", None)
    suite = _validate(data, registry, errors, warnings, extractor)
    if errors:
        raise ConfigErrors(*[_format(name, p, m, lines) for p, m in errors])
    return dataclasses.replace(suite, path=name, lines=lines,
                               warnings=tuple(_format(name, p, m, lines) for p, m in warnings))


def _format(file: str, path: tuple, message: str, lines: dict) -> str:
    line = None
    for n in range(len(path), -1, -1):  # the nearest enclosing node with a known line
        line = lines.get(tuple(path[:n]))
        if line:
            break
    where = opt.format_path(path) or "(top level)"
    return f"{file}: {where}: {message}" + (f" (line {line})" if line else "")


def _validate(data: Any, reg: Registry, errors: list, warnings: list, extractor: bool = True) -> Suite | None:
    if not isinstance(data, dict):
        errors.append(((), "a suite file must be a mapping with name, dataset, budget and runs"))
        return None
    moved = _moved_settings(data, warnings)
    top, errs = opt.build(SuiteFile, data)
    errors.extend(errs)
    # Parts that built on their own are checked further even if others failed, so
    # one pass reports as much as possible.
    dataset = _build_part(DatasetConfig, data, "dataset", errors)
    budget = _build_part(BudgetConfig, data, "budget", errors)
    evaluation = _build_part(EvalOptions, {"evaluation": data.get("evaluation") or {}}, "evaluation", errors)
    if evaluation and evaluation.feature_extractor == "inception" and not evaluation.feature_extractor_weights_path:
        errors.append((("evaluation", "feature_extractor_weights_path"), "Inception needs a local weights "
                       "file (pt_inception-2015-12-05-6726825d.pth from torch-fidelity's releases); "
                       "genbench never downloads it"))
    for i, metric in enumerate(evaluation.curve_metrics if evaluation else ()):
        if metric not in reg.metrics:
            errors.append((("evaluation", "curve_metrics", i), f"unknown metric '{metric}'"
                           f"{did_you_mean(metric, reg.metrics)}"))
    report = _build_part(ReportOptions, {"report": data.get("report") or {}}, "report", errors)
    training = _build_part(TrainingOptions, {"training": data.get("training") or {}}, "training", errors)
    dataset_options = _check_dataset(dataset, reg, errors)
    _check_budget(budget, errors)
    metrics, metric_options, primary = _check_metrics(top, moved, reg, errors)
    loggers = _check_loggers(top, reg, errors)
    if top is not None:
        for i, seed in enumerate(top.seeds):
            if seed in top.seeds[:i]:
                errors.append((("seeds", i), f"seed {seed} is listed twice; each seed gives one run"))
        if not top.runs:
            errors.append((("runs",), "list at least one run (a model to train)"))
    searched: list = []
    runs = expand_runs(data.get("runs"), top.seeds if top else (0,), reg, errors, searched, training)
    searches = check_searches(top, searched, primary, dataset, reg, errors)
    if dataset_options is not None:
        check_shapes(runs, searched, dataset.name, reg.datasets[dataset.name].image_shape_of(dataset_options), reg,
                     errors)
        if evaluation is not None and extractor:
            needs = [*(metrics or ()), *evaluation.curve_metrics, *(s.metric for s in searches or ())]
            _check_extractor(evaluation, [m for m in needs if m in reg.metrics and reg.metrics[m].uses_samples],
                             dataset.name, reg, errors)
    if errors or top is None:
        return None
    return Suite(path="", name=top.name, description=top.description, dataset=dataset,
                 dataset_options=dataset_options, budget=budget, seeds=top.seeds,
                 batch_size=top.batch_size, metrics=metrics, primary_metric=primary,
                 save_models=top.save_models, runs=runs, evaluation=evaluation, report=report,
                 metric_options=metric_options, loggers=loggers, training=training, searches=searches,
                 trials=top.trials or 0, sampler=top.sampler, search_seed=top.search_seed)


def suite_extractor(suite: Suite, reg: Registry) -> ExtractorSpec | None:
    """The domain extractor the suite scores with: its pinned file, else its data set's."""
    choice, cls = suite.evaluation.feature_extractor, reg.datasets[suite.dataset.name]
    if isinstance(choice, ExtractorFile):
        return choice.spec(cls.image_shape_of(suite.dataset_options)[0], len(cls.class_names) or 10)
    return cls.extractor


def no_extractor(dataset: str, metrics) -> str:
    """Why a suite cannot score samples on ``dataset``, and the two ways out."""
    return (f"metrics {', '.join(sorted(set(metrics)))} need a feature extractor, and data set '{dataset}' ships "
            f"none: train one with `genbench extractor train SUITE --out FILE` and pin it here as "
            f"feature_extractor: {{path: FILE, sha256: ...}} (the command prints the line), or set "
            f"feature_extractor: inception with feature_extractor_weights_path: a local Inception weights file")


def _check_extractor(evaluation: EvalOptions, metrics: list, dataset: str, reg: Registry, errors: list) -> None:
    choice, where = evaluation.feature_extractor, ("evaluation", "feature_extractor")
    if not metrics:
        return
    if isinstance(choice, ExtractorFile):
        path = Path(choice.path)
        if not path.is_file():
            errors.append((where + ("path",), f"no such file {choice.path}; `genbench extractor train` writes one"))
        elif (actual := file_sha256(path)) != choice.sha256:
            errors.append((where + ("sha256",), f"{choice.path} has sha256 {actual}: not the pinned file (train "
                           f"it again, or pin this one if you meant to change it)"))
    elif choice == "domain" and reg.datasets[dataset].extractor is None:
        errors.append((where, no_extractor(dataset, metrics)))


def _build_part(cls, data: dict, key: str, errors: list):
    if not isinstance(data.get(key), dict):
        return None  # missing or not a mapping: SuiteFile reported it
    part, errs = opt.build(cls, data[key], (key,))
    errors.extend(errs)
    return part


def _check_dataset(dataset: DatasetConfig | None, reg: Registry, errors: list):
    if dataset is None:
        return None
    if dataset.name not in reg.datasets:
        errors.append((("dataset", "name"), f"unknown data set '{dataset.name}'"
                       f"{did_you_mean(dataset.name, reg.datasets)}"))
        return None
    if dataset.eval_split == "validation" and dataset.validation == 0:
        errors.append((("dataset", "eval_split"), "'validation' needs dataset.validation > 0"))
    options, errs = opt.build(reg.datasets[dataset.name].Options, dataset.options, ("dataset", "options"))
    errors.extend(errs)
    return options


def _check_budget(budget: BudgetConfig | None, errors: list) -> None:
    if budget is None:
        return
    limits = budget.limits()
    if not limits:
        errors.append((("budget",), "give at least one of flops, steps, epochs or seconds"))
    for key, value in limits.items():
        if not math.isfinite(value) or value <= 0:  # YAML's .nan and .inf would never end training
            errors.append((("budget", key), f"must be a finite number greater than 0, got {value}"))


# Settings genbench 0.1 kept in evaluation: that now belong to a metric's own options. A
# suite (or a results folder's suite.yaml) that still has them keeps working, with a warning.
MOVED = {"kid_subset_size": (("kid", "subset_size"),), "kid_subsets": (("kid", "subsets"),),
         "prc_neighborhood": (("precision", "k"), ("recall", "k")),
         "iw_samples": (("iw_ll", "samples"),), "iw_images": (("iw_ll", "images"),)}


def _moved_settings(data: dict, warnings: list) -> dict[str, dict]:
    """Take the moved settings out of ``data["evaluation"]``: metric name -> {option: value}."""
    evaluation = data.get("evaluation")
    moved: dict[str, dict] = {}
    if not isinstance(evaluation, dict) or not set(evaluation) & set(MOVED):
        return moved
    evaluation = dict(evaluation)
    for key in [k for k in evaluation if k in MOVED]:
        value = evaluation.pop(key)
        for metric, name in MOVED[key]:
            moved.setdefault(metric, {})[name] = value
        new = ", ".join(f"{{name: {m}, {o}: {shown(value)}}}" for m, o in MOVED[key])
        warnings.append((("evaluation", key), f"deprecated: this setting now belongs to the metric; "
                         f"write it under metrics: as {new}"))
    data["evaluation"] = evaluation
    return moved


def _check_metrics(top, moved: dict[str, dict], reg: Registry, errors: list):
    """The metrics' names, their options (validated against each metric's Options), the primary one."""
    if top is None:
        return (), {}, None
    chosen: dict[str, Any] = {}
    for where, name, settings in _named_entries(top.metrics, "metrics", reg.metrics, errors):
        metric = reg.metrics[name]
        if metric.Options is None:
            if settings:
                errors.append((where + (str(next(iter(settings))),), f"metric '{name}' has no options"))
            chosen[name] = None
            continue
        options, errs = opt.build(metric.Options, {**moved.get(name, {}), **settings}, where)
        errors.extend(errs)
        chosen[name] = options
    names = list(chosen)
    written = [e.get("name") if isinstance(e, dict) else e for e in top.metrics]
    primary = top.primary_metric or (written[0] if written else None)
    if primary is None:
        errors.append((("metrics",), "list at least one metric"))
    elif primary not in written:
        errors.append((("primary_metric",), f"'{primary}' is not among the suite's metrics"
                       f"{did_you_mean(str(primary), [w for w in written if isinstance(w, str)])}"))
    return tuple(names), chosen, primary


def _named_entries(entries, key: str, registered: Mapping, errors: list):
    """(path, name, settings) of each entry written as NAME or {name: NAME, option: value}."""
    kind, seen = key[:-1], set()
    for i, entry in enumerate(entries):
        where = (key, i)
        if isinstance(entry, dict):
            settings = {k: v for k, v in entry.items() if k != "name"}
            name = entry.get("name")
            if not isinstance(name, str):
                errors.append((where + ("name",), f"give the {kind}'s registered name: {{name: NAME, option: value}}"))
                continue
        else:
            name, settings = entry, {}
        if name not in registered:
            errors.append((where, f"unknown {kind} '{name}'{did_you_mean(name, registered)}"))
        elif name in seen:
            errors.append((where, f"{kind} '{name}' is listed twice; list each {kind} once"))
        else:
            seen.add(name)
            yield where, name, settings


def _check_loggers(top, reg: Registry, errors: list) -> tuple[tuple[str, Any], ...]:
    """The selected loggers with their options; a missing package names the extra to install."""
    if top is None:
        return ()
    out = []
    for where, name, settings in _named_entries(top.loggers, "loggers", reg.loggers, errors):
        cls = reg.loggers[name]
        missing = [m for m in cls.requires if not importable(m)]
        if missing:
            how = install_hint(cls.extra) if cls.extra else f"pip install {' '.join(missing)}"
            errors.append((where, f"logger '{name}' needs the Python package {', '.join(missing)}, which is not "
                           f"installed: {how}"))
            continue
        options, errs = opt.build(cls.Options, settings, where)
        errors.extend(errs)
        if options is not None:
            out.append((name, options))
    return tuple(out)


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a broken one
        return False
