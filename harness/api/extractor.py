"""Domain feature extractors: small CNNs that make FID mean the same everywhere.

Inception weights cannot be downloaded on an offline machine and Inception is slow on a
CPU, so each built-in data set ships a small network trained on its own train split
(``genbench extractor train``): a classifier and autoencoder (:class:`DomainNetV2`)
whose 128-d features feed FID, KID, precision/recall, density/coverage and memorization,
and whose logits score conditional samples. The weights file's SHA-256 is pinned by the
data set plugin and checked on load, and recorded with every score, so a number is
always tied to the exact network that produced it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

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


class DomainNetV2(nn.Module):
    """A classifier and autoencoder sharing 128-d linear features (``genbench extractor train``).

    Three conv blocks (32-64-128 channels) and a linear layer give the features, taken
    before any activation so that no feature is dead. A linear classifier and a small
    deconvolutional decoder both read them: the classification loss makes classes
    separable, the reconstruction loss makes the features keep what the pixels show, so
    noise, blur and other defects that a classifier ignores move them.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()

        def block(a, b):
            return [nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU()]

        self.body = nn.Sequential(
            *block(in_channels, 32), nn.MaxPool2d(2),
            *block(32, 64), nn.MaxPool2d(2),
            *block(64, 128), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
            nn.Linear(128 * 9, FEATURES))
        self.head = nn.Linear(FEATURES, num_classes)
        self.decoder = nn.Sequential(  # pixel logits
            nn.Linear(FEATURES, 32 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (32, 7, 7)),
            nn.ConvTranspose2d(32, 16, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(16, in_channels, 4, 2, 1))

    def features(self, x: Tensor) -> Tensor:
        """x: floats in [0, 1], (N, C, H, W) -> (N, 128)."""
        return self.body((x - 0.5) / 0.5)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def reconstruction_logits(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        """Pixel logits (N, C, *size) decoded from ``features`` (28 x 28, resized to other sizes)."""
        out = self.decoder(features)
        if tuple(out.shape[-2:]) != tuple(size):
            out = nn.functional.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)
        return out


ARCHITECTURES = {"v1": DomainNet, "v2": DomainNetV2}


@dataclasses.dataclass(frozen=True)
class ExtractorSpec:
    """A shipped extractor: its weights file, the SHA-256 it must have, and its network.

    ``architecture`` is ``"v2"`` (:class:`DomainNetV2`, what ``genbench extractor train``
    makes) or ``"v1"`` (the earlier classifier-only :class:`DomainNet`). Left unset, it is
    read from the file, so a spec written before v2 existed keeps loading its v1 file; a
    value that contradicts the file is refused with one line, never applied.
    """

    path: Path
    sha256: str
    num_classes: int = 10
    in_channels: int = 1
    architecture: str | None = None

    @property
    def name(self) -> str:
        return f"genbench-{self.path.stem}"


@dataclasses.dataclass(frozen=True)
class ExtractorFile:
    """A domain extractor a suite pins itself, for a data set that ships none:
    ``evaluation: {feature_extractor: {path: FILE, sha256: HEX}}``, the file and hash that
    ``genbench extractor train`` writes and prints. A relative path is read from the
    working folder, as every path in a suite is."""

    path: str = dataclasses.field(metadata={"help": "the weights file `genbench extractor train` wrote"})
    sha256: str = dataclasses.field(metadata={"help": "its SHA-256, as the command printed it"})

    def __post_init__(self):
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"sha256: expected 64 lower-case hex digits, got {self.sha256!r}")

    def spec(self, in_channels: int, num_classes: int) -> ExtractorSpec:
        return ExtractorSpec(Path(self.path), self.sha256, num_classes, in_channels)


class ExtractorMismatch(RuntimeError):
    """The weights file is missing, not the pinned one, or not the network the spec names."""


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def architecture_of(state: dict) -> str:
    """The network a state dict was saved from: only v2 has a decoder."""
    return "v2" if any(key.startswith("decoder.") for key in state) else "v1"


def build(spec: ExtractorSpec) -> nn.Module:
    """The spec's network with its file's weights (the hash is the caller's to check)."""
    state = torch.load(spec.path, map_location="cpu", weights_only=True)
    found = architecture_of(state) if isinstance(state, dict) else "?"
    wanted = spec.architecture or found
    if wanted != found or wanted not in ARCHITECTURES:
        raise ExtractorMismatch(f"{spec.path} holds a {found} network, but its ExtractorSpec says "
                                f"architecture={spec.architecture!r}; set architecture={found!r}, or leave it "
                                f"out to read it from the file")
    head, first = state.get("head.weight"), state.get("body.0.weight")
    if head is not None and first is not None and (head.shape[0], first.shape[1]) != (spec.num_classes,
                                                                                     spec.in_channels):
        raise ExtractorMismatch(f"{spec.path} was trained on {first.shape[1]}-channel images of {head.shape[0]} "
                                f"classes, not the {spec.in_channels}-channel images of {spec.num_classes} classes "
                                f"of this data set: train one on it with `genbench extractor train`")
    with torch.random.fork_rng(devices=[]):  # the random init must not move anyone's stream
        net = ARCHITECTURES[wanted](spec.in_channels, spec.num_classes)
    net.load_state_dict(state)
    return net


_loaded: dict[tuple[Path, str], nn.Module] = {}


def load(spec: ExtractorSpec, device: torch.device | str = "cpu") -> nn.Module:
    """The extractor in eval mode, after checking its file against the pinned hash."""
    key = (spec.path, str(device))
    if key not in _loaded:
        if not spec.path.is_file():
            raise ExtractorMismatch(f"feature extractor weights {spec.path} are missing")
        actual = file_sha256(spec.path)
        if actual != spec.sha256:
            raise ExtractorMismatch(f"{spec.path} has sha256 {actual}, expected {spec.sha256}")
        _loaded[key] = build(spec).eval().to(device)
    return _loaded[key]


def inference_body(net: nn.Module) -> nn.Module:
    """``net.body`` for inference: each batch norm folded into its convolution, weights
    in channels-last layout; made once per network.

    Twice as fast on a CPU (10,000 Fashion-MNIST images: 0.93 s against 1.93 s, 2 cores)
    for features within 5e-6 of ``net.features``. Every path that scores (runs,
    ``genbench score``, the extractor registered with torch-fidelity) uses it, so they
    agree to the last bit.
    """
    body = getattr(net, "_inference_body", None)
    if body is None:
        parts, layers = [], list(net.body)
        while layers:
            layer = layers.pop(0)
            if isinstance(layer, nn.Conv2d) and layers and isinstance(layers[0], nn.BatchNorm2d):
                layer = fuse_conv_bn_eval(layer, layers.pop(0))
            parts.append(layer)
        body = nn.Sequential(*parts).eval().to(memory_format=torch.channels_last)
        object.__setattr__(net, "_inference_body", body)  # not a submodule: state_dict is unchanged
    return body


@torch.no_grad()
def features(net: nn.Module, images: Tensor) -> Tensor:
    """``net.features(images)`` through :func:`inference_body` (float images in [0, 1])."""
    x = ((images - 0.5) / 0.5).contiguous(memory_format=torch.channels_last)
    return inference_body(net)(x)


@torch.no_grad()
def extract(net: nn.Module, images: Tensor, batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """Features (N, 128) and logits (N, classes) of float images in [0, 1]."""
    feats, logits = [], []
    for start in range(0, len(images), batch_size):
        f = features(net, images[start:start + batch_size])
        feats.append(f)
        logits.append(net.head(f))
    return torch.cat(feats).float().cpu(), torch.cat(logits).float().cpu()
