"""The arrays behind a run's figures, taken from the trained model right after scoring.

They are saved as ``snapshot.npz`` beside the record, so ``genbench report`` can redraw
every figure without the model, the data or another minute of training. What is taken
follows the model's capabilities, never its name.
"""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..api import outputs
from ..api.dataset import to_float
from ..api.losses import gaussian_kl_per_dim
from ..api.model import Capability, Model
from ..results.files import write_bytes
from .data import DeviceData
from .evaluate import derive_seed, seeded
from .speed import sync

SNAPSHOT = "snapshot.npz"
GRID = 10            # samples per row; also the number of showcase images
MANIFOLD = 15        # decoded images per side of the 2-D latent grid
INTERPOLATION = 10   # images in an interpolation strip, both ends included
TRAVERSAL = 9        # decoded images per latent dimension in a traversal
MAX_TRAVERSED = 32   # latent dimensions shown in a traversal (the first ones)


def showcase_index(labels: Tensor, count: int = GRID) -> Tensor:
    """The first evaluation image of each class (classes in order), then the next ones.

    Every run of a suite shows the same images, so the comparison figure lines up.
    """
    firsts = [int(torch.nonzero(labels == c)[0]) for c in torch.unique(labels).tolist()][:count]
    rest = [i for i in range(min(len(labels), 2 * count)) if i not in firsts][:max(0, count - len(firsts))]
    return torch.tensor(firsts + rest, dtype=torch.long)


@torch.no_grad()
def take(model: Model, data: DeviceData, seed: int, latent_points: int = 2000,
         timings: dict | None = None) -> dict[str, np.ndarray]:
    """Everything the run's figures need, as NumPy arrays (images as uint8 N,C,H,W).

    ``timings``, if given, receives ``sampling``: the seconds the sample grid took to
    generate, in one batch on the run's device (the run's sampling cost).
    """
    model.eval()
    device = data.eval.images.device
    cond = model.has(Capability.CONDITIONAL)
    index = showcase_index(data.eval.labels.cpu()).to(device)
    x, y = to_float(data.eval.images[index]), data.eval.labels[index]
    names = data.info.class_names or tuple(str(i) for i in range(data.info.num_classes))
    out = {"showcase_index": index.cpu().numpy(), "originals": _u8(x), "originals_labels": y.cpu().numpy(),
           "class_names": np.array(names, dtype=str)}
    # Figures draw from their own seeded stream: the record's scores are unaffected.
    with seeded(device, derive_seed(seed, "figures")):
        shape = data.info.image_shape
        if model.has(Capability.RECONSTRUCT):
            recon = outputs.images(model, "reconstruct", model.reconstruct(x, y if cond else None), len(x), shape, device)
            out["reconstructions"] = _u8(recon)
        if model.has(Capability.SAMPLE):
            labels = None
            if cond:
                classes = min(GRID, data.info.num_classes)
                labels = torch.arange(classes, device=device).repeat_interleave(GRID)
                out["sample_labels"] = labels.cpu().numpy()
            n = GRID * GRID if labels is None else len(labels)
            drawn, first = _timed(lambda: model.sample(n, labels), device)
            if timings is not None:
                with seeded(device, derive_seed(seed, "sampling clock")):  # the figures' stream is untouched
                    timings["sampling"] = sampling_cost(lambda: model.sample(n, labels), device, n, first)
            out["samples"] = _u8(outputs.images(model, "sample", drawn, n, shape, device))
        if model.has(Capability.LATENT):
            if data.eval.factors is not None:  # the whole split, once; the scatter takes its first points
                out.update(_factor_codes(model, data, cond))
                out.update(latent_mean=out["factor_codes"][:latent_points],
                           latent_labels=data.eval.labels[:latent_points].cpu().numpy())
            else:
                out.update(_latents(model, data, cond, latent_points))
            if model.has(Capability.DECODE):
                out.update(_interpolation(model, data, cond))
                out.update(_traversal(model, data, cond, out["latent_mean"]))
                # the plane at the prior's quantiles: only a Gaussian posterior says what the prior is
                if out["latent_mean"].shape[1] == 2 and not cond and model.has(Capability.POSTERIOR):
                    out.update(_manifold(model, device))
    return out


