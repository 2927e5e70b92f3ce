"""`genbench rescore`: saved models scored again, without training (issue 10, item 5)."""

from __future__ import annotations

import json
import subprocess

import yaml

from genbench.cli import main

from conftest import TINY, genbench_cmd

SCORED = TINY.replace("runs:", "metrics: [fid, bce, kl, elbo]\n"
                      "evaluation: {num_samples: 500}\nruns:")


def _records(out):
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("runs/*/record.json")}


def test_rescoring_reproduces_every_recorded_score_exactly(write_suite, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(write_suite(SCORED)), "--out", str(out)]) == 0
    before = _records(out)
    proc = subprocess.run(genbench_cmd() + ["rescore", str(out)], capture_output=True, text=True)  # a fresh process
    assert proc.returncode == 0, proc.stderr
    after = _records(out)
    for run_id, rec in before.items():
        assert after[run_id]["metrics"] == rec["metrics"]  # exact: sampled FID and ELBO included
        assert after[run_id]["metrics"]["fid"] > 0 and after[run_id]["rescored"]["metrics"] == ["fid", "bce", "kl", "elbo"]
    assert "Rescored 1 run(s)" in proc.stdout


def test_rescoring_adds_a_metric_to_old_results(write_suite, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(write_suite(TINY)), "--out", str(out)]) == 0
    (before,) = _records(out).values()
    assert "ssim" not in before["metrics"]
    assert main(["rescore", str(out), "--metrics", "ssim"]) == 0
    (after,) = _records(out).values()
    assert 0 < after["metrics"]["ssim"] < 1
    assert {k: after["metrics"][k] for k in ("bce", "kl")} == {k: before["metrics"][k] for k in ("bce", "kl")}
    assert "ssim" in (out / "leaderboard.md").read_text() and "ssim" in (out / "results.csv").read_text()


def test_rescore_errors_are_one_line(write_suite, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(write_suite(TINY.replace("runs:", "save_models: false\nruns:"))), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["rescore", str(out)]) == 2
    assert "no finished run with a saved model.pt to rescore" in capsys.readouterr().err
    assert main(["rescore", str(out), "--metrics", "fdi"]) == 2
    assert "unknown metric(s) fdi" in capsys.readouterr().err


def test_rescoring_a_folder_written_before_metrics_owned_their_options(write_suite, tmp_path):
    # genbench 0.1 kept KID's settings in evaluation: and wrote metric names only.
    out = tmp_path / "out"
    old_style = TINY.replace("runs:", "metrics: [kid, bce]\nevaluation: {num_samples: 300, kid_subset_size: 100, "
                             "kid_subsets: 10}\nruns:")
    assert main(["run", str(write_suite(old_style)), "--out", str(out)]) == 0
    saved = yaml.safe_load((out / "suite.yaml").read_text())
    assert saved["metrics"][0] == {"name": "kid", "subset_size": 100, "subsets": 10}
    saved["metrics"] = ["kid", "bce"]
    saved["evaluation"].update(kid_subset_size=100, kid_subsets=10, prc_neighborhood=3, iw_samples=50, iw_images=1000)
    (out / "suite.yaml").write_text(yaml.safe_dump(saved))
    for path in out.glob("runs/*/record.json"):
        rec = json.loads(path.read_text())
        rec.pop("metric_options")
        rec["evaluation"] = saved["evaluation"]
        path.write_text(json.dumps(rec))
    before = _records(out)
    assert main(["rescore", str(out)]) == 0
    for run_id, rec in _records(out).items():
        assert rec["metrics"] == before[run_id]["metrics"]  # the old settings were used: exact
        assert rec["metric_options"] == {"kid": {"subset_size": 100, "subsets": 10}}
    assert yaml.safe_load((out / "suite.yaml").read_text())["metrics"] == [
        {"name": "kid", "subset_size": 100, "subsets": 10}, "bce"]
