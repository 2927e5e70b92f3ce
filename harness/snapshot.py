"""The arrays behind a run's figures, taken from the trained model right after scoring.

They are saved as ``snapshot.npz`` beside the record, so ``genbench report`` can redraw
every figure without the model, the data or another minute of training. What is taken
follows the model's capabilities, never its name.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .data import DeviceData, to_float
from .model import Capability, Model
from .record import write_bytes

SNAPSHOT = "snapshot.npz"
GRID = 10            # samples per row; also the number of showcase images
MANIFOLD = 15        # decoded images per side of the 2-D latent grid
INTERPOLATION = 10   # images in an interpolation strip, both ends included


def showcase_index(labels: Tensor, count: int = GRID) -> Tensor:
    """The first evaluation image of each class (classes in order), then the next ones.

    Every run of a suite shows the same images, so the comparison figure lines up.
    """
    firsts = [int(torch.nonzero(labels == c)[0]) for c in torch.unique(labels).tolist()][:count]
    rest = [i for i in range(min(len(labels), 2 * count)) if i not in firsts][:max(0, count - len(firsts))]
    return torch.tensor(firsts + rest, dtype=torch.long)


@torch.no_grad()
def take(model: Model, data: DeviceData, seed: int, latent_points: int = 2000) -> dict[str, np.ndarray]:
    """Everything the run's figures need, as NumPy arrays (images as uint8 N,C,H,W)."""
    model.eval()
    device = data.eval.images.device
    cond = model.has(Capability.CONDITIONAL)
    index = showcase_index(data.eval.labels.cpu()).to(device)
    x, y = to_float(data.eval.images[index]), data.eval.labels[index]
    names = data.info.class_names or tuple(str(i) for i in range(data.info.num_classes))
    out = {"showcase_index": index.cpu().numpy(), "originals": _u8(x), "originals_labels": y.cpu().numpy(),
           "class_names": np.array(names, dtype=str)}
    # Figures draw from their own seeded stream: the record's scores are unaffected.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        if model.has(Capability.RECONSTRUCT):
            out["reconstructions"] = _u8(model.reconstruct(x, y if cond else None))
        if model.has(Capability.SAMPLE):
            labels = None
            if cond:
                classes = min(GRID, data.info.num_classes)
                labels = torch.arange(classes, device=device).repeat_interleave(GRID)
                out["sample_labels"] = labels.cpu().numpy()
            out["samples"] = _u8(model.sample(GRID * GRID if labels is None else len(labels), labels))
        if model.has(Capability.POSTERIOR):
            out.update(_latents(model, data, cond, latent_points))
            if type(model).decode is not Model.decode:  # decoding is optional for a posterior
                out.update(_interpolation(model, data, cond))
                if out["latent_mean"].shape[1] == 2 and not cond:
                    out.update(_manifold(model, device))
    return out


def _latents(model: Model, data: DeviceData, cond: bool, points: int) -> dict[str, np.ndarray]:
    images, labels = data.eval.images[:points], data.eval.labels[:points]
    means = [model.posterior(to_float(images[i:i + 1000]), labels[i:i + 1000] if cond else None)[0]
             for i in range(0, len(images), 1000)]
    return {"latent_mean": torch.cat(means).float().cpu().numpy(), "latent_labels": labels.cpu().numpy()}


def _interpolation(model: Model, data: DeviceData, cond: bool) -> dict[str, np.ndarray]:
    """Decode the straight line between the posterior means of two test images.

    Two images of different classes; of one class for a conditional model, which
    decodes with that class.
    """
    labels = data.eval.labels
    first = 0
    same = torch.nonzero(labels == labels[first]).flatten()
    other = same[1] if cond else torch.nonzero(labels != labels[first]).flatten()[0]
    pair = torch.stack([torch.tensor(first, device=labels.device), other])
    x, y = to_float(data.eval.images[pair]), labels[pair]
    mean = model.posterior(x, y if cond else None)[0]
    t = torch.linspace(0, 1, INTERPOLATION, device=mean.device)[:, None]
    z = (1 - t) * mean[0] + t * mean[1]
    decoded = model.decode(z, y[:1].expand(INTERPOLATION) if cond else None)
    return {"interpolation": _u8(decoded), "interpolation_pair": pair.cpu().numpy(),
            "interpolation_ends": _u8(x), "interpolation_labels": y.cpu().numpy()}


def _manifold(model: Model, device: torch.device) -> dict[str, np.ndarray]:
    """Decode a grid over the 2-D latent plane at the prior's quantiles 5%..95%."""
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, MANIFOLD))
    z2, z1 = torch.meshgrid(q.flip(0), q, indexing="ij")  # rows: z2 from high (top) to low
    z = torch.stack([z1.flatten(), z2.flatten()], dim=1).to(device)
    return {"manifold": _u8(model.decode(z, None)), "manifold_quantiles": q.numpy()}


def _u8(images: Tensor) -> np.ndarray:
    return images.clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()


def save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}
