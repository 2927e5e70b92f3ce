"""Built-in experiment-tracker loggers: TensorBoard and MLflow.

Each is an optional extra (``genbench[tensorboard]``, ``genbench[mlflow]``), imported
only when a suite selects it. Both write inside the results folder by default, so a
results folder stays self-contained and works offline.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from pathlib import PurePosixPath
from typing import Optional

import genbench
from genbench.api import option

CLOCK_KEYS = ("epoch", "seconds", "flops")  # in logged entries beside the losses or scores


def _finite(values: dict) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _flat(prefix: str, value) -> dict[str, str | float | int | bool]:
    """Nested settings as flat ``a.b`` keys with scalar values (lists as JSON text)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(_flat(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    if value is None or isinstance(value, (list, tuple)):
        return {prefix: json.dumps(value)}
    return {prefix: value}


def _run_settings(run) -> dict:
    return _flat("", {"model": run.model, "label": run.label, "seed": run.seed, "options": run.options,
                      **run.settings})


def _final_step(record: dict) -> int:
    return int((record.get("budget_used") or {}).get("steps") or 0)


# TensorBoard ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class TensorBoardOptions:
    folder: str = option("tensorboard", "folder inside the results folder for the event files, one "
                         "sub-folder per run")
    figures: bool = option(True, "also log each run's figures as images")

    def __post_init__(self):
        path = PurePosixPath(self.folder)
        if not self.folder or path.is_absolute() or ".." in path.parts:
            raise ValueError(f"folder {self.folder!r} must be a relative path inside the results folder")


class TensorBoardLogger(genbench.Logger):
    name = "tensorboard"
    description = "TensorBoard event files in the results folder: tensorboard --logdir RESULTS/tensorboard"
    Options = TensorBoardOptions
    requires = ("tensorboard",)
    extra = "genbench[tensorboard]"

    def on_suite_start(self, suite):
        self.root = suite.out / self.options.folder
        self.writers = {}

    def on_run_start(self, run):
        from torch.utils.tensorboard import SummaryWriter

        writer = self.writers[run.run_id] = SummaryWriter(log_dir=str(self.root / run.run_id))
        table = "\n".join(f"| {k} | {v} |" for k, v in _run_settings(run).items())
        writer.add_text("settings", "| setting | value |\n| --- | --- |\n" + table)

    def on_train_log(self, run, step, values):
        writer = self.writers[run.run_id]
        for key, value in _finite(values).items():
            writer.add_scalar(f"train/{key}", value, step)

    def on_eval_log(self, run, step, scores):
        writer = self.writers[run.run_id]
        for key, value in _finite(scores).items():
            if key not in CLOCK_KEYS:
                writer.add_scalar(f"curve/{key}", value, step)

    def on_run_end(self, run, record, figures):
        from torch.utils.tensorboard.summary import hparams

        writer = self.writers.pop(run.run_id)
        step = _final_step(record)
        final = {f"final/{k}": v for k, v in _finite(record.get("metrics") or {}).items()}
        for key, value in final.items():
            writer.add_scalar(key, value, step)
        # The HParams dashboard: settings against final scores, one row per run.
        for summary in hparams(_run_settings(run), final):
            writer.file_writer.add_summary(summary, step)
        if self.options.figures:
            import matplotlib.image

            for path in figures:
                writer.add_image(f"figures/{path.stem}", matplotlib.image.imread(path)[..., :3], step,
                                 dataformats="HWC")
        writer.close()

    def close(self):
        for writer in getattr(self, "writers", {}).values():
            writer.close()


# MLflow ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MLflowOptions:
    tracking_uri: Optional[str] = option(None, "where to log; default: $MLFLOW_TRACKING_URI if set, else a "
                                         "local store in the results folder (mlflow/mlflow.db, artifacts "
                                         "in mlflow/artifacts)")
    experiment: Optional[str] = option(None, "experiment name (default: the suite's name)")
    artifacts: bool = option(True, "log each run's figures and record, and the suite's tables and report")


class MLflowLogger(genbench.Logger):
    name = "mlflow"
    description = "MLflow runs (params, metrics per step, final scores, figures) in the results folder"
    Options = MLflowOptions
    requires = ("mlflow", "sqlalchemy")
    extra = "genbench[mlflow]"

    def on_suite_start(self, suite):
        from mlflow import MlflowClient

        for name in ("alembic", "mlflow"):  # the store's set-up logs a page of INFO lines
            logging.getLogger(name).setLevel(logging.WARNING)
        uri, artifacts = self.options.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"), None
        if not uri:  # MLflow 3 retired the plain-folder store: SQLite, in the results folder
            folder = (suite.out / "mlflow").resolve()
            folder.mkdir(exist_ok=True)
            uri, artifacts = f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()
        self.client = MlflowClient(tracking_uri=uri)
        name = self.options.experiment or suite.name
        experiment = self.client.get_experiment_by_name(name)
        self.experiment_id = (experiment.experiment_id if experiment is not None
                              else self.client.create_experiment(name, artifact_location=artifacts))
        self.parent = self._start(suite.name, {"genbench.suite": suite.name, "genbench.out": str(suite.out)},
                                  _flat("", {k: suite.settings.get(k) for k in
                                             ("dataset", "budget", "batch_size", "seeds", "metrics")}))
        self.runs: dict[str, str] = {}

    def _start(self, name: str, tags: dict, params: dict) -> str:
        from mlflow.entities import Param

        run_id = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(run_id, params=items[i:i + 100])
        return run_id

    def _metrics(self, run_id: str, values: dict, step: int, prefix: str = "") -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(prefix + k, v, now, step) for k, v in _finite(values).items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i:i + 1000])

    def on_run_start(self, run):
        tags = {"mlflow.parentRunId": self.parent, "genbench.label": run.label, "genbench.model": run.model,
                "genbench.seed": str(run.seed), "genbench.run_id": run.run_id}
        self.runs[run.run_id] = self._start(run.run_id, tags, _run_settings(run))

    def on_train_log(self, run, step, values):
        self._metrics(self.runs[run.run_id], values, step, "train/")

    def on_eval_log(self, run, step, scores):
        self._metrics(self.runs[run.run_id], {k: v for k, v in scores.items() if k not in CLOCK_KEYS},
                      step, "curve/")

    def on_run_end(self, run, record, figures):
        run_id = self.runs.pop(run.run_id)
        step = _final_step(record)
        self._metrics(run_id, record.get("metrics") or {}, step)
        self._metrics(run_id, record.get("budget_used") or {}, step, "budget_used/")
        if self.options.artifacts:
            for path in figures:
                self.client.log_artifact(run_id, str(path), "figures")
            if (run.run_dir / "record.json").is_file():
                self.client.log_artifact(run_id, str(run.run_dir / "record.json"))
        self.client.set_terminated(run_id, "FINISHED" if record.get("status") == "ok" else "FAILED")

    def on_suite_end(self, out, files):
        if self.options.artifacts:
            for path in files:
                self.client.log_artifact(self.parent, str(path), "figures" if path.suffix == ".png" else None)
        self.client.set_terminated(self.parent, "FINISHED")
        self.parent = None

    def close(self):
        # Runs still open here were cut short (Ctrl-C, a full disk): say so in MLflow.
        for run_id in list(getattr(self, "runs", {}).values()) + [getattr(self, "parent", None)]:
            if run_id is not None:
                self.client.set_terminated(run_id, "KILLED")


@genbench.hookimpl
def register_loggers(register):
    register(TensorBoardLogger)
    register(MLflowLogger)
