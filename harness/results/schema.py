"""The run record (``record.json``): one versioned schema, checked on every read.

A results folder is data other people send you, so a reader relies on a field only
after :func:`check` has seen it. Records of an older schema are upgraded on reading;
records of a newer one are refused with a message saying which version was found.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

from ..errors import shown
from . import files

SCHEMA_VERSION = 1  # 0: records written before the schema had a version (no field changed)
STATUSES = ("ok", "failed", "running")
_METRIC_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _opt(check):
    return lambda v: v is None or check(v)


def _mapping_of(check):
    return lambda v: isinstance(v, dict) and all(isinstance(k, str) and check(x) for k, x in v.items())


def _list_of(check):
    return lambda v: isinstance(v, list) and all(check(x) for x in v)


def _text(limit: int = 1_000_000):
    return lambda v: isinstance(v, str) and len(v) <= limit


_plain = lambda v: v is None or isinstance(v, (str, bool, int, float))  # noqa: E731
_entry = _mapping_of(lambda x: x is None or _number(x))  # one point of a history
_META = {"unit": lambda v: v is None or _text(200)(v), "higher_is_better": lambda v: v is None or isinstance(v, bool),
         "requires": lambda v: _list_of(_text(64))(v), "description": lambda v: v is None or _text(10_000)(v)}
_meta = lambda v: (_mapping_of(lambda x: _plain(x) or _list_of(lambda s: isinstance(s, str))(x))(v)  # noqa: E731
                   and all(check(v[k]) for k, check in _META.items() if k in v))
_mapping = lambda v: isinstance(v, dict)  # noqa: E731
_string_keys = lambda v: isinstance(v, dict) and all(isinstance(k, str) for k in v)  # noqa: E731
_metrics = lambda v: _mapping_of(lambda x: x is None or _number(x))(v) and all(_METRIC_NAME.fullmatch(k) for k in v)  # noqa: E731


@dataclasses.dataclass(frozen=True)
class Field:
    required: bool
    check: Callable[[object], bool]
    what: str   # what the value must be, for messages
    doc: str    # what it means, for README


FIELDS: dict[str, Field] = {
    "schema_version": Field(False, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                            "an integer", "version of this schema (missing: 0)"),
    "run_id": Field(True, files.safe_part, "a plain folder name", "the run's folder name under runs/"),
    "label": Field(True, lambda v: _text(1000)(v) and v != "", "a non-empty string",
                   "the configuration's name on the leaderboard"),
    "model": Field(True, lambda v: _text(200)(v) and v != "", "a non-empty string", "the registered model"),
    "seed": Field(True, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer", "the run's seed"),
    "status": Field(True, lambda v: v in STATUSES, f"one of {', '.join(STATUSES)}", "ok or failed"),
    "options": Field(False, _opt(_mapping), "a mapping", "the model's resolved options"),
    "dataset": Field(False, _opt(_mapping), "a mapping", "the resolved data set settings"),
    "eval_split": Field(False, _opt(_text(40)), "a string", "test or validation"),
    "batch_size": Field(False, _opt(lambda v: isinstance(v, int) and not isinstance(v, bool)), "an integer",
                        "training batch size"),
    "budget": Field(False, _opt(_entry), "a mapping of numbers", "the budget asked for (flops, steps, epochs, seconds)"),
    "config_hash": Field(False, _opt(_text(200)), "a string",
                         "SHA-256 of data set, budget, batch size, model, options, seed "
                         "and non-default training settings"),
    "metrics_requested": Field(False, _opt(_list_of(_text(64))), "a list of names", "the suite's metrics"),
    "evaluation": Field(False, _opt(_mapping), "a mapping", "the shared evaluation settings"),
    "metric_options": Field(False, _opt(_mapping_of(_mapping)), "a mapping of mappings",
                            "each metric's own options (metrics without options are absent)"),
    "training": Field(False, _opt(_mapping), "a mapping", "precision (fp32, bf16 or fp16) and compile"),
    "device": Field(False, _opt(_text(200)), "a string", "cpu, cuda or cuda:N"),
    "versions": Field(False, _opt(_mapping_of(_plain)), "a mapping of strings", "python and package versions"),
    "machine": Field(False, _opt(_string_keys), "a mapping",
                     "cpu, arch, isa (the instruction-set extensions present that change kernels), "
                     "torch_cpu_capability, blas, onednn, logical_cores, isa_caps (environment variables that "
                     "cap them); gpu: name, memory_gib, capability, cuda, cudnn, driver"),
    "started": Field(False, _opt(_text(64)), "a string", "UTC start time"),
    "finished": Field(False, _opt(_text(64)), "a string", "UTC end time"),
    "metric_info": Field(False, _opt(_mapping_of(_meta)), "a mapping of metric descriptions",
                         "each metric's unit, direction, required capabilities and description"),
    "budget_used": Field(False, _opt(_entry), "a mapping of numbers", "seconds, steps, epochs, images and FLOPs used"),
    "throughput": Field(False, _opt(_entry), "a mapping of numbers",
                        "images, steps and FLOPs per second on the budget clock, CPU seconds and share, "
                        "threads, cores, load average at start and end, fraction of the device's matmul peak "
                        "(at most 1) and that peak, "
                        "seconds of the untimed first steps (FLOP counting, compilation), fp16's final grad_scale"),
    "step_flops": Field(False, _opt(_list_of(_mapping)), "a list of mappings",
                        "FLOPs counted for each distinct kind of training step (batch size, key)"),
    "parallel": Field(False, _opt(_entry), "a mapping of numbers",
                      "workers: runs the suite ran at once; ran_beside: most other runs running during this one"),
    "contended": Field(False, _opt(_list_of(_text(1000))), "a list of strings",
                       "why the run looks crowded out by other work (empty: it does not); under a seconds budget "
                       "its scores, under any other its timings only"),
    "stopped_by": Field(False, _opt(_text(40)), "a string", "the budget limit that ended training"),
    "final_losses": Field(False, _opt(_entry), "a mapping of numbers", "the last logging window's losses"),
    "history": Field(False, _opt(_list_of(_entry)), "a list of mappings of numbers",
                     "mean losses per logging window, with step, epoch and seconds"),
    "eval_history": Field(False, _opt(_list_of(_entry)), "a list of mappings of numbers",
                          "metrics computed during training, with the step, epoch, seconds and "
                          "training FLOPs of each point"),
    "curve_seconds": Field(False, _opt(_number), "a number", "time spent on them, off the budget clock"),
    "curve_images": Field(False, _opt(_number), "a number", "evaluation images they used"),
    "metrics": Field(False, _opt(_metrics), "a mapping of metric names to numbers",
                     "final scores; null where a metric does not apply, failed or was not finite"),
    "metric_errors": Field(False, _opt(_mapping_of(_mapping)), "a mapping",
                           "error and traceback of each metric that raised"),
    "metric_details": Field(False, _opt(_mapping), "a mapping",
                            "per-metric extras, the feature extractor's name and SHA-256, not_finite reasons"),
    "eval_seconds": Field(False, _opt(_number), "a number", "time the final evaluation took"),
    "sampling": Field(False, _opt(_entry), "a mapping of numbers",
                      "sampling cost: images per draw (the figures' sample grid, one batch on the run's "
                      "device), repeats, seconds (the median draw), seconds_per_1000"),
    "error": Field(False, _opt(_text()), "a string", "why a failed run failed (traceback in error.log)"),
    "trial": Field(False, _opt(lambda v: isinstance(v, dict) and _text(1000)(v.get("search"))
                              and isinstance(v.get("number"), int) and not isinstance(v.get("number"), bool)
                              and v["number"] >= 0 and _text(64)(v.get("metric"))
                              and isinstance(v.get("params"), dict)),
                   "a mapping with search, number, metric and params",
                   "set on a trial of a search: the searched entry's label, the trial's number, the metric "
                   "it was scored by on the validation split, the options drawn"),
    "search": Field(False, _opt(lambda v: isinstance(v, dict) and isinstance(v.get("chosen"), dict)
                               and _opt(_number)(v.get("trials"))),
                    "a mapping with trials and chosen",
                    "set on a final run of a searched entry: trials, trials_ok, sampler, metric, best_trial, "
                    "best_value (on the validation split) and the chosen options"),
    "rescored": Field(False, _opt(_mapping), "a mapping", "when `genbench rescore` last scored it, and what"),
    "samples": Field(False, _opt(_string_keys), "a mapping",
                     "set by `genbench score`: the sample set's source, format, count, whether it had labels, "
                     "and the file's SHA-256"),
    "reference": Field(False, _opt(_string_keys), "a mapping",
                       "set by `genbench score`: the reference images (data set, split, count, SHA-256 of the "
                       "images, and of the training images when a metric read them), the extractor, the "
                       "statistics read from the cache"),
}


def metric_names(entries) -> list[str]:
    """The names in a suite.yaml's ``metrics:`` list (a name, or a mapping with a name), checked."""
    names = [e.get("name") if isinstance(e, dict) else e for e in entries] if isinstance(entries, list) else []
    return [n for n in names if isinstance(n, str) and _METRIC_NAME.fullmatch(n)]


