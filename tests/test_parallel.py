"""Parallel runs in local worker processes (issue 12): the same numbers as a serial run,
resume across executors, a worker killed mid-run, Ctrl-C, seconds budgets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from genbench.cli import main
from genbench.results import files

from conftest import genbench_cmd

SUITE = """
name: par
dataset: {{name: mnist, subset: 1024, test_subset: 256}}
budget: {budget}
seeds: [0, 1, 2]
batch_size: 64
metrics: [bce, kl, fid, {{name: kid, subset_size: 100, subsets: 10}}]
evaluation: {{num_samples: 256}}
runs:
  - model: vae
    options: {{hidden_dim: 32, latent_dim: 4}}
  - model: {second}
    options: {{hidden_dim: 16, latent_dim: 4}}
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _records(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json"))}


def _run(args: list[str], cwd: Path, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(genbench_cmd() + args, cwd=cwd, capture_output=True, text=True, env=env or ENV,
                          timeout=timeout)


def test_two_workers_give_the_serial_runs_numbers_and_resume_across_executors(tmp_path, write_suite):
    path = write_suite(SUITE.format(budget="{steps: 30}", second="gan"))
    serial = _run(["run", str(path), "--out", "serial", "--threads", "1"], tmp_path)
    assert serial.returncode == 0, serial.stderr
    parallel = _run(["run", str(path), "--out", "parallel", "--workers", "2"], tmp_path)
    assert parallel.returncode == 0, parallel.stderr
    assert "2 workers x 1 threads" in parallel.stdout and "done 6 · running 0 · failed 0 · waiting 0" in parallel.stdout
    a, b = _records(tmp_path / "serial"), _records(tmp_path / "parallel")
    assert sorted(a) == sorted(b) and len(a) == 6
    for run_id, rec in a.items():
        other = b[run_id]
        assert other["status"] == rec["status"] == "ok"
        assert other["metrics"] == rec["metrics"]  # number by number, not approximately
        assert other["history"] == [dict(h, seconds=o["seconds"]) for h, o in zip(rec["history"], other["history"])]
        assert other["budget_used"]["steps"] == rec["budget_used"]["steps"] == 30
        assert rec["parallel"] == {"workers": 1, "ran_beside": 0}
        assert other["parallel"]["workers"] == 2 and other["throughput"]["threads"] == 1
        for name in ("model.pt", "snapshot.npz"):  # the files travel back to the driver
            assert (tmp_path / "parallel" / "runs" / run_id / name).is_file()
    assert max(r["parallel"]["ran_beside"] for r in b.values()) == 1
    assert (tmp_path / "parallel" / "report.html").is_file()
    # a folder started serially is finished by workers, and the other way round
    bigger = write_suite(SUITE.format(budget="{steps: 30}", second="gan").replace("[0, 1, 2]", "[0, 1, 2, 3]"),
                         "bigger.yaml")
    for out, args in (("serial", ["--workers", "2"]), ("parallel", ["--threads", "1"])):
        resumed = _run(["run", str(bigger), "--out", out, "--resume", *args], tmp_path)
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.count("done already, skipped") == 6
        recs = _records(tmp_path / out)
        assert len(recs) == 8 and all(r["status"] == "ok" for r in recs.values())
    new = {k: v["metrics"] for k, v in _records(tmp_path / "serial").items() if k not in a}
    assert new == {k: v["metrics"] for k, v in _records(tmp_path / "parallel").items() if k not in a}


KILLER = '''
import os, signal
from pathlib import Path
import genbench
from genbench.plugins.vae import VAE

class Killer(VAE):
    """A VAE whose worker process is killed (SIGKILL) at step 5 of each of its first
    ``lives`` attempts: a crash the process cannot catch."""
    name = "killer"

    def train_step(self, batch, step):
        marks = Path(os.environ["KILLER_DIR"])
        if step.step == 5 and len(list(marks.glob("attempt*"))) < int(os.environ["KILLER_LIVES"]):
            (marks / f"attempt{len(list(marks.glob('attempt*')))}").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().train_step(batch, step)

class Raiser(VAE):
    """A VAE whose training raises at step 3: an ordinary bug in a plugin."""
    name = "raiser"

    def train_step(self, batch, step):
        if step.step == 3:
            raise RuntimeError("the plugin's own bug")
        return super().train_step(batch, step)

@genbench.hookimpl
def register_models(register):
    register(Killer)
    register(Raiser)
'''


def _killer_env(tmp_path: Path, lives: int) -> dict:
    """An installed third-party plugin, as far as entry points can tell: a module and its
    dist-info on PYTHONPATH, so the driver and every spawned worker load it."""
    site = tmp_path / "site"
    (site / "killer_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "killer_plugin.py").write_text(textwrap.dedent(KILLER))
    (site / "killer_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: killer-plugin\n"
                                                                    "Version: 0.1\n")
    (site / "killer_plugin-0.1.dist-info" / "entry_points.txt").write_text("[genbench]\nkiller = killer_plugin\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    return {**ENV, "PYTHONPATH": str(site), "KILLER_DIR": str(marks), "KILLER_LIVES": str(lives)}


@pytest.mark.parametrize("lives", [1, 2])
def test_a_worker_killed_mid_run_is_retried_once_then_recorded_failed_and_the_suite_goes_on(
        tmp_path, write_suite, lives):
    path = write_suite(SUITE.format(budget="{steps: 20}", second="killer").replace("[0, 1, 2]", "[0]"))
    proc = _run(["run", str(path), "--out", "out", "--workers", "2"], tmp_path, env=_killer_env(tmp_path, lives))
    recs = {r["model"]: r for r in _records(tmp_path / "out").values()}
    assert recs["vae"]["status"] == "ok"  # the other run is untouched
    assert "its worker process was killed by signal SIGKILL; retrying it once" in proc.stdout
    if lives == 1:
        assert proc.returncode == 0, proc.stderr
        assert recs["killer"]["status"] == "ok" and recs["killer"]["budget_used"]["steps"] == 20
    else:
        assert proc.returncode == 1
        assert recs["killer"]["status"] == "failed"
        assert recs["killer"]["error"] == ("WorkerDied: its worker process was killed by signal SIGKILL, twice "
                                           "(the run was retried once)")
        assert "failed 1" in proc.stdout
    assert not list((tmp_path / "out").rglob(f"*{files.TMP_SUFFIX}"))  # no half-written file anywhere


def test_a_run_that_raises_on_a_worker_is_recorded_exactly_as_in_a_serial_run(tmp_path, write_suite):
    path = write_suite(SUITE.format(budget="{steps: 20}", second="raiser").replace("[0, 1, 2]", "[0]"))
    env = _killer_env(tmp_path, 0)
    outs = {}
    for out, extra in (("serial", ["--threads", "1"]), ("workers", ["--workers", "2"])):
        proc = _run(["run", str(path), "--out", out, *extra], tmp_path, env=env)
        assert proc.returncode == 1 and "failed: RuntimeError: the plugin's own bug (traceback in" in proc.stdout
        outs[out] = {r["model"]: r for r in _records(tmp_path / out).values()}
    for name in ("vae", "raiser"):
        a, b = outs["serial"][name], outs["workers"][name]
        assert (a["status"], a.get("error"), a.get("metrics")) == (b["status"], b.get("error"), b.get("metrics"))
    assert outs["workers"]["raiser"]["error"] == "RuntimeError: the plugin's own bug"
    log = next((tmp_path / "workers" / "runs").glob("raiser*/error.log")).read_text()
    assert "Traceback" in log and "the plugin's own bug" in log and "train_step" in log


def test_ctrl_c_stops_every_worker_and_leaves_a_resumable_folder(tmp_path, write_suite):
    path = write_suite(SUITE.format(budget="{epochs: 100}", second="vae"))
    proc = subprocess.Popen(genbench_cmd() + ["run", str(path), "--out", "out", "--workers", "2"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(_workers_of(proc.pid)) < 2:
        time.sleep(0.2)
    workers = _workers_of(proc.pid)
    assert len(workers) == 2
    time.sleep(3)  # training by now
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("genbench: interrupted")
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
    finished = _records(tmp_path / "out")  # whole records only, of runs that had finished
    assert len(finished) < 6 and all(r["status"] == "ok" for r in finished.values())
    assert not list((tmp_path / "out").rglob(f"*{files.TMP_SUFFIX}"))
    resumed = _run(["run", str(path), "--out", "out", "--resume", "--workers", "2"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("done already, skipped") == len(finished)
    assert len(_records(tmp_path / "out")) == 6


def _workers_of(pid: int) -> list[int]:
    """The worker processes of a driver (not multiprocessing's resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    pids = [int(p) for p in out.split()]
    return [p for p in pids if "spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]


def test_a_seconds_budget_with_more_threads_than_cores_is_refused_and_a_shared_machine_warned(
        write_suite, tmp_path, capsys):
    import torch

    from genbench.engine import parallel, speed
    from genbench.engine.config import load_suite
    from genbench.engine.pluginmanager import get_registry

    path = write_suite(SUITE.format(budget="{seconds: 1}", second="vae"))
    cores = speed.cores()
    assert main(["run", str(path), "--out", str(tmp_path / "a"), "--workers", str(cores + 1), "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert f"budget.seconds with --workers {cores + 1} x 1 threads: more threads than the {cores} cores" in err
    assert not (tmp_path / "a").exists()
    assert main(["run", str(path), "--out", str(tmp_path / "b"), "--workers", "9999"]) == 2
    assert "--workers 9999: give a number of worker processes from 1 to 256" in capsys.readouterr().err
    suite = load_suite(path, get_registry())
    fits = parallel.plan(suite, torch.device("cpu"), workers=cores, threads=1)
    assert fits.threads == 1 and "share this machine's memory and caches" in fits.warnings[0]
    flops = load_suite(write_suite(SUITE.format(budget="{flops: 1e9}", second="vae"), "f.yaml"), get_registry())
    assert parallel.plan(flops, torch.device("cpu"), workers=cores + 1, threads=None).warnings == []


def test_the_drivers_loggers_get_every_workers_training_logs(tmp_path, write_suite, mock_plugins):
    import genbench

    class Collect(genbench.Logger):
        name = "collect"
        description = "keeps training logs by run (tests)"
        logs: dict = {}

        def on_train_log(self, run, step, values):
            self.logs.setdefault(run.run_id, []).append({"step": step, **values})

        def on_eval_log(self, run, step, scores):
            self.logs.setdefault(("eval", run.run_id), []).append({"step": step, **scores})

    mock_plugins("mock_collect", register_loggers=lambda register: register(Collect))
    text = SUITE.format(budget="{steps: 40}", second="vae").replace("runs:", "loggers: [collect]\n"
                                                                     "evaluation: {num_samples: 256, curve_metrics: "
                                                                     "[bce], curve_every: 1}\nruns:")
    text = text.replace("evaluation: {num_samples: 256}\n", "")
    out = tmp_path / "out"
    assert main(["run", str(write_suite(text)), "--out", str(out), "--workers", "2"]) == 0
    recs = _records(out)
    assert len(recs) == 6 and set(recs) == {k for k in Collect.logs if isinstance(k, str)}
    for run_id, rec in recs.items():  # every entry of every worker's history, in order
        assert Collect.logs[run_id] == rec["history"]
        assert Collect.logs[("eval", run_id)] == rec["eval_history"]


SEARCH = """
name: tuned
dataset: {name: mnist, subset: 1024, test_subset: 256, validation: 256}
budget: {steps: 20}
seeds: [0]
batch_size: 64
metrics: [bce, kl]
trials: 3
sampler: tpe
runs:
  - model: vae
    options: {hidden_dim: 32}
    search: {lr: {loguniform: [1.0e-3, 1.0e-2]}, latent_dim: {int: [2, 8]}}
  - model: beta_vae
    options: {hidden_dim: 16}
    search: {beta: {uniform: [1.0, 4.0]}}
"""


def test_a_search_on_two_workers_draws_and_scores_the_serial_search_trials(tmp_path, write_suite):
    path = write_suite(SEARCH)
    serial = _run(["run", str(path), "--out", "serial", "--threads", "1"], tmp_path)
    assert serial.returncode == 0, serial.stderr
    parallel = _run(["run", str(path), "--out", "parallel", "--workers", "2"], tmp_path)
    assert parallel.returncode == 0, parallel.stderr
    a, b = _records(tmp_path / "serial"), _records(tmp_path / "parallel")
    assert sorted(a) == sorted(b) and len(a) == 8  # 2 entries x 3 trials, and one final run each
    for run_id, rec in a.items():
        assert b[run_id]["metrics"] == rec["metrics"] and b[run_id].get("trial") == rec.get("trial")
        assert b[run_id]["parallel"]["workers"] == 2
    assert (tmp_path / "serial" / "tuning.csv").read_text() == (tmp_path / "parallel" / "tuning.csv").read_text()


WORKER_FAILS = '''
import multiprocessing

import torch

import genbench


class Shard(genbench.Dataset):
    """Loads in the driver; every worker process fails to read it, as on a node without the mount."""
    name = "shard"
    description = "fails in worker processes"
    image_shape = (1, 28, 28)
    class_names = ("a", "b")

    def load(self, split, root, download):
        if multiprocessing.current_process().name.startswith("genbench-worker"):
            raise OSError("cannot open /data/shard-7: permission denied")
        g = torch.Generator().manual_seed(0)
        return genbench.ImageSet(torch.randint(0, 255, (256, 1, 28, 28), generator=g, dtype=torch.uint8),
                                 torch.arange(256) % 2)


@genbench.hookimpl
def register_datasets(register):
    register(Shard)
'''


def test_workers_that_all_die_at_start_are_one_line_with_the_first_ones_reason(tmp_path, write_suite):
    site = tmp_path / "site"
    (site / "shard_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "shard_plugin.py").write_text(WORKER_FAILS)
    (site / "shard_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: shard-plugin\n"
                                                                   "Version: 0.1\n")
    (site / "shard_plugin-0.1.dist-info" / "entry_points.txt").write_text("[genbench]\nshard = shard_plugin\n")
    path = write_suite("name: w\ndataset: {name: shard}\nbudget: {steps: 2}\nseeds: [0, 1]\nbatch_size: 64\n"
                       "metrics: [bce]\nruns:\n  - model: vae\n")
    proc = _run(["run", str(path), "--out", "out", "--workers", "2"], tmp_path, env={**ENV, "PYTHONPATH": str(site)})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "genbench: error: every worker process died before its first run; the first one said: DataError: data "
        "set 'shard': the train split could not be loaded: OSError: cannot open /data/shard-7: permission denied")
