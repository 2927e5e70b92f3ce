"""The third-party path: a plugin package installed with pip shows up and runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, TINY, genbench_cmd


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip-install examples/genbench-linear-ae into its own folder, as a user would."""
    work = tmp_path_factory.mktemp("plugin")
    src = shutil.copytree(ROOT / "examples" / "genbench-linear-ae", work / "src")
    target = work / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                           "--no-build-isolation", "--target", str(target), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    return env


def test_installed_plugin_is_listed_with_its_distribution(installed):
    proc = subprocess.run(genbench_cmd() + ["plugins", "--json"], capture_output=True, text=True, env=installed)
    assert proc.returncode == 0, proc.stderr
    models = {m["name"]: m for m in json.loads(proc.stdout)["models"]}
    assert models["linear_ae"]["distribution"] == "genbench-linear-ae"
    assert models["linear_ae"]["version"] == "0.1.0"
    assert models["linear_ae"]["capabilities"] == ["reconstruct"]
    assert "vae" in models  # the built-ins still load beside it
    # and it is not there without the package
    plain = subprocess.run(genbench_cmd() + ["plugins", "--json"], capture_output=True, text=True)
    assert "linear_ae" not in {m["name"] for m in json.loads(plain.stdout)["models"]}


def test_installed_plugin_runs_in_a_suite(installed, tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(TINY + "  - model: linear_ae\n    options: {latent_dim: 8}\n")
    out = tmp_path / "out"
    proc = subprocess.run(genbench_cmd() + ["run", str(suite), "--out", str(out)],
                          capture_output=True, text=True, env=installed)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = {json.loads(p.read_text())["model"]: json.loads(p.read_text())
               for p in out.glob("runs/*/record.json")}
    linear = records["linear_ae"]
    assert linear["status"] == "ok" and linear["metrics"]["bce"] > 0
    assert linear["metrics"]["kl"] is None  # no posterior: not applicable
    board = (out / "leaderboard.md").read_text()
    row = next(line for line in board.splitlines() if r"linear\_ae\[latent\_dim=8\]" in line)
    assert "| -" in row  # a dash where the metric does not apply