# One draw of the grid can take under a millisecond, the first one with warm-up: a single
# timing of it is mostly noise.
CLOCK_SECONDS, CLOCK_MIN_REPEATS, CLOCK_MAX_REPEATS, CLOCK_CAP = 1.0, 3, 50, 10.0


def _timed(fn, device):
    sync(device)
    started = time.perf_counter()
    value = fn()
    sync(device)
    return value, time.perf_counter() - started


def sampling_cost(draw, device, n: int, first: float) -> dict:
    """Seconds per 1,000 samples: the median of the figure's own draw of ``n`` and repeats
    of it, until there are 3 and 1 s in all (at most 50), never past 10 s: a model whose
    one draw takes that long is timed by it alone."""
    times = [first]
    while len(times) < CLOCK_MAX_REPEATS and (sum(times) < CLOCK_SECONDS or len(times) < CLOCK_MIN_REPEATS) \
            and sum(times) < CLOCK_CAP:
        times.append(_timed(draw, device)[1])
    median = float(np.median(times))
    return {"images": n, "repeats": len(times), "seconds": round(median, 6),
            "seconds_per_1000": round(median * 1000 / n, 6)}


def _latents(model: Model, data: DeviceData, cond: bool, points: int) -> dict[str, np.ndarray]:
    images, labels = data.eval.images[:points], data.eval.labels[:points]
    return {"latent_mean": _encode(model, images, labels, cond).float().cpu().numpy(),
            "latent_labels": labels.cpu().numpy()}


def _encode(model: Model, images: Tensor, labels: Tensor, cond: bool) -> Tensor:
    return torch.cat([outputs.codes(model, model.latent(to_float(images[i:i + 1000]),
                                                          labels[i:i + 1000] if cond else None),
                                    len(images[i:i + 1000]), images.device) for i in range(0, len(images), 1000)])


def _factor_codes(model: Model, data: DeviceData, cond: bool) -> dict[str, np.ndarray]:
    """The codes the disentanglement metrics score, with each image's factor levels, so
    the scores can be recomputed from the record alone."""
    codes = _encode(model, data.eval.images, data.eval.labels, cond)
    return {"factor_codes": codes.float().cpu().numpy(), "factor_levels": data.eval.factors.cpu().numpy(),
            "factor_names": np.array([f.name for f in data.info.factors], dtype=str)}


def _traversal(model: Model, data: DeviceData, cond: bool, codes: np.ndarray) -> dict[str, np.ndarray]:
    """Each latent dimension in turn over the prior's range (-2..2 for a Gaussian
    posterior's N(0, I) prior; else the codes' own 2nd..98th percentiles), the others
    held at the code of the first test image."""
    device = data.eval.images.device
    dims = min(codes.shape[1], MAX_TRAVERSED)
    if model.has(Capability.POSTERIOR):
        low, high = np.full(dims, -2.0), np.full(dims, 2.0)
    else:
        low, high = np.percentile(codes[:, :dims], 2, axis=0), np.percentile(codes[:, :dims], 98, axis=0)
    values = np.linspace(low, high, TRAVERSAL, axis=1)  # (dims, TRAVERSAL)
    base = torch.as_tensor(codes[0], device=device)
    z = base.repeat(dims * TRAVERSAL, 1)
    rows = torch.arange(dims, device=device).repeat_interleave(TRAVERSAL)
    z[torch.arange(len(z), device=device), rows] = torch.as_tensor(values.ravel(), device=device, dtype=z.dtype)
    y = data.eval.labels[:1].expand(len(z)) if cond else None
    decoded = outputs.images(model, "decode", model.decode(z, y), len(z), data.info.image_shape, device)
    out = {"traversal": _u8(decoded), "traversal_values": values.astype(np.float32)}
    if model.has(Capability.POSTERIOR):  # each dimension's mean KL, so collapsed ones are plain to see
        mean, logvar = outputs.posterior(model, model.posterior(to_float(data.eval.images[:1000]),
                                                                data.eval.labels[:1000] if cond else None),
                                         min(1000, len(data.eval)), device)
        kl = gaussian_kl_per_dim(mean, logvar).mean(0)
        out["traversal_kl"] = kl[:dims].float().cpu().numpy()
    return out


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
    mean = outputs.codes(model, model.latent(x, y if cond else None), 2, x.device)
    t = torch.linspace(0, 1, INTERPOLATION, device=mean.device)[:, None]
    z = (1 - t) * mean[0] + t * mean[1]
    decoded = outputs.images(model, "decode", model.decode(z, y[:1].expand(INTERPOLATION) if cond else None),
                             INTERPOLATION, data.info.image_shape, x.device)
    return {"interpolation": _u8(decoded), "interpolation_pair": pair.cpu().numpy(),
            "interpolation_ends": _u8(x), "interpolation_labels": y.cpu().numpy()}


