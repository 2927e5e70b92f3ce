"""`genbench score` against the tools people would use instead, side by side in one process.

10,000 samples of a Fashion-MNIST model are scored for FID, KID and precision/recall by
genbench (reference statistics computed: cold; read from the cache: warm), by
torch-fidelity's ``calculate_metrics`` and by torchmetrics' FrechetInceptionDistance and
KernelInceptionDistance, all in the same feature space (the data set's pinned domain
extractor, through the same inference path), on the same test split. Every tool is timed
from its samples and the real images in memory (or, for genbench, its sample file and
the data set's files) to its values; each timing is the best of --repeats. The values
are printed beside each other: FID and precision/recall must agree to rounding; KID
only within its subset noise for torchmetrics, which draws its own subsets.

    .venv/bin/pip install -c constraints.txt -e '.[bench]'   # torchmetrics, not a genbench dependency
    .venv/bin/python benchmarks/score.py [--samples FILE.npz] [--repeats 3]

Without --samples, a VAE is trained on Fashion-MNIST for --steps steps first and its
evaluated samples are kept (evaluation.save_samples). Not a test: timings depend on the
machine and its load; compare only the ratios of one run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import genbench
from genbench.api import extractor as ext
from genbench.api import fidelity
from genbench.engine.config import DatasetConfig
from genbench.engine.data import prepare
from genbench.engine.pluginmanager import get_registry

KID = {"subset_size": 1000, "subsets": 100}


def model_samples(dataset: str, steps: int, scratch: Path) -> Path:
    suite = {"name": "score-benchmark", "dataset": {"name": dataset}, "budget": {"steps": steps}, "seeds": [0],
             "metrics": ["fid"], "evaluation": {"num_samples": 10000, "save_samples": True},
             "runs": [{"model": "vae"}]}
    genbench.run_suite(suite, out=scratch / "run", device="cpu")
    return next((scratch / "run" / "runs").glob("*/samples.npz"))


def best(fn, repeats: int, before=None):
    times, value = [], None
    for _ in range(repeats):
        if before:
            before()
        started = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - started)
    return min(times), value


def genbench_score(samples: Path, dataset: str, metrics: list[str]):
    result = genbench.score(samples, dataset, metrics, options={"kid": KID})  # precision and recall: k = 3
    return {k: v for k, v in result.scores.items()}


class Images(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def torch_fidelity_score(fake: torch.Tensor, real: torch.Tensor, name: str):
    tf = fidelity.torch_fidelity()
    out = tf.calculate_metrics(input1=Images(fake), input2=Images(real), fid=True, kid=True, prc=True, cuda=False,
                               feature_extractor=name, batch_size=256, kid_subset_size=KID["subset_size"],
                               kid_subsets=KID["subsets"], prc_neighborhood=3, cache=False, verbose=False,
                               save_cpu_ram=True)
    return {"fid": out["frechet_inception_distance"], "kid": out["kernel_inception_distance_mean"],
            "precision": out["precision"], "recall": out["recall"]}


class Features(torch.nn.Module):
    """The domain extractor as torchmetrics takes a feature network: uint8 images in, features out."""

    num_features = ext.FEATURES

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return ext.features(self.net, x.float() / 255)


def torchmetrics_score(fake: torch.Tensor, real: torch.Tensor, net):
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    feature = Features(net)
    fid = FrechetInceptionDistance(feature=feature)
    kid = KernelInceptionDistance(feature=feature, **KID)
    for start in range(0, len(real), 256):
        for metric in (fid, kid):
            metric.update(real[start:start + 256], real=True)
    for start in range(0, len(fake), 256):
        for metric in (fid, kid):
            metric.update(fake[start:start + 256], real=False)
    torch.manual_seed(0)
    return {"fid": float(fid.compute()), "kid": float(kid.compute()[0])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--samples", type=Path, help="an .npz of 10,000 uint8 samples (default: train a VAE first)")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--steps", type=int, default=1500, help="training steps of the VAE made without --samples")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    fidelity.torch_fidelity()  # imports and registrations, before any clock starts
    genbench.register_extractors()
    registry = get_registry()
    data = prepare(registry.datasets[args.dataset](), DatasetConfig(name=args.dataset), torch.device("cpu"),
                   download=False)
    spec = data.extractor
    net = ext.load(spec)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        samples = args.samples or model_samples(args.dataset, args.steps, scratch)
        fake = torch.from_numpy(np.load(samples, allow_pickle=False)["samples"])
        real = data.eval.images
        print(f"{len(fake)} samples ({samples.name}), {len(real)} real test images, extractor {spec.name} "
              f"({spec.sha256[:12]}), torch threads {torch.get_num_threads()}")
        all4 = ["fid", "kid", "precision", "recall"]
        cache = scratch / "cache"
        os.environ["GENBENCH_CACHE"] = str(cache)

        def empty_cache():
            import shutil

            shutil.rmtree(cache, ignore_errors=True)
        rows = {}
        rows["genbench cold (FID, KID, P/R)"] = best(lambda: genbench_score(samples, args.dataset, all4), args.repeats,
                                                     empty_cache)
        rows["genbench warm (FID, KID, P/R)"] = best(lambda: genbench_score(samples, args.dataset, all4), args.repeats)
        rows["genbench warm (FID, KID)"] = best(lambda: genbench_score(samples, args.dataset, ["fid", "kid"]),
                                                args.repeats)
        rows["torch-fidelity (FID, KID, P/R)"] = best(lambda: torch_fidelity_score(fake, real, spec.name), args.repeats)
        try:
            rows["torchmetrics (FID, KID)"] = best(lambda: torchmetrics_score(fake, real, net), args.repeats)
        except ImportError:
            print("torchmetrics is not installed: pip install torchmetrics")
    print()
    print("| tool | seconds | FID | KID | precision | recall |")
    print("|---|---|---|---|---|---|")
    for name, (seconds, values) in rows.items():
        cells = [f"{values[m]:.6g}" if m in values else "-" for m in all4]
        print(f"| {name} | {seconds:.2f} | " + " | ".join(cells) + " |")
    warm_all, warm_two = rows["genbench warm (FID, KID, P/R)"][0], rows["genbench warm (FID, KID)"][0]
    tf_time = rows["torch-fidelity (FID, KID, P/R)"][0]
    print(f"\ntorch-fidelity / genbench warm (FID, KID, P/R): {tf_time / warm_all:.2f}x")
    if "torchmetrics (FID, KID)" in rows:
        tm_time = rows["torchmetrics (FID, KID)"][0]
        print(f"torchmetrics / genbench warm (FID, KID): {tm_time / warm_two:.2f}x")
        print(f"faster peer on FID+KID / genbench warm (FID, KID): {min(tm_time, tf_time) / warm_two:.2f}x "
              f"(torch-fidelity's time includes P/R)")


if __name__ == "__main__":
    main()
