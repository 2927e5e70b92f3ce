"""Resume never mixes settings, a run's scores never depend on what ran before it, and a
finished run gets everything it lacks (issue 9, items 5-8)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from genbench.cli import main
from genbench.engine.config import load_suite
from genbench.render.leaderboard import build

from conftest import TINY, genbench_cmd


def _records(out):
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("runs/*/record.json")}


def test_resume_refuses_a_suite_with_other_settings(results_copy, write_suite, capsys):
    before = {p: p.read_bytes() for p in results_copy.rglob("*") if p.is_file()}
    changes = [("budget: {steps: 8}", "budget: {steps: 16}", "budget.steps 8 there, 16 in"),
               ("batch_size: 64", "batch_size: 32", "batch_size 64 there, 32 in"),
               ("runs:", "metrics: [bce]\nruns:", 'metrics ["bce", "kl"] there, ["bce"] in'),
               ("runs:", "evaluation: {num_samples: 500}\nruns:", "evaluation.num_samples 10000 there, 500 in"),
               ("test_subset: 256", "test_subset: 128", "dataset.test_subset 256 there, 128 in")]
    for old, new, said in changes:
        path = write_suite(TINY.replace(old, new), "changed.yaml")
        assert main(["run", str(path), "--out", str(results_copy), "--resume"]) == 2
        err = capsys.readouterr().err
        assert "was run with other settings, and runs of different settings are never pooled" in err
        assert said in err
    assert {p: p.read_bytes() for p in results_copy.rglob("*") if p.is_file()} == before


def test_resume_refuses_other_versions(results_copy, write_suite, capsys):
    env = json.loads((results_copy / "env.json").read_text())
    env["versions"]["torch"] = "1.0.0"
    (results_copy / "env.json").write_text(json.dumps(env))
    assert main(["run", str(write_suite(TINY)), "--out", str(results_copy), "--resume"]) == 2
    assert "torch 1.0.0 there" in capsys.readouterr().err


def _rec(label, seed, steps, bce, finished="2026-01-01T00:00:00"):
    return {"run_id": f"{label}-{seed}-{steps}", "label": label, "model": "vae", "seed": seed, "status": "ok",
            "options": {}, "budget": {"steps": steps}, "metrics": {"bce": bce}, "finished": finished,
            "metric_info": {"bce": {"unit": "nats", "higher_is_better": False}}}


def test_the_leaderboard_never_pools_different_settings():
    records = [_rec("vae", s, 300, 100.0 + s) for s in range(3)] + [_rec("vae", s, 100, 200.0 + s) for s in range(3)]
    board = build(records, ["bce"], "bce", "t")
    rows = {r.label: r for r in board.rows}
    assert set(rows) == {"vae", "vae (settings 2)"}
    assert rows["vae"].seeds == 3 and rows["vae"].cells["bce"].summary.mean == pytest.approx(101.0)
    assert rows["vae (settings 2)"].cells["bce"].summary.mean == pytest.approx(201.0)
    assert any("2 different settings" in n and "never pooled" in n for n in board.notes)


def test_a_seed_counts_once():
    records = [_rec("vae", 0, 300, 100.0, "2026-01-01"), _rec("vae", 0, 300, 110.0, "2026-01-02"),
               _rec("vae", 1, 300, 104.0)]
    board = build(records, ["bce"], "bce", "t")
    (row,) = board.rows
    assert row.seeds == 2 and row.cells["bce"].summary.mean == pytest.approx(107.0)  # newest seed 0 + seed 1
    assert any("1 repeated seed(s)" in n for n in board.notes)


SAMPLES = """
name: det
dataset: {name: mnist, subset: 512, test_subset: 500}
budget: {steps: 6}
seeds: [0]
batch_size: 64
metrics: [fid, bce]
evaluation: {num_samples: 500, curve_metrics: [fid], curve_every: 0.5, curve_images: 200}
runs:
  - {model: vae, label: first, options: {hidden_dim: 32, latent_dim: 4}}
  - {model: gan, label: second, options: {hidden_dim: 32, latent_dim: 8}}
