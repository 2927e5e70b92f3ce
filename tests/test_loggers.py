"""Lifecycle events and the built-in TensorBoard and MLflow loggers (issue 10, item 7).

The loggers run for real: event files read back with tensorboard's reader, a local
MLflow store read back with MLflow's client.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

import genbench
from genbench.cli import main

from conftest import ROOT

SUITE = """
name: tracked
dataset: {{name: synthetic, subset: 256, test_subset: 128}}
budget: {{steps: 12}}
batch_size: 32
metrics: [bce, kl]
evaluation: {{curve_metrics: [bce], curve_every: 1, curve_images: 64}}
loggers: {loggers}
runs:
  - model: vae
    options: {{hidden_dim: 16, latent_dim: 2}}
"""


def _record(out):
    return json.loads(next(out.glob("runs/*/record.json")).read_text())


class Recorder(genbench.Logger):
    name = "recorder"
    description = "keeps every event (tests)"
    events: list = []

    def on_suite_start(self, suite):
        self.events.append(("suite_start", suite.name, suite.runs))

    def on_run_start(self, run):
        self.events.append(("run_start", run.run_id, run.seed))

    def on_train_log(self, run, step, values):
        self.events.append(("train_log", step, values))

    def on_eval_log(self, run, step, scores):
        self.events.append(("eval_log", step, scores))

    def on_run_end(self, run, record, figures):
        self.events.append(("run_end", record["status"], [p.name for p in figures]))

    def on_suite_end(self, out, files):
        self.events.append(("suite_end", sorted(p.name for p in files)))

    def close(self):
        self.events.append(("close",))


@pytest.fixture
def recorder(mock_plugins, synthetic_dataset):
    Recorder.events = []
    mock_plugins("mock_recorder", register_loggers=lambda register: register(Recorder))
    return Recorder


def test_a_logger_gets_every_event_in_order(recorder, write_suite, tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(write_suite(SUITE.format(loggers="[recorder]"))), "--out", str(out)]) == 0
    rec, events = _record(out), recorder.events
    kinds = [e[0] for e in events]
    assert kinds[:2] == ["suite_start", "run_start"] and kinds[-3:] == ["run_end", "suite_end", "close"]
    assert events[0] == ("suite_start", "tracked", 1) and events[1] == ("run_start", rec["run_id"], 0)
    train = [(step, values) for kind, step, values in (e for e in events if e[0] == "train_log")]
    assert train == [(h["step"], {k: v for k, v in h.items() if k != "step"}) for h in rec["history"]]
    evals = [(step, scores) for kind, step, scores in (e for e in events if e[0] == "eval_log")]
    assert evals == [(h["step"], {k: v for k, v in h.items() if k != "step"}) for h in rec["eval_history"]]
    assert events[-3] == ("run_end", "ok", sorted(p.name for p in (out / "runs" / rec["run_id"]).glob("*.png")))
    assert "report.html" in events[-2][1] and "leaderboard.md" in events[-2][1]


def test_logging_is_off_the_budget_clock(recorder, write_suite, tmp_path, monkeypatch):
    monkeypatch.setattr(Recorder, "on_train_log", lambda self, run, step, values: time.sleep(0.2))
    out = tmp_path / "out"
    assert main(["run", str(write_suite(SUITE.format(loggers="[recorder]"))), "--out", str(out)]) == 0
    rec = _record(out)
    slept = 0.2 * len(rec["history"])
    assert slept >= 1.0 and rec["budget_used"]["seconds"] < slept / 2


def test_a_failing_logger_is_switched_off_and_the_run_stands(recorder, mock_plugins, write_suite, tmp_path,
                                                             capsys):
    class Broken(genbench.Logger):
        name = "broken"

        def on_train_log(self, run, step, values):
            raise RuntimeError("tracker server went away")

    mock_plugins("mock_broken_logger", register_loggers=lambda register: register(Broken))
    out = tmp_path / "out"
    assert main(["run", str(write_suite(SUITE.format(loggers="[broken, recorder]"))), "--out", str(out)]) == 0
    err = capsys.readouterr().out
    assert "logger 'broken' failed in on_train_log: RuntimeError: tracker server went away" in err
    assert err.count("logger 'broken' failed") == 1  # switched off after the first failure
    assert _record(out)["status"] == "ok" and recorder.events[-1] == ("close",)  # the other logger went on


def test_logger_names_and_options_are_validated(recorder, write_suite, capsys):
    path = write_suite(SUITE.format(loggers="[tensorbord, {name: tensorboard, folder: ../elsewhere}, recorder, "
                                            "{name: recorder}]"))
    assert main(["validate", "--no-data", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: loggers[0]: unknown logger 'tensorbord'; did you mean 'tensorboard'? (line 8)" in err
    assert "loggers[1]: folder '../elsewhere' must be a relative path inside the results folder" in err
    assert "loggers[3]: logger 'recorder' is listed twice" in err


def test_a_missing_package_is_a_validate_error_naming_the_extra(synthetic_dataset, write_suite, monkeypatch,
                                                                capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    path = write_suite(SUITE.format(loggers="[mlflow]"))
    assert main(["validate", "--no-data", str(path)]) == 2
    assert (f"{path}: loggers[0]: logger 'mlflow' needs the Python package mlflow, which is not installed: "
            f"pip install -e '{ROOT}[mlflow]' (genbench is installed from that clone) (line 8)") \
        in capsys.readouterr().err  # installed by ./install.sh from this clone: how to add the extra there


def test_tensorboard_event_files_hold_the_runs_numbers(synthetic_dataset, write_suite, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "out"
    assert main(["run", str(write_suite(SUITE.format(loggers="[tensorboard]"))), "--out", str(out)]) == 0
    rec = _record(out)
    events = EventAccumulator(str(out / "tensorboard" / rec["run_id"]), size_guidance={"images": 0})
    events.Reload()
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert loss == [(h["step"], pytest.approx(h["loss"], rel=1e-6)) for h in rec["history"]]
    curve = [(e.step, e.value) for e in events.Scalars("curve/bce")]
    assert curve == [(h["step"], pytest.approx(h["bce"], rel=1e-6)) for h in rec["eval_history"]]
    for name in ("bce", "kl"):
        (final,) = events.Scalars(f"final/{name}")
        assert (final.step, final.value) == (rec["budget_used"]["steps"], pytest.approx(rec["metrics"][name], rel=1e-6))
    figures = {p.stem for p in (out / "runs" / rec["run_id"]).glob("*.png")}
    assert figures and set(events.Tags()["images"]) == {f"figures/{f}" for f in figures}


@pytest.mark.parametrize("own_server", [False, True])
def test_mlflow_holds_params_metrics_per_step_scores_and_figures(synthetic_dataset, write_suite, tmp_path,
                                                                 monkeypatch, own_server):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    if own_server:  # a local one, whose artifacts go to ./mlruns: keep them in tmp_path
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert main(["run", str(write_suite(SUITE.format(loggers="[mlflow]"))), "--out", str(out)]) == 0
    assert (out / "mlflow").exists() is not own_server  # the results folder's own store, unless one is set
    client = MlflowClient(tracking_uri=uri if own_server else f"sqlite:///{out / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tracked")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    rec = _record(out)
    run, suite = runs[rec["run_id"]], runs["tracked"]
    assert run.info.status == suite.info.status == "FINISHED"
    assert run.data.tags["mlflow.parentRunId"] == suite.info.run_id
    assert run.data.params["model"] == "vae" and run.data.params["options.latent_dim"] == "2"
    assert run.data.params["seed"] == "0" and run.data.params["budget.steps"] == "12"
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in history] == [(h["step"], pytest.approx(h["loss"], rel=1e-6))
                                                    for h in rec["history"]]
    assert run.data.metrics["bce"] == pytest.approx(rec["metrics"]["bce"], rel=1e-9)
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert figures == {f"figures/{p.name}" for p in (out / "runs" / rec["run_id"]).glob("*.png")}
    assert "report.html" in {a.path for a in client.list_artifacts(suite.info.run_id)}


def test_rescore_needs_no_logger_the_suite_once_used(recorder, write_suite, tmp_path):
    from genbench.engine import pluginmanager

    out = tmp_path / "out"
    assert main(["run", str(write_suite(SUITE.format(loggers="[recorder]"))), "--out", str(out)]) == 0
    pluginmanager.pm.unregister(name="mock_recorder")  # the tracker's package uninstalled since
    pluginmanager.pm.register(type("Empty", (), {})(), name="mock_recorder")  # the fixture unregisters it
    before = _record(out)["metrics"]
    assert main(["rescore", str(out)]) == 0
    assert _record(out)["metrics"] == before
