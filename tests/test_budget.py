"""FLOP budgets, recorded throughput and contention (issue 11, items 1 and 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from genbench.cli import main
from genbench.engine import speed
from genbench.engine.pluginmanager import get_registry
from genbench.engine.train import train
from genbench.testing import tiny_data

from conftest import genbench_cmd

SUITE = """
name: flops
dataset: {{name: mnist, subset: 1024, test_subset: 256}}
budget: {budget}
batch_size: 100
metrics: [bce, kl]
runs:
  - model: vae
    options: {{hidden_dim: 64, latent_dim: 4}}
"""


def _records(out):
    return [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json"))]


@pytest.fixture
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def dense_vae_flops(batch: int, dims: list[int], latent: int) -> int:
    """Matrix-product FLOPs of one step of a dense VAE, counted by hand: forward 2*B*m*n per
    layer; backward the same twice (inputs and weights) except no input gradient for the
    first layer, whose input is the data."""
    layers = [(dims[0], dims[1]), (dims[1], 2 * latent), (latent, dims[1]), (dims[1], dims[0])]
    forward = sum(2 * batch * m * n for m, n in layers)
    return 3 * forward - 2 * batch * dims[0] * dims[1]


def test_a_steps_flops_are_counted_once_per_kind_of_step_and_match_a_hand_count():
    reg = get_registry()
    data = tiny_data(n=300)  # 2 full batches of 128, then one of 44
    cls = reg.models["vae"]
    torch.manual_seed(0)
    model = cls(cls.Options(hidden_dim=400, latent_dim=20), data.info)
    model.optimizers = model.configure_optimizers()
    result = train(model, data, {"epochs": 2}, 128, seed=0)
    counted = {entry["batch_size"]: entry["flops"] for entry in result.step_flops}
    assert counted == {128: dense_vae_flops(128, [784, 400], 20), 44: dense_vae_flops(44, [784, 400], 20)}
    assert result.used["flops"] == 4 * counted[128] + 2 * counted[44]  # 2 epochs of 128 + 128 + 44


def test_a_gan_step_counts_both_of_its_networks_and_both_updates():
    reg = get_registry()
    data = tiny_data(n=64)
    cls = reg.models["gan"]
    model = cls(cls.Options(latent_dim=64, hidden_dim=256), data.info)
    model.optimizers = model.configure_optimizers()
    batch = next(data.batches(64, torch.Generator().manual_seed(0)))
    # By hand, B = 64: G forward; D forward on real, detached fake and fake; the D update's
    # backward twice (no input gradient at D's first layer); the G update's backward through
    # D (inputs and weights) and G (no input gradient at G's first layer).
    b, z, h, d = 64, 64, 256, 784
    g = 2 * b * (z * h + h * 2 * h + 2 * h * d)
    dis = 2 * b * (d * 2 * h + 2 * h * h + h * 1)
    expected = 3 * g - 2 * b * z * h + 9 * dis - 2 * (2 * b * d * 2 * h)
    assert speed.one_step_flops(model, batch) == expected


def test_a_flop_budget_gives_the_same_steps_and_scores_whatever_the_threads_or_load(write_suite, tmp_path):
    path = write_suite(SUITE.format(budget="{flops: 2e10}"))
    outs = []
    for threads in (1, 2):
        out = tmp_path / f"threads{threads}"
        proc = subprocess.run(genbench_cmd() + ["run", str(path), "--out", str(out), "--threads", str(threads)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        outs.append(out)
    # and once more beside a process that keeps both cores busy
    burner = subprocess.Popen([sys.executable, "-c", "import torch\nx = torch.randn(600, 600)\n"
                               "while True: x = (x @ x).tanh()"])
    try:
        out = tmp_path / "loaded"
        proc = subprocess.run(genbench_cmd() + ["run", str(path), "--out", str(out)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        outs.append(out)
    finally:
        burner.kill()
    recs = [_records(o)[0] for o in outs]
    assert recs[0]["stopped_by"] == "flops" and recs[0]["budget_used"]["flops"] >= 2e10
    assert len({r["budget_used"]["steps"] for r in recs}) == 1  # exactly the same work
    assert len({r["budget_used"]["flops"] for r in recs}) == 1
    for rec in recs[1:]:
        for name, value in recs[0]["metrics"].items():
            assert rec["metrics"][name] == pytest.approx(value, rel=1e-4)  # summation order differs by threads
    assert [r["throughput"]["threads"] for r in recs[:2]] == [1, 2]
    for out in outs:  # a flag (the loaded run may get one) marks the timings, never the scores
        board = (out / "leaderboard.md").read_text()
        row = next(line for line in board.splitlines() if line.startswith("| 1 "))
        assert "‡" not in row.split("|")[2]


def test_throughput_is_recorded(finished_folder):
    (rec,) = _records(finished_folder)
    speed_ = rec["throughput"]
    assert speed_["images_per_second"] > 0 and speed_["steps_per_second"] > 0 and speed_["flops_per_second"] > 0
    assert speed_["threads"] == torch.get_num_threads() and speed_["cores"] >= 1
    assert 0 < speed_["cpu_share"] < 2 and 0 < speed_["peak_fraction"] < 5
    env = json.loads((finished_folder / "env.json").read_text())
    assert env["matmul_flops_per_second"] > 1e8
    (step,) = rec["step_flops"]  # TINY: 8 steps of 64 images
    assert step["batch_size"] == 64 and rec["budget_used"]["flops"] == 8 * step["flops"] > 0


def _crowded_run(write_suite, tmp_path, monkeypatch, budget: str):
    """One run while the load average reads three jobs above the cores: (its folder, its record)."""
    monkeypatch.setattr(speed, "load", lambda: speed.cores() + 3.0)  # as if three more jobs ran
    out = tmp_path / "out"
    assert main(["run", str(write_suite(SUITE.format(budget=budget))), "--out", str(out), "--threads", "1"]) == 0
    (rec,) = _records(out)
    assert rec["contended"] and "load average" in rec["contended"][0]
    return out, rec


def test_a_crowded_run_under_a_seconds_budget_is_flagged_everywhere(write_suite, tmp_path, monkeypatch, capsys,
                                                                   keep_threads):
    out, rec = _crowded_run(write_suite, tmp_path, monkeypatch, "{seconds: 0.5, steps: 5}")
    assert "looks contended" in capsys.readouterr().out
    board = (out / "leaderboard.md").read_text()
    assert "‡" in board and "contended" in board and "--threads 1" in board
    assert "contended" in (out / "report.html").read_text()
    assert rec["throughput"]["threads"] == 1


def test_a_crowded_run_under_a_steps_budget_marks_only_its_timings(write_suite, tmp_path, monkeypatch, capsys,
                                                                 keep_threads):
    out, rec = _crowded_run(write_suite, tmp_path, monkeypatch, "{steps: 5}")
    assert "its scores stand, its timings (train s, img/s, % peak) do not" in capsys.readouterr().out
    board = (out / "leaderboard.md").read_text()
    cells = next(line for line in board.splitlines() if line.startswith("| 1 ")).split("|")
    headers = next(line for line in board.splitlines() if line.startswith("| #")).split("|")
    marked = {h.strip() for h, c in zip(headers, cells) if "‡" in c}
    assert marked == {"train s", "img/s", "% peak"}
    assert "its scores stand (its budget is not time)" in board


def test_the_peak_is_the_best_of_several_timings_and_no_run_shows_more_than_all_of_it(finished_folder):
    (rec,) = _records(finished_folder)
    assert 0 < rec["throughput"]["peak_fraction"] <= 1
    speed_ = {"flops_per_second": 5e12}  # a run faster than the measured yardstick
    rec = {"throughput": speed_}
    speed.judge(rec, 1e12, None)
    assert speed_["peak_fraction"] == 1.0 and speed_["peak_flops_per_second"] == 1e12


def test_the_sampling_clock_repeats_short_draws_and_reports_the_median(monkeypatch):
    from genbench.engine import snapshot

    clock = {"t": 0.0}
    monkeypatch.setattr(snapshot.time, "perf_counter", lambda: clock["t"])

    def drawing(seconds):
        durations = iter(seconds)
        return lambda: clock.__setitem__("t", clock["t"] + next(durations))

    # a sub-millisecond model whose first draw (the figure's) paid the warm-up
    cost = snapshot.sampling_cost(drawing([0.0005, 0.0004, 0.0006] + [0.0005] * 100), torch.device("cpu"), 100,
                                  first=0.02)
    assert cost["repeats"] == snapshot.CLOCK_MAX_REPEATS  # 1 s is never reached at 0.5 ms a draw
    assert cost["seconds"] == 0.0005 and cost["seconds_per_1000"] == 0.005  # the median, not the slow first
    cost = snapshot.sampling_cost(drawing([4.0] * 10), torch.device("cpu"), 100, first=4.0)
    assert cost["repeats"] == 3 and cost["seconds"] == 4.0  # 3 timings; then 12 s are spent
    cost = snapshot.sampling_cost(drawing([]), torch.device("cpu"), 100, first=45.0)
    assert cost["repeats"] == 1 and cost["seconds_per_1000"] == 450.0  # a 45-s draw is not repeated


def test_a_run_crowded_out_by_real_competing_processes_is_flagged_by_its_cpu_share(write_suite, tmp_path):
    # Two processes that keep both cores busy: the run gets about a third of its
    # threads' CPU time, well under the one-half limit (no monkeypatching: real load).
    burners = [subprocess.Popen([sys.executable, "-c", "import torch\nx = torch.randn(600, 600)\n"
                                 "while True: x = (x @ x).tanh()"]) for _ in range(2)]
    try:
        out = tmp_path / "out"
        proc = subprocess.run(genbench_cmd() + ["run", str(write_suite(SUITE.format(budget="{seconds: 1}"))),
                                                "--out", str(out), "--threads", "2"], capture_output=True, text=True)
    finally:
        for burner in burners:
            burner.kill()
    assert proc.returncode == 0, proc.stderr
    (rec,) = _records(out)
    assert rec["stopped_by"] == "seconds"
    assert rec["throughput"]["cpu_share"] < speed.CPU_SHARE_MIN, rec["throughput"]
    assert any("CPU time" in reason for reason in rec["contended"])
    assert "looks contended" in proc.stdout and "‡" in (out / "leaderboard.md").read_text()


def test_contention_rules():
    quiet = {"cpu_share": 0.95, "threads": 2, "cores": 2, "load_start": 0.3, "load_end": 2.1,
             "images_per_second": 20000.0}
    assert speed.contention(quiet, best_before=21000.0) == []
    assert "CPU time" in speed.contention({**quiet, "cpu_share": 0.3}, None)[0]
    assert "load average was 4.5" in speed.contention({**quiet, "load_end": 4.5}, None)[0]
    assert "images/s against" in speed.contention({**quiet, "images_per_second": 5000.0}, 20000.0)[0]


def test_bad_flop_budgets_are_one_line_errors(write_suite, capsys):
    for budget, message in (("{flops: 1e6}", "budget.flops: 1e+06 is less than one training step of"),
                            ("{flops: 0}", "budget.flops: must be a finite number greater than 0, got 0"),
                            ("{flops: -5.0e+9}", "budget.flops: must be a finite number greater than 0")):
        assert main(["validate", str(write_suite(SUITE.format(budget=budget)))]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert main(["run", str(write_suite(SUITE.format(budget="{steps: 1}"))), "--threads", "0"]) == 2
    assert "--threads 0" in capsys.readouterr().err