def _manifold(model: Model, device: torch.device) -> dict[str, np.ndarray]:
    """Decode a grid over the 2-D latent plane at the prior's quantiles 5%..95%."""
    q = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, MANIFOLD))
    z2, z1 = torch.meshgrid(q.flip(0), q, indexing="ij")  # rows: z2 from high (top) to low
    z = torch.stack([z1.flatten(), z2.flatten()], dim=1).to(device)
    decoded = outputs.images(model, "decode", model.decode(z, None), len(z), model.data.image_shape, device)
    return {"manifold": _u8(decoded), "manifold_quantiles": q.numpy()}


def _u8(images: Tensor) -> np.ndarray:
    return images.clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()


def to_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def save(path: Path, arrays: dict[str, np.ndarray]) -> None:
    write_bytes(path, to_bytes(arrays))


MAX_BYTES = 512 * 2**20  # uncompressed; a real snapshot is about 2 MB
IMAGES = ("originals", "reconstructions", "samples", "interpolation", "interpolation_ends", "manifold", "traversal")
LABELS = ("showcase_index", "originals_labels", "sample_labels", "latent_labels", "interpolation_pair",
          "interpolation_labels")


class BadSnapshot(ValueError):
    """A snapshot.npz that is not what ``take`` writes."""


def load(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a snapshot, checked; BadSnapshot says what is wrong (never unpickles)."""
    try:
        with zipfile.ZipFile(path) as archive:
            size = sum(i.file_size for i in archive.infolist())
        if size > MAX_BYTES:
            raise BadSnapshot(f"{size} bytes uncompressed, more than {MAX_BYTES}")
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except BadSnapshot:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise BadSnapshot(f"cannot be read: {err}") from None
    check(arrays)
    return arrays


def check(arrays: dict[str, np.ndarray]) -> None:
    for key, a in arrays.items():
        if a.dtype.kind not in "biufU":
            raise BadSnapshot(f"array '{key}' has dtype {a.dtype}")
    for key in IMAGES:
        a = arrays.get(key)
        if a is not None and not (a.dtype == np.uint8 and a.ndim == 4 and len(a) and a.shape[1] in (1, 3)
                                  and 0 < a.shape[2] <= 1024 and 0 < a.shape[3] <= 1024):
            raise BadSnapshot(f"array '{key}' is not uint8 images (N, 1 or 3, H, W): {a.dtype} {a.shape}")
    for key in LABELS:
        a = arrays.get(key)
        if a is not None and not (a.dtype.kind in "iu" and a.ndim == 1):
            raise BadSnapshot(f"array '{key}' is not a list of integers: {a.dtype} {a.shape}")
    for key in ("latent_mean", "factor_codes", "traversal_values"):
        a = arrays.get(key)
        if a is not None and not (a.dtype.kind == "f" and a.ndim == 2 and a.shape[1] >= 1 and np.isfinite(a).all()):
            raise BadSnapshot(f"array '{key}' is not finite (N, D) floats: {a.dtype} {a.shape}")
    levels, codes = arrays.get("factor_levels"), arrays.get("factor_codes")
    if levels is not None and not (levels.dtype.kind in "iu" and levels.ndim == 2 and codes is not None
                                   and len(levels) == len(codes)):
        raise BadSnapshot(f"array 'factor_levels' is not (N, factors) integers beside factor_codes: "
                          f"{levels.dtype} {levels.shape}")
    steps, traversal = arrays.get("traversal_values"), arrays.get("traversal")
    if steps is not None and (traversal is None or steps.size != len(traversal)):
        raise BadSnapshot("array 'traversal_values' does not give one value per traversal image")
    shapes = {arrays[k].shape[1:] for k in IMAGES if k in arrays}
    if len(shapes) > 1:
        raise BadSnapshot(f"image arrays of different shapes: {sorted(shapes)}")
