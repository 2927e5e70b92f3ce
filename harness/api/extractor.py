"""Domain feature extractors: small CNN classifiers that make FID mean the same everywhere.

Inception weights cannot be downloaded on an offline machine and Inception is slow on a
CPU, so each built-in data set ships a small classifier trained on its own train split
(``scripts/train_extractor.py``). Its 128-d penultimate layer gives the features for
FID, KID and precision/recall; its logits score conditional samples. The weights file's
SHA-256 is pinned by the data set plugin and checked on load, and recorded with every
score, so a number is always tied to the exact network that produced it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import torch
from torch import Tensor, nn

FEATURES = 128


class DomainNet(nn.Module):
    """Three conv blocks (16-32-64 channels), 128-d features, a linear classifier."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()

        def block(a, b):
            return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]

        self.body = nn.Sequential(
            *block(in_channels, 16), nn.MaxPool2d(2),
            *block(16, 32), nn.MaxPool2d(2),
            *block(32, 64), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
            nn.Linear(64 * 9, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """x: floats in [0, 1], (N, C, H, W) -> (N, 128)."""
        return self.body((x - 0.5) / 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@dataclasses.dataclass(frozen=True)
class ExtractorSpec:
    """A shipped extractor: its weights file and the SHA-256 it must have."""

    path: Path
    sha256: str
    num_classes: int = 10
    in_channels: int = 1

    @property
    def name(self) -> str:
        return f"genbench-{self.path.stem}"


class ExtractorMismatch(RuntimeError):
    """The weights file is missing or not the pinned one."""


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


_loaded: dict[tuple[Path, str], DomainNet] = {}


def load(spec: ExtractorSpec, device: torch.device | str = "cpu") -> DomainNet:
    """The extractor in eval mode, after checking its file against the pinned hash."""
    key = (spec.path, str(device))
    if key not in _loaded:
        if not spec.path.is_file():
            raise ExtractorMismatch(f"feature extractor weights {spec.path} are missing")
        actual = file_sha256(spec.path)
        if actual != spec.sha256:
            raise ExtractorMismatch(f"{spec.path} has sha256 {actual}, expected {spec.sha256}")
        with torch.random.fork_rng(devices=[]):  # the random init must not move anyone's stream
            net = DomainNet(spec.in_channels, spec.num_classes)
        net.load_state_dict(torch.load(spec.path, map_location="cpu", weights_only=True))
        _loaded[key] = net.eval().to(device)
    return _loaded[key]


@torch.no_grad()
def extract(net: DomainNet, images: Tensor, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """Features (N, 128) and logits (N, classes) of float images in [0, 1]."""
    feats, logits = [], []
    for start in range(0, len(images), batch_size):
        f = net.features(images[start:start + batch_size])
        feats.append(f)
        logits.append(net.head(f))
    return torch.cat(feats).float().cpu(), torch.cat(logits).float().cpu()