def check(data) -> str | None:
    """What is wrong with a parsed record, or None if a reader can rely on it."""
    if not isinstance(data, dict):
        return f"expected a JSON object, found {type(data).__name__}"
    version = data.get("schema_version", 0)
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        return (f"written by a newer genbench (record schema {version}; this genbench reads up to "
                f"{SCHEMA_VERSION}); upgrade genbench to read it")
    for name, field in FIELDS.items():
        if name not in data:
            if field.required:
                return f"field '{name}' is missing"
        elif not field.check(data[name]):
            return f"field '{name}' must be {field.what}, found {shown(data[name], 40)}"
    return None


def upgrade(data: dict) -> dict:
    """A checked record in the current schema (version 0 differs only by lacking the number)."""
    if data.get("schema_version", 0) < SCHEMA_VERSION:
        data = {"schema_version": SCHEMA_VERSION, **data}
        data["schema_version"] = SCHEMA_VERSION
    return data


# The other files of a results folder (see ``readback``): every field optional, each
# checked for what the report and compare read of it; a field that fails is left out.
_int = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
_named = lambda v: isinstance(v, str) or (isinstance(v, dict) and isinstance(v.get("name"), str))  # noqa: E731

SUITE_FIELDS: dict[str, Field] = {
    "name": Field(False, _text(200), "a string", "the suite's name"),
    "description": Field(False, _opt(_text(100_000)), "a string", "what the suite compares"),
    "dataset": Field(False, lambda v: _string_keys(v) and _opt(_text(200))(v.get("name"))
                     and _opt(_text(40))(v.get("eval_split")), "a mapping with a name", "the data set settings"),
    "budget": Field(False, _entry, "a mapping of numbers", "the training budget per run"),
    "seeds": Field(False, _list_of(_int), "a list of integers", "the seeds"),
    "batch_size": Field(False, _opt(_int), "an integer", "training batch size"),
    "metrics": Field(False, _list_of(_named), "a list of metric names", "the metrics, with their options"),
    "primary_metric": Field(False, _opt(_text(64)), "a metric name", "the leaderboard's sort key"),
    "evaluation": Field(False, _string_keys, "a mapping", "the shared evaluation settings"),
    "training": Field(False, _string_keys, "a mapping", "precision and compile"),
    "report": Field(False, lambda v: _mapping_of(_plain)(v) and v.get("latent_projection", "pca") in ("pca", "tsne"),
                    "a mapping with latent_projection pca or tsne", "figure settings"),
    "loggers": Field(False, _list_of(_string_keys), "a list of mappings", "the trackers"),
    "trials": Field(False, lambda v: _int(v) and v >= 0, "a count", "trials per searched entry"),
    "sampler": Field(False, _text(40), "a string", "random or tpe"),
    "search_seed": Field(False, _int, "an integer", "the search's seed"),
    "score": Field(False, _string_keys, "a mapping", "set by `genbench score`: the sample sets' sources"),
    "runs": Field(False, _list_of(lambda r: _string_keys(r) and _text(1000)(r.get("label"))),
                  "a list of mappings with a label", "the configurations, in the suite's order"),
}

ENV_FIELDS: dict[str, Field] = {
    "versions": Field(False, _mapping_of(lambda v: v is None or _text(200)(v)), "a mapping of version strings",
                      "python and package versions"),
    "device": Field(False, _text(200), "a string", "cpu, cuda or cuda:N"),
    "device_name": Field(False, _text(1000), "a string", "the device's name"),
    "torch_threads": Field(False, _int, "an integer", "torch's thread count"),
    "machine": Field(False, _string_keys, "a mapping", "the CPU, its instruction sets, BLAS, oneDNN, the GPU"),
    "platform": Field(False, _text(1000), "a string", "the operating system"),
    "plugins": Field(False, _list_of(_mapping_of(_plain)), "a list of mappings", "the plugins loaded"),
    "plugin_warnings": Field(False, _list_of(_text(10_000)), "a list of strings", "plugins left out, and why"),
    "matmul_flops_per_second": Field(False, _opt(_number), "a number", "the device's measured matmul peak"),
    "matmul_peak_method": Field(False, _text(1000), "a string", "how that peak was measured"),
}
