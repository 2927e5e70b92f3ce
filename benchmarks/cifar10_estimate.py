"""How long would suites/cifar10.yaml take on this machine? Measure a fraction of it.

CIFAR-10 itself is not here, so this writes a fixture in its official binary format
(``color_shapes`` images: the cost of a step does not depend on what the pixels show)
and Inception weights initialised at random (the same network, so the same compute),
then runs each of the suite's configurations, one seed, at ``--fraction`` of its FLOP
budget, with ``--samples`` samples scored against as many test images. Training time
scales with the FLOPs; evaluation (sampling, features, reconstructions, likelihood
bounds) with the numbers of samples and test images, 10,000 each in the suite.

    python benchmarks/cifar10_estimate.py --fraction 0.01 --samples 500

prints each configuration's measured and extrapolated seconds and the suite's total.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def write_cifar(folder: Path, train: int, test: int) -> None:
    from genbench.plugins.colorshapes import generate

    folder.mkdir(parents=True)
    names = [f"data_batch_{k}.bin" for k in range(1, 6)]
    for i, (name, n) in enumerate([(name, train // 5) for name in names] + [("test_batch.bin", test)]):
        images, labels = generate(n, 1000 + i)
        # the official layout: a label byte, then the red, green and blue 32x32 planes
        np.concatenate([labels.numpy().astype(np.uint8)[:, None], images.numpy().reshape(n, -1)], axis=1).tofile(
            folder / name)


def inception_weights(path: Path) -> None:
    from genbench.api import fidelity

    fidelity.torch_fidelity()
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    load = inception.load_state_dict_from_url, inception.FeatureExtractorInceptionV3.load_state_dict
    inception.load_state_dict_from_url = lambda *a, **k: {}
    inception.FeatureExtractorInceptionV3.load_state_dict = lambda self, state: None
    try:
        torch.manual_seed(0)
        net = inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    finally:
        inception.load_state_dict_from_url, inception.FeatureExtractorInceptionV3.load_state_dict = load
    torch.save(net.state_dict(), path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fraction", type=float, default=0.01, help="of the FLOP budget (default 0.01)")
    parser.add_argument("--samples", type=int, default=500, help="samples and test images per run (default 500)")
    parser.add_argument("--train-images", type=int, default=5000)
    args = parser.parse_args()
    from genbench.cli import main as genbench

    suite = yaml.safe_load((ROOT / "suites" / "cifar10.yaml").read_text())
    full_flops, full_samples = suite["budget"]["flops"], suite["evaluation"]["num_samples"]
    seeds = len(suite["seeds"])
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        write_cifar(scratch / "data" / "cifar10" / "cifar-10-batches-bin", args.train_images, args.samples)
        inception_weights(scratch / "inception.pth")
        suite.update(seeds=[0], budget={"flops": full_flops * args.fraction})
        # KID's subsets of 1,000 need as many samples; smaller ones cost about the same
        suite["metrics"] = [{"name": "kid", "subset_size": min(1000, args.samples)} if m == "kid" else m
                            for m in suite["metrics"]]
        suite["dataset"]["root"] = str(scratch / "data")
        suite["evaluation"].update(num_samples=args.samples, feature_extractor_weights_path=str(scratch / "inception.pth"))
        (scratch / "suite.yaml").write_text(yaml.safe_dump(suite))
        if genbench(["run", str(scratch / "suite.yaml"), "--out", str(scratch / "out")]) != 0:
            return 1
        records = [json.loads(p.read_text()) for p in sorted((scratch / "out" / "runs").glob("*/record.json"))]
    scale = full_samples / args.samples
    print(f"\n{'configuration':<28} {'train s':>9} {'eval s':>8} {'-> train s':>11} {'-> eval s':>10}  "
          f"(x{1 / args.fraction:g} FLOPs, x{scale:g} samples and test images)")
    total = 0.0
    for r in records:
        train_s, eval_s = r["budget_used"]["seconds"], r["eval_seconds"]
        full = (train_s / args.fraction, eval_s * scale)
        total += sum(full) * seeds
        print(f"{r['label']:<28} {train_s:9.1f} {eval_s:8.1f} {full[0]:11.0f} {full[1]:10.0f}")
    print(f"the suite ({len(records)} configurations x {seeds} seeds): about {total / 3600:.1f} hours on this "
          f"machine ({torch.get_num_threads()} threads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
