"""Train a data set's domain feature extractor and write its weights (deterministic).

    python scripts/train_extractor.py mnist plugins/weights/mnist.pt
    python scripts/train_extractor.py fashion_mnist plugins/weights/fashion_mnist.pt

Prints the test accuracy and the file's SHA-256, which the data set plugin pins.
Seeds and deterministic algorithms make a rerun on the same machine and torch version
give the same weights; other CPUs or versions may differ in the last bits, which is why
the shipped file, not this script, defines the metric.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genbench.api.dataset import to_float
from genbench.api.extractor import DomainNet, file_sha256
from genbench.engine.config import DatasetConfig
from genbench.engine.data import prepare
from genbench.engine.pluginmanager import get_registry
from genbench.results import files


def shifted(x: torch.Tensor, generator: torch.Generator, pixels: int = 2) -> torch.Tensor:
    """Random translations by up to ``pixels`` (pad and crop), one per batch."""
    dx, dy = torch.randint(-pixels, pixels + 1, (2,), generator=generator).tolist()
    padded = F.pad(x, (pixels, pixels, pixels, pixels))
    h, w = x.shape[-2:]
    return padded[..., pixels + dy:pixels + dy + h, pixels + dx:pixels + dx + w]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=8, help="8 for mnist, 15 for fashion_mnist")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    registry = get_registry()
    data = prepare(registry.datasets[args.dataset](), DatasetConfig(name=args.dataset), torch.device("cpu"))
    net = DomainNet(data.info.image_shape[0], data.info.num_classes)
    steps = args.epochs * -(-len(data.train) // args.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        for batch in data.batches(args.batch_size, generator):
            loss = F.cross_entropy(net(shifted(batch.x, generator)), batch.y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
        net.eval()
        with torch.no_grad():
            correct = sum((net(to_float(data.eval.images[i:i + 1000])).argmax(1)
                           == data.eval.labels[i:i + 1000]).sum().item() for i in range(0, len(data.eval), 1000))
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test accuracy {correct / len(data.eval):.4f}, "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    # torch names the archive's folder after the file ("mnist/data.pkl"), so the pinned
    # SHA-256 is reproduced only under the output's own name: save it as such in a scratch
    # folder, then write the bytes atomically.
    with tempfile.TemporaryDirectory() as scratch:
        staging = Path(scratch) / args.out.name
        torch.save(net.state_dict(), staging)
        files.write_bytes(args.out, staging.read_bytes())
    print(f"{args.dataset}: test accuracy {correct / len(data.eval):.4f}; wrote {args.out} "
          f"({args.out.stat().st_size} bytes), sha256 {file_sha256(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
