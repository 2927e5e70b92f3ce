"""How much do parallel runs buy on this machine? (issue 12, item 8; run it by hand)

A 6-run step-budget suite (the dense VAE 784-400-20, 3 seeds x 2 latent sizes, 1,500
steps of 128 Fashion-MNIST images each, bce and kl) runs four ways, one after another,
each into a fresh folder: serially with torch's default threads, serially with one
thread, with ``--workers 2`` (one thread each), and as 2 Ray actors (one thread each, on
a local Ray instance that genbench starts). It prints each wall time (from process start
to leaderboard), the ratios, Ray's overhead per run against local workers, and checks
that the folders with one thread hold the same scores. Every process gets
OMP_NUM_THREADS=1 unless --threads says otherwise for the first way.

    GENBENCH_DATA=../shared/data .venv/bin/python benchmarks/parallel.py [--steps 1500] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = """
name: parallel_benchmark
dataset: {{name: fashion_mnist}}
budget: {{steps: {steps}}}
seeds: [0, 1, 2]
batch_size: 128
metrics: [bce, kl]
runs:
  - model: vae
    sweep: {{latent_dim: [10, 20]}}
"""


def timed(args: list[str], cwd: Path, env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "genbench", *args], cwd=cwd, capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        sys.exit(f"genbench {' '.join(args)} failed:\n{proc.stderr}")
    return time.perf_counter() - started


def scores(out: Path) -> dict:
    recs = [json.loads(p.read_text()) for p in out.glob("runs/*/record.json")]
    return {r["run_id"]: r["metrics"] for r in recs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        (cwd / "suite.yaml").write_text(SUITE.format(steps=args.steps))
        one = {**os.environ, "OMP_NUM_THREADS": "1"}
        ways = {"serial, default threads": (["--out", "a"], dict(os.environ)),
                "serial, 1 thread": (["--out", "b", "--threads", "1"], one),
                f"{args.workers} workers, 1 thread each": (["--out", "c", "--workers", str(args.workers),
                                                             "--threads", "1"], one),
                f"{args.workers} Ray actors, 1 thread each": (["--out", "d", "--executor", "ray", "--workers",
                                                                str(args.workers), "--threads", "1"], one)}
        walls = {name: timed(["run", "suite.yaml", *extra], cwd, env) for name, (extra, env) in ways.items()}
        same = scores(cwd / "b") == scores(cwd / "c") == scores(cwd / "d")
    for name, wall in walls.items():
        print(f"  {name:<30} {wall:7.1f} s")
    serial2, serial1, parallel, on_ray = walls.values()
    print(f"  workers vs serial 1 thread     {serial1 / parallel:7.2f}x")
    print(f"  workers vs serial default      {serial2 / parallel:7.2f}x")
    print(f"  Ray's overhead per run         {(on_ray - parallel) / 6:7.2f} s (against local workers, Ray's "
          f"start-up included)")
    print(f"  same scores (1 thread: serial, workers, Ray): {same}")


if __name__ == "__main__":
    main()
