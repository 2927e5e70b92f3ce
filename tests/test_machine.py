"""The machine in every record, and what holds across machines (issue 27, item 1):
the same steps everywhere, the same scores on the same instruction set, and `compare`
names what differs. Another instruction set is had here by capping the kernels' ISA
(torch's, MKL's and oneDNN's) at AVX2 through their environment variables."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from genbench.cli import main
from genbench.results import record

from conftest import genbench_cmd

SUITE = """
name: isa
dataset: {name: fashion_mnist, subset: 1024, test_subset: 512}
budget: {flops: 2.0e+10}
seeds: [0]
batch_size: 64
metrics: [bce, kl, fid]
evaluation: {num_samples: 512}
runs:
  - model: vae
    options: {hidden_dim: 64, latent_dim: 8}
  - model: conv_vae
    options: {channels: [8, 16], latent_dim: 8}
"""
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def _records(out):
    return {r["model"]: r for r in (json.loads(p.read_text()) for p in out.glob("runs/*/record.json"))}


def test_the_machine_is_in_every_record_and_in_env_json(finished_folder):
    (rec,) = _records(finished_folder).values()
    env = json.loads((finished_folder / "env.json").read_text())
    assert rec["machine"] == env["machine"] == record.machine("cpu")
    assert rec["machine"]["torch_cpu_capability"] and rec["machine"]["blas"] and rec["machine"]["arch"]
    flags = open("/proc/cpuinfo").read().split("flags", 1)[1].split("\n", 1)[0].split() if os.path.exists(
        "/proc/cpuinfo") else []
    assert ("avx2" in rec["machine"]["isa"]) == ("avx2" in flags)


@pytest.mark.slow
def test_same_steps_everywhere_same_scores_on_the_same_instruction_set(tmp_path, capsys):
    (tmp_path / "isa.yaml").write_text(SUITE)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for out, extra in (("a", {}), ("b", {}), ("avx2", AVX2)):
        proc = subprocess.run(genbench_cmd() + ["run", "isa.yaml", "--out", out, "--threads", "1"], cwd=tmp_path,
                              capture_output=True, text=True, env={**env, **extra}, timeout=600)
        assert proc.returncode == 0, proc.stderr
    a, b, capped = (_records(tmp_path / o) for o in ("a", "b", "avx2"))
    for model in ("vae", "conv_vae"):
        # the FLOP budget gives the same steps whatever the kernels
        assert a[model]["budget_used"]["steps"] == b[model]["budget_used"]["steps"] == \
            capped[model]["budget_used"]["steps"]
        assert a[model]["metrics"] == b[model]["metrics"]  # same instruction set: the same scores, every digit
        for name, value in a[model]["metrics"].items():  # another one: the same scores to a few digits
            assert capped[model]["metrics"][name] == pytest.approx(value, rel=0.05), (model, name)
    assert capped["vae"]["machine"]["isa_caps"] == AVX2
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "avx2"), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "Machine differs: isa\\_caps: {} -\\> " in out
    if record.machine("cpu")["torch_cpu_capability"] == "AVX512":  # capped to AVX2: another kernel set
        assert 'torch\\_cpu\\_capability: "AVX512" -\\> "AVX2"' in out
