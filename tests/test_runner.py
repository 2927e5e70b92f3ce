"""Running suites end to end on real data: records, budget, resume, failures."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import genbench
from genbench.cli import main
from genbench.engine.train import train

from conftest import TINY


def run_cli(*args) -> int:
    return main(["run", *map(str, args)])


def test_tiny_suite_writes_every_file(write_suite, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(write_suite(TINY), "--out", out, "--device", "cpu") == 0
    assert {p.name for p in out.iterdir()} == {"suite.yaml", "env.json", "results.csv", "results.json",
                                               "leaderboard.md", "report.html", "figures", "runs",
                                               ".genbench.lock"}
    assert (out / ".genbench.lock").read_text() == ""  # released: no holder named
    (run_dir,) = (out / "runs").iterdir()
    rec = json.loads((run_dir / "record.json").read_text())
    assert rec["status"] == "ok" and rec["seed"] == 0 and rec["device"] == "cpu"
    assert rec["budget"] == {"steps": 8} and rec["stopped_by"] == "steps"
    used = rec["budget_used"]
    assert used["steps"] == 8 and used["images"] == 8 * 64 and used["epochs"] == 1.0
    assert used["seconds"] > 0
    assert 100 < rec["metrics"]["bce"] < 600 and rec["metrics"]["kl"] >= 0
    assert rec["versions"]["torch"] == torch.__version__
    env = json.loads((out / "env.json").read_text())
    assert env["device"] == "cpu" and any(p["distribution"] == "genbench" for p in env["plugins"])
    frame = pd.read_csv(out / "results.csv")
    assert list(frame["label"]) == ["vae[hidden_dim=64,latent_dim=4]"] and frame["bce"].iloc[0] == rec["metrics"]["bce"]
    board = (out / "leaderboard.md").read_text()
    assert "| 1 " in board and r"vae\[hidden\_dim=64,latent\_dim=4\]" in board  # markdown-escaped
    assert "leaderboard" in capsys.readouterr().out
    assert (run_dir / "model.pt").is_file()


def test_resume_skips_finished_runs_and_refuses_other_suites(write_suite, tmp_path, capsys):
    out = tmp_path / "out"
    path = write_suite(TINY)
    assert run_cli(path, "--out", out) == 0
    record = next((out / "runs").iterdir()) / "record.json"
    before = record.read_text()
    capsys.readouterr()
    # without --resume, existing results are not overwritten
    assert run_cli(path, "--out", out) == 2
    assert "already holds results of suite 'tiny'; pass --resume" in capsys.readouterr().err
    # with --resume, the finished run is skipped and a new seed is run
    more = write_suite(TINY.replace("seeds: [0]", "seeds: [0, 1]"), "more.yaml")
    assert run_cli(more, "--out", out, "--resume") == 0
    text = capsys.readouterr().out
    assert "seed 0: done already, skipped" in text
    assert record.read_text() == before
    assert len(pd.read_csv(out / "results.csv")) == 2
    # a different suite in the same folder is refused, and nothing is touched
    other = write_suite(TINY.replace("name: tiny", "name: other"), "other.yaml")
    assert run_cli(other, "--out", out, "--resume") == 2
    assert "holds results of a different suite (name 'tiny' there, 'other' in" in capsys.readouterr().err
    assert record.read_text() == before


class Exploding(genbench.Model):
    name = "mock_exploding"

    def configure_optimizers(self):
        return {}

    def train_step(self, batch, step):
        raise ValueError("this plugin is broken")


def test_a_failing_run_is_recorded_and_the_others_finish(write_suite, tmp_path, mock_plugins):
    mock_plugins("mock", register_models=lambda register: register(Exploding))
    out = tmp_path / "out"
    assert run_cli(write_suite(TINY + "  - model: mock_exploding\n"), "--out", out) == 1
    records = [json.loads(p.read_text()) for p in out.glob("runs/*/record.json")]
    status = {r["model"]: r["status"] for r in records}
    assert status == {"vae": "ok", "mock_exploding": "failed"}
    failed = next(r for r in records if r["status"] == "failed")
    assert failed["error"] == "ValueError: this plugin is broken"
    assert "Traceback" in next(out.glob("runs/mock_exploding*/error.log")).read_text()
    assert "mock_exploding" not in (out / "leaderboard.md").read_text()


def _synthetic(dataset_cls):
    """The synthetic data set's first 512 training images: unit tests of the loop need no MNIST."""
    from genbench.engine.config import DatasetConfig
    from genbench.engine.data import prepare

    return prepare(dataset_cls(), DatasetConfig(name="synthetic", subset=512), torch.device("cpu"))


