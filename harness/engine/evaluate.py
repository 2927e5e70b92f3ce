"""Scoring one trained model: every metric, on streams seeded by the run's seed.

A metric that does not apply (the model lacks a capability) gets no score; one that
raises fails alone; a model whose outputs break their contract fails the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import traceback
from collections.abc import Mapping
from typing import Any

import torch

from ..api import outputs
from ..api.metric import EvalContext, EvalOptions, Metric, MetricSetup
from ..api.model import DataInfo, Model
from .data import DeviceData


def derive_seed(seed: int, purpose: str) -> int:
    """A seed for one purpose of one run (evaluation, figures...), independent of the others."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


@contextlib.contextmanager
def seeded(device: torch.device, seed: int):
    """Run a block on torch's random streams seeded with ``seed``, then restore them.

    Whatever ran before (other runs, a feature extractor's initialisation) cannot change
    what the block draws, and the block cannot change what runs after it.
    """
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def evaluate(model: Model, data: DeviceData, metrics: list[Metric], options: EvalOptions | None = None,
             seed: int = 0, metric_options: Mapping[str, Any] | None = None, context: type[EvalContext] = EvalContext,
             keep: dict | None = None) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Score ``model`` on every metric; None where it lacks a capability or gave no finite value.

    Every draw comes from streams seeded by ``seed`` (the run's), so a run's scores do
    not depend on what ran before it. A metric that raises gets no score and its error
    and traceback go to ``details["errors"]``; the others are computed as usual (a
    model whose outputs break their contract still fails the run). Returns the scores
    and the details to record (per-metric extras, the extractor hash, and a reason for
    every value left empty). ``metric_options`` maps a metric's name to its options
    (defaults where missing). ``context`` makes what metrics see (``genbench score``
    streams given samples through a subclass). ``keep``, if given, receives the samples
    the metrics scored (``samples``, ``sample_labels``), when any metric drew them.
    """
    metric_options = metric_options or {}
    ctx = context(model, data, options)
    model.eval()
    scores: dict[str, float | None] = {}
    with torch.no_grad(), seeded(data.eval.images.device, derive_seed(seed, "evaluation")):
        for metric in metrics:
            if not metric.applies_to(model):
                scores[metric.name] = None
                reason = metric.unavailable_reason(model)
                if reason:
                    ctx.details.setdefault("not_applicable", {})[metric.name] = reason
                continue
            try:
                value = metric.score(ctx, metric_options.get(metric.name))
                if isinstance(value, tuple):
                    value, ctx.details[metric.name] = value
                value = float(value)
            except (outputs.ModelOutputError, KeyboardInterrupt):
                raise  # the model broke its contract: the run fails, it is never ranked
            except Exception as err:  # a failing metric fails alone: the others and the run stand
                scores[metric.name] = None
                ctx.details.setdefault("errors", {})[metric.name] = {
                    "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
                continue
            scores[metric.name] = value if math.isfinite(value) else None
            if not math.isfinite(value):  # strict JSON has no NaN: null plus the reason
                ctx.details.setdefault("not_finite", {})[metric.name] = f"the metric gave {value}"
    if keep is not None and "samples" in vars(ctx):  # drawn by a metric: never drawn only to be kept
        keep.update(samples=ctx.samples, sample_labels=ctx.sample_labels)
    return scores, ctx.details


def subset_evaluator(model: Model, data: DeviceData, metrics: list[Metric], options: EvalOptions,
                     seed: int = 0, metric_options: Mapping[str, Any] | None = None):
    """A function scoring ``model`` on the first ``options.curve_images`` evaluation images.

    For training curves: it runs on its own random stream (so training is unaffected)
    and puts the model back in training mode.
    """
    n = min(options.curve_images, len(data.eval))
    key = ("curve_data", n)
    if key not in data.cache:  # shared by the suite's runs, with its own feature cache
        data.cache[key] = dataclasses.replace(data, eval=data.eval.take(slice(0, n)), cache={})
    subset = data.cache[key]
    sub_options = dataclasses.replace(options, num_samples=n)
    calls = [0]

    def score() -> dict[str, float | None]:
        calls[0] += 1
        # evaluate() forks the streams, so training goes on exactly as without curves
        scores, _ = evaluate(model, subset, metrics, sub_options, derive_seed(seed, f"curve{calls[0]}"),
                             metric_options)
        model.train()
        return scores
    return score


def check_metrics(metrics: list[Metric], metric_options: Mapping[str, Any], options: EvalOptions,
                  eval_size: int, info: DataInfo) -> tuple[dict[str, list[str]], list[str]]:
    """Before training: each metric's own preconditions (problems by metric name), and warnings."""
    problems = {}
    for metric in metrics:
        setup = MetricSetup(metric_options.get(metric.name, metric.default_options()), options, eval_size, info)
        try:
            found = metric.preconditions(setup)
        except Exception as err:  # a plugin's broken check must not hide the others
            found = [f"its check raised {type(err).__name__}: {err}"]
        if found:
            problems[metric.name] = found
    warnings = []
    if any(m.uses_samples for m in metrics) and min(options.num_samples, eval_size) < 2000:
        warnings.append(f"sample metrics on {min(options.num_samples, eval_size)} images: FID and KID are "
                        f"biased upward below about 2,000; compare only runs with the same counts")
    return problems, warnings
