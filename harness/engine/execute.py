"""One run, start to finish, wherever it executes: train, save, score, snapshot.

:func:`execute_run` writes nothing. It returns the run's record and the bytes of its
files, and reports progress through ``emit``; the driver (the ``genbench run`` process)
writes the results folder, so a run on a worker process or a Ray node produces exactly
the files a serial run does, and a worker that dies never leaves half a record.
"""

from __future__ import annotations

import dataclasses
import io
import random
import time
import traceback
from collections.abc import Callable

import numpy as np
import torch

from ..api.extractor import ExtractorFile
from ..api.options import as_dict
from ..results import files, record, schema
from . import precision, snapshot
from .config import RunSpec, Suite
from .data import DeviceData, prepare
from .evaluate import evaluate, subset_evaluator
from .pluginmanager import Registry
from .train import train

# emit(kind, payload): "progress" {fraction, info}, "train_log" and "eval_log" (a history
# entry, for the suite's loggers). Called from the training loop, with its clock paused
# for the two log kinds.
Emit = Callable[[str, dict], None]


@dataclasses.dataclass
class RunOutput:
    """What a run hands back to the driver."""

    record: dict
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)  # name in the run's folder -> content
    warnings: list[str] = dataclasses.field(default_factory=list)      # for the driver to print


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def load_run_data(suite: Suite, registry: Registry, device: torch.device, download: bool = False) -> DeviceData:
    """The suite's data, unchecked: in a worker process the driver has checked it already."""
    dataset = registry.datasets[suite.dataset.name](suite.dataset_options)
    data = prepare(dataset, suite.dataset, device, download=download and suite.dataset.download)
    pinned = suite.evaluation.feature_extractor
    if isinstance(pinned, ExtractorFile):  # the suite's own extractor stands in for a shipped one
        data = dataclasses.replace(data, extractor=pinned.spec(data.info.image_shape[0], data.info.num_classes))
    return data


def new_record(suite: Suite, run: RunSpec, run_id: str, data: DeviceData, device: torch.device) -> dict:
    rec = {"schema_version": schema.SCHEMA_VERSION, "run_id": run_id, "label": run.label, "model": run.model,
           "seed": run.seed, "options": run.options_dict(), "dataset": suite.dataset_dict(),
           "eval_split": "validation" if run.trial else data.eval_split, "batch_size": suite.batch_size,
           "budget": suite.budget.limits(), "config_hash": suite.run_hash(run),
           "metrics_requested": [run.trial.metric] if run.trial else list(suite.metrics),
           "evaluation": as_dict(suite.evaluation),
           "metric_options": suite.metric_options_dict(), "training": as_dict(suite.training_of(run)),
           "device": str(device), "versions": record.versions(), "machine": record.machine(str(device)),
           "started": record.utc_now(), "status": "running"}
    if run.trial:
        rec["trial"] = run.trial.as_dict()
    return rec


def samples_npz(kept: dict) -> bytes:
    """The scored samples as uint8 (N, C, H, W), and their labels when asked by class."""
    arrays = {"samples": kept["samples"].mul(255).round().to(torch.uint8).cpu().numpy()}
    if kept.get("sample_labels") is not None:
        arrays["labels"] = kept["sample_labels"].cpu().numpy()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def execute_run(suite: Suite, run: RunSpec, run_id: str, registry: Registry, data: DeviceData,
                device: torch.device, emit: Emit | None = None) -> RunOutput:
    """Train and score one run; a failure becomes a record with status 'failed' (and an
    ``error.log`` with its traceback). Ctrl-C is not caught."""
    emit = emit or (lambda kind, payload: None)
    rec = new_record(suite, run, run_id, data, device)
    out = RunOutput(rec)
    trial = run.trial is not None  # a trial: scored on the validation split by one metric, nothing kept
    if trial:
        data = data.scored_on("validation")
    metrics = [registry.metrics[m] for m in rec["metrics_requested"]]
    rec["metric_info"] = {m.name: m.info() for m in metrics}
    try:
        seed_everything(run.seed)
        model = registry.models[run.model](run.options, data.info).to(device)
        model.optimizers = model.configure_optimizers()
        wrap = precision.prepare(model, suite.training_of(run), device)
        score = None
        if suite.evaluation.curve_metrics and not trial:
            score = subset_evaluator(model, data, [registry.metrics[m] for m in suite.evaluation.curve_metrics],
                                     suite.evaluation, run.seed, suite.metric_options)

        def show(clock, losses):
            shown = " ".join(f"{k} {v:.3g}" for k, v in list(losses.items())[:3])
            emit("progress", {"fraction": clock.fraction(), "info": f"step {clock.steps} {shown} | {clock.left()}"})
        result = train(model, data, suite.budget.limits(), suite.batch_size, run.seed, show,
                       score=score, score_every=suite.evaluation.curve_every,
                       on_log=lambda entry: emit("train_log", entry), on_eval=lambda entry: emit("eval_log", entry),
                       precision=wrap)
        rec.update(budget_used=result.used, stopped_by=result.stopped_by,
                   final_losses=result.final, history=result.history, throughput=result.throughput,
                   step_flops=result.step_flops)
        if score is not None:
            rec.update(eval_history=result.eval_history, curve_seconds=result.eval_seconds,
                       curve_images=min(suite.evaluation.curve_images, len(data.eval)))
        if suite.save_models and not trial:  # kept even if scoring fails: a model that trained is never lost
            buffer = io.BytesIO()
            torch.save({"model": run.model, "options": run.options_dict(), "state_dict": model.state_dict(),
                        "optimizers": {k: o.state_dict() for k, o in model.optimizers.items()}}, buffer)
            out.files["model.pt"] = buffer.getvalue()
        emit("progress", {"fraction": 1.0, "info": "scoring"})
        started = time.perf_counter()
        kept: dict = {}
        rec["metrics"], details = evaluate(model, data, metrics, suite.evaluation, run.seed, suite.metric_options,
                                           keep=kept)
        if suite.evaluation.save_samples and kept and not trial:
            out.files["samples.npz"] = samples_npz(kept)
        rec["metric_errors"] = details.pop("errors", {})
        rec["metric_details"] = details
        out.warnings += [f"metric '{name}' failed for {run.label} seed {run.seed}: {failure['error']} "
                         f"(the traceback is in the record)" for name, failure in rec["metric_errors"].items()]
        rec["eval_seconds"] = round(time.perf_counter() - started, 3)
        timings: dict = {}
        try:  # the figures' arrays are an extra: a bug there must not fail a scored run
            if not trial:
                arrays = snapshot.take(model, data, run.seed, suite.report.latent_points, timings)
                out.files[snapshot.SNAPSHOT] = snapshot.to_bytes(arrays)
        except Exception as err:
            out.warnings.append(f"could not write the figure snapshot: {type(err).__name__}: {err} "
                                f"(rebuild with `genbench report`)")
        rec.update(timings)  # the sampling cost stands even if the samples then broke a rule
        rec["status"] = "ok"
    except (KeyboardInterrupt, files.OutputError):
        raise
    except Exception as err:  # one broken run must not take the suite down
        rec.update(status="failed", error=f"{type(err).__name__}: {err}")
        out.files["error.log"] = traceback.format_exc().encode("utf-8")
    rec["finished"] = record.utc_now()
    return out