"""


def _run(args, tmp_path):
    proc = subprocess.run(genbench_cmd() + args, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_scores_do_not_depend_on_what_ran_before(tmp_path, data_root):
    """Scored after another run, scored alone in a fresh process, and resumed: identical."""
    both = tmp_path / "both.yaml"
    both.write_text(SAMPLES)
    alone = tmp_path / "alone.yaml"
    alone.write_text(SAMPLES.replace("  - {model: vae, label: first, options: {hidden_dim: 32, latent_dim: 4}}\n", ""))
    _run(["run", str(both), "--out", "a"], tmp_path)
    _run(["run", str(alone), "--out", "b"], tmp_path)
    a, b = _records(tmp_path / "a"), _records(tmp_path / "b")
    second = next(k for k in a if k.startswith("second"))
    assert set(b) == {second}
    assert a[second]["metrics"] == b[second]["metrics"] and a[second]["metrics"]["fid"] > 0
    timeless = lambda rec: [{k: v for k, v in e.items() if k != "seconds"} for e in rec["eval_history"]]  # noqa: E731
    assert timeless(a[second]) == timeless(b[second]) and len(timeless(b[second])) == 1
    shutil.rmtree(tmp_path / "a" / "runs" / second)  # resume recomputes it after the first run
    _run(["run", str(both), "--out", "a", "--resume"], tmp_path)
    assert _records(tmp_path / "a")[second]["metrics"] == b[second]["metrics"]


def test_resume_finishes_what_a_finished_run_lacks(results_copy, write_suite, capsys):
    """The state a kill right after the record was written leaves: no figures, no report."""
    (run_dir,) = (results_copy / "runs").iterdir()
    record = (run_dir / "record.json").read_bytes()
    figures = sorted(p.name for p in run_dir.glob("*.png"))
    assert "samples.png" in figures
    for path in [*run_dir.glob("*.png"), results_copy / "report.html", results_copy / "leaderboard.md"]:
        path.unlink()
    assert main(["run", str(write_suite(TINY)), "--out", str(results_copy), "--resume"]) == 0
    assert "done already, skipped" in capsys.readouterr().out
    assert sorted(p.name for p in run_dir.glob("*.png")) == figures
    assert (run_dir / "record.json").read_bytes() == record  # not retrained
    assert (results_copy / "report.html").is_file() and (results_copy / "leaderboard.md").is_file()


def test_resume_may_add_seeds_and_configurations(results_copy, write_suite):
    more = TINY.replace("seeds: [0]", "seeds: [0, 1]") + "  - {model: ae, options: {latent_dim: 4}}\n"
    assert main(["run", str(write_suite(more)), "--out", str(results_copy), "--resume"]) == 0
    assert len(_records(results_copy)) == 4
    import yaml

    saved = yaml.safe_load((results_copy / "suite.yaml").read_text())
    assert saved["seeds"] == [0, 1] and len(saved["runs"]) == 2


@pytest.mark.parametrize("text, message", [
    (TINY.replace("seeds: [0]", "seeds: [0, 1, 0]"), "seeds[2]: seed 0 is listed twice"),
    (TINY.split("runs:")[0] + "runs: []\n", "runs: list at least one run"),
])
def test_duplicate_seeds_and_empty_runs_fail_validation(write_suite, capsys, text, message):
    assert main(["validate", "--no-data", str(write_suite(text))]) == 2
    assert message in capsys.readouterr().err


def test_labels_that_look_alike_get_their_own_folders(write_suite, registry, tmp_path):
    text = TINY.replace("seeds: [0]", "seeds: [0]").replace("budget: {steps: 8}", "budget: {steps: 2}") + \
        "  - {model: vae, label: 'x/y', options: {hidden_dim: 64, latent_dim: 4}}\n" \
        "  - {model: vae, label: 'x y', options: {hidden_dim: 64, latent_dim: 4}}\n" \
        "  - {model: vae, label: 'x_y', options: {hidden_dim: 64, latent_dim: 4}}\n"
    suite = load_suite(write_suite(text), registry)
    ids = [suite.run_id(r) for r in suite.runs]
    assert len(set(ids)) == len(ids) == 4 and "x_y-seed0-" in " ".join(ids)
    out = tmp_path / "out"
    assert main(["run", str(write_suite(text, "s.yaml")), "--out", str(out)]) == 0
    assert sorted(r["label"] for r in _records(out).values()) == sorted(r.label for r in suite.runs)


def test_resume_refuses_results_scored_with_another_extractor(results_copy, write_suite, capsys):
    path = next(results_copy.glob("runs/*/record.json"))
    rec = json.loads(path.read_text())
    rec["metric_details"] = {"feature_extractor": {"name": "genbench-mnist", "sha256": "0" * 64}}
    path.write_text(json.dumps(rec))
    assert main(["run", str(write_suite(TINY)), "--out", str(results_copy), "--resume"]) == 2
    assert "feature extractor sha256 0000000000000000... there" in capsys.readouterr().err
