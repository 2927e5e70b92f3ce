"""Runs as Ray actors on a real local Ray instance (issue 12): the same numbers as a serial
run, resume across executors, an actor killed mid-run, Ray missing."""

from __future__ import annotations

import sys

import pytest

from genbench.cli import main

from conftest import ROOT

from test_parallel import SUITE, _killer_env, _records, _run

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """A Ray instance on this machine with two CPUs, for the module's tests."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


def test_ray_actors_give_the_serial_runs_numbers_and_resume_what_another_executor_began(
        local_ray, tmp_path, write_suite, capsys):
    path = write_suite(SUITE.format(budget="{steps: 30}", second="gan"))
    two_seeds = write_suite(SUITE.format(budget="{steps: 30}", second="gan").replace("[0, 1, 2]", "[0, 1]"),
                            "two.yaml")
    # (in fresh processes: numpy's BLAS threads are fixed when it loads, here by OMP_NUM_THREADS=1)
    assert _run(["run", str(path), "--out", "serial", "--threads", "1"], tmp_path).returncode == 0
    assert _run(["run", str(two_seeds), "--out", "ray", "--workers", "2"], tmp_path).returncode == 0
    assert main(["run", str(path), "--out", str(tmp_path / "ray"), "--resume", "--executor", "ray",
                 "--workers", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("done already, skipped") == 4 and "2 Ray actors x 1 threads" in out
    a, b = _records(tmp_path / "serial"), _records(tmp_path / "ray")
    assert sorted(a) == sorted(b) and len(a) == 6
    for run_id, rec in a.items():
        assert b[run_id]["status"] == "ok" and b[run_id]["metrics"] == rec["metrics"]
        assert b[run_id]["final_losses"] == rec["final_losses"]
        for name in ("model.pt", "snapshot.npz"):  # made on the actor, written by the driver
            assert (tmp_path / "ray" / "runs" / run_id / name).is_file()
    ray_made = [r for r in b.values() if r["seed"] == 2]
    assert all(r["parallel"]["workers"] == 2 and r["throughput"]["threads"] == 1 for r in ray_made)
    assert ray.is_initialized()  # genbench joined the test's instance and left it running


@pytest.mark.parametrize("lives", [1, 2])
def test_a_ray_actor_killed_mid_run_is_retried_once_then_recorded_failed(tmp_path, write_suite, lives):
    path = write_suite(SUITE.format(budget="{steps: 20}", second="killer").replace("[0, 1, 2]", "[0]"))
    proc = _run(["run", str(path), "--out", "out", "--executor", "ray", "--workers", "2", "--threads", "1"],
                tmp_path, env=_killer_env(tmp_path, lives))
    recs = {r["model"]: r for r in _records(tmp_path / "out").values()}
    assert recs["vae"]["status"] == "ok"
    assert "retrying it once" in proc.stdout, proc.stdout + proc.stderr
    if lives == 1:
        assert proc.returncode == 0, proc.stderr
        assert recs["killer"]["status"] == "ok" and recs["killer"]["budget_used"]["steps"] == 20
    else:
        assert proc.returncode == 1
        assert recs["killer"]["status"] == "failed" and recs["killer"]["error"].startswith("WorkerDied: ")
        assert "twice (the run was retried once)" in recs["killer"]["error"]


def test_without_ray_the_ray_executor_is_one_line_naming_the_extra(write_suite, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without Ray gives: ImportError
    path = write_suite(SUITE.format(budget="{steps: 5}", second="vae"))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"genbench: error: --executor ray needs Ray: pip install -e '{ROOT}[ray]' (genbench is " \
                          f"installed from that clone)"
    assert not (tmp_path / "out").exists()
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--address", "auto"]) == 2
    assert "--address and --gpus-per-run go with --executor ray" in capsys.readouterr().err


def test_a_search_on_ray_actors_draws_and_scores_the_serial_search_trials(tmp_path, write_suite):
    from test_parallel import SEARCH

    path = write_suite(SEARCH)  # TPE: one executor call per round, then one for the final runs
    assert _run(["run", str(path), "--out", "serial", "--threads", "1"], tmp_path).returncode == 0
    proc = _run(["run", str(path), "--out", "ray", "--executor", "ray", "--workers", "2", "--threads", "1"],
                tmp_path, timeout=300)  # actors kept across calls: a leaked actor would hold a CPU and hang
    assert proc.returncode == 0, proc.stderr
    a, b = _records(tmp_path / "serial"), _records(tmp_path / "ray")
    assert sorted(a) == sorted(b) and len(a) == 8
    assert all(b[k]["metrics"] == r["metrics"] and b[k].get("trial") == r.get("trial") for k, r in a.items())
    assert (tmp_path / "serial" / "tuning.csv").read_text() == (tmp_path / "ray" / "tuning.csv").read_text()
