"""Domain feature extractors: train one for any registered data set, and hand the shipped
ones to torch-fidelity.

A data set plugin ships its extractor by setting ``extractor = ExtractorSpec(path,
sha256, num_classes, in_channels)``; ``genbench extractor train`` makes that file and
prints the SHA-256 to pin. Training is seeded and uses deterministic algorithms, so a
rerun on the same machine and torch version writes the same bytes.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from ..api.dataset import to_float
from ..api.extractor import DomainNetV2, file_sha256
from ..errors import UserError
from ..results import files
from .config import DatasetConfig
from .data import prepare
from .pluginmanager import Registry, get_registry


RECONSTRUCTION_WEIGHT = 10.0  # per-pixel BCE is ~0.1-0.3: weighted to matter beside the classification loss


def shifted(x: torch.Tensor, generator: torch.Generator, pixels: int = 2) -> torch.Tensor:
    """Random translations by up to ``pixels`` (pad and crop), one per batch."""
    dx, dy = torch.randint(-pixels, pixels + 1, (2,), generator=generator).tolist()
    padded = F.pad(x, (pixels, pixels, pixels, pixels))
    h, w = x.shape[-2:]
    return padded[..., pixels + dy:pixels + dy + h, pixels + dx:pixels + dx + w]


def train(registry: Registry, dataset: str | DatasetConfig, out: Path, epochs: int = 6, batch_size: int = 128,
          subset: int | None = None, say: Callable[[str], None] = print, options=None) -> tuple[float, str]:
    """Train the extractor of ``dataset`` (a name, or a suite's dataset section with its
    ``options``) on its train split; return (test accuracy, SHA-256)."""
    config = dataset if isinstance(dataset, DatasetConfig) else DatasetConfig(name=dataset)
    if config.name not in registry.datasets:
        from ..errors import did_you_mean

        raise UserError(f"data set '{config.name}' is not installed{did_you_mean(config.name, registry.datasets)}")
    if subset:
        config = dataclasses.replace(config, subset=subset)
    torch.manual_seed(0)
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        data = prepare(registry.datasets[config.name](options), config, torch.device("cpu"), download=False)
        net = DomainNetV2(data.info.image_shape[0], data.info.num_classes)
        steps = epochs * -(-len(data.train) // batch_size)
        opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
        generator = torch.Generator().manual_seed(0)
        started, accuracy = time.perf_counter(), 0.0
        for epoch in range(epochs):
            net.train()
            for batch in data.batches(batch_size, generator):
                x = shifted(batch.x, generator)
                f = net.features(x)
                # classes separable, and the pixels recoverable from the features
                loss = F.cross_entropy(net.head(f), batch.y) + \
                    RECONSTRUCTION_WEIGHT * F.binary_cross_entropy_with_logits(
                        net.reconstruction_logits(f, x.shape[-2:]), x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
            accuracy = _accuracy(net, data)
            say(f"epoch {epoch + 1}: loss {loss.item():.4f}, test accuracy {accuracy:.4f}, "
                f"{time.perf_counter() - started:.0f} s")
    finally:
        torch.use_deterministic_algorithms(deterministic)
    # torch names the archive's folder after the file ("mnist/data.pkl"), so the pinned
    # SHA-256 is reproduced only under the output's own name: save it as such in a
    # scratch folder, then write the bytes atomically.
    with tempfile.TemporaryDirectory() as scratch:
        staging = Path(scratch) / Path(out).name
        torch.save(net.state_dict(), staging)
        files.write_bytes(Path(out), staging.read_bytes())
    return accuracy, file_sha256(out)


@torch.no_grad()
def _accuracy(net: DomainNetV2, data) -> float:
    net.eval()
    correct = sum((net(to_float(data.eval.images[i:i + 1000])).argmax(1) == data.eval.labels[i:i + 1000]).sum().item()
                  for i in range(0, len(data.eval), 1000))
    return correct / len(data.eval)


def register_extractors() -> list[str]:
    """Register every installed data set's shipped extractor with torch-fidelity.

    After this call ``torch_fidelity.calculate_metrics(..., feature_extractor=
    "genbench-mnist_v2")`` computes FID, KID and precision/recall in that feature space.
    Returns the names registered.
    """
    from ..api import fidelity

    registry = get_registry()
    return [fidelity.register(cls.extractor) for _, cls in sorted(registry.datasets.items()) if cls.extractor]