def _vae(registry, data, **options):
    seed = options.pop("seed", 0)
    torch.manual_seed(seed)
    cls = registry.models["vae"]
    model = cls(cls.Options(**options), data.info)
    model.optimizers = model.configure_optimizers()
    return model


def test_budget_limits_whichever_first(registry, synthetic_dataset):
    data = _synthetic(synthetic_dataset)  # 512 images, batch 64 -> 8 steps per epoch
    model = _vae(registry, data, hidden_dim=32, latent_dim=2)
    result = train(model, data, {"epochs": 1.5, "steps": 100}, 64, seed=0)
    assert result.stopped_by == "epochs" and result.used["steps"] == 12 and result.used["epochs"] == 1.5
    result = train(model, data, {"seconds": 0.3}, 64, seed=0)
    assert result.stopped_by == "seconds" and 0.3 <= result.used["seconds"] < 1.5


def test_same_seed_same_model_and_loss_goes_down(registry, synthetic_dataset):
    data = _synthetic(synthetic_dataset)
    runs = []
    for _ in range(2):
        model = _vae(registry, data, hidden_dim=64, latent_dim=4, seed=3)
        runs.append(train(model, data, {"steps": 200}, 64, seed=3))
    assert runs[0].history == [{**h, "seconds": runs[0].history[i]["seconds"]} for i, h in enumerate(runs[1].history)]
    losses = [h["loss"] for h in runs[0].history]
    assert losses[-1] < 0.6 * losses[0]


def test_kl_warmup_rises_linearly(registry, synthetic_dataset):
    data = _synthetic(synthetic_dataset)
    model = _vae(registry, data, hidden_dim=16, latent_dim=2, beta=2.0, kl_warmup_epochs=4)
    assert [model.kl_weight(e) for e in (0, 1, 2, 4, 9)] == [0.0, 0.5, 1.0, 2.0, 2.0]
    result = train(model, data, {"epochs": 2}, 64, seed=0)
    # 8 steps per epoch, one history entry per step: the last step starts at 15/8 epochs
    assert [h["kl_weight"] for h in result.history[:3]] == [0.0, 2.0 * (1 / 8) / 4, 2.0 * (2 / 8) / 4]
    assert result.history[-1]["kl_weight"] == pytest.approx(2.0 * (15 / 8) / 4)


@pytest.mark.gpu
def test_tiny_suite_on_cuda_has_the_same_layout(write_suite, tmp_path):
    out = tmp_path / "out"
    assert run_cli(write_suite(TINY), "--out", out, "--device", "cuda") == 0
    rec = json.loads(next(out.glob("runs/*/record.json")).read_text())
    assert rec["device"].startswith("cuda") and rec["status"] == "ok"


def test_a_failing_metric_fails_alone(write_suite, tmp_path, capsys, mock_plugins):
    def broken(ctx):
        raise ValueError("this metric has a bug")

    def needs_setup(ctx):
        raise genbench.errors.UserError("this metric needs a file that is not there")

    mock_plugins("mock_failing_metrics", register_metrics=lambda register: (
        register(genbench.Metric("mock_broken", broken)), register(genbench.Metric("mock_needs_setup", needs_setup))))
    text = TINY.replace("seeds: [0]", "seeds: [0, 1]").replace(
        "runs:", "metrics: [bce, mock_broken, kl, mock_needs_setup]\nruns:")
    assert run_cli(write_suite(text), "--out", tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "genbench: warning: metric 'mock_broken' failed for vae[hidden_dim=64,latent_dim=4] seed 0: " \
           "ValueError: this metric has a bug" in out.replace("\n", " ").replace("  ", " ")
    records = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("runs/*/record.json")]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)
    for rec in records:
        assert rec["metrics"]["mock_broken"] is None and rec["metrics"]["mock_needs_setup"] is None
        assert rec["metrics"]["bce"] > 0 and rec["metrics"]["kl"] > 0  # the others stand
        errors = rec["metric_errors"]
        assert errors["mock_broken"]["error"] == "ValueError: this metric has a bug"
        assert "Traceback" in errors["mock_broken"]["traceback"] and "in broken" in errors["mock_broken"]["traceback"]
        assert errors["mock_needs_setup"]["error"] == "UserError: this metric needs a file that is not there"
        run_dir = tmp_path / "out" / "runs" / rec["run_id"]
        assert (run_dir / "model.pt").is_file() and (run_dir / "samples.png").is_file()
    row = next(l for l in (tmp_path / "out" / "leaderboard.md").read_text().splitlines() if l.startswith("| 1 "))
    assert row.split("|")[4].strip() == "2"  # both runs count on the leaderboard
    assert "Failed metrics" in (tmp_path / "out" / "report.html").read_text()
