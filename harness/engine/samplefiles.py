"""Sample sets made elsewhere, for ``genbench score``: arrays, tensors and image folders.

Everything here is untrusted input. NumPy files are read with ``allow_pickle=False``,
tensors with ``torch.load(weights_only=True)``, images with Pillow; shapes, dtypes and
values are checked against the data set, and every problem is one line naming the file.
Image folders stream in batches, so a folder of any size is read in bounded memory.
"""

from __future__ import annotations

import dataclasses
import glob
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..api.dataset import IMAGE_SUFFIXES, DataError, image_files
from ..errors import UserError
from ..results import files

ARRAY_KEYS = ("samples", "images")  # what an .npz holding several arrays names its images
SEED_NAME = re.compile(r"(?P<label>.+?)[-_]seed(?P<seed>\d{1,9})")


class BadSamples(UserError):
    """A sample set that cannot be scored; the CLI exits 2 and writes nothing."""


@dataclasses.dataclass
class SampleSet:
    """One set of samples: where it came from, its configuration and seed, its images.

    ``images`` is an array-like (N, ...) in its stored layout (a memory map for ``.npy``)
    or None for a folder, whose ``paths`` are read a batch at a time.
    """

    name: str                      # the file or folder, for messages and the record
    label: str
    seed: int
    count: int
    shape: tuple[int, int, int]    # C, H, W
    format: str                    # npy, npz, pt, folder or array
    images: Any = None
    layout: str = "NCHW"           # of ``images``: NCHW, NHWC or NHW
    paths: list[Path] = dataclasses.field(default_factory=list)
    labels: Tensor | None = None

    def batches(self, size: int = 1000) -> Iterator[Tensor]:
        """The images as floats in [0, 1], (n, C, H, W), ``size`` at a time; a value outside
        [0, 1], NaN or infinity stops with one line naming the image."""
        for start in range(0, self.count, size):
            if self.format == "folder":
                batch = torch.from_numpy(np.stack([read_image(p, self.shape) for p in self.paths[start:start + size]]))
            else:
                batch = _as_nchw(self.images[start:start + size], self.layout)
            yield _to_unit(batch, self.name, start)

    def all(self) -> Tensor:
        return torch.cat(list(self.batches()))

    def take(self, index) -> Tensor:
        """The images at ``index`` (a list of positions), as floats in [0, 1]."""
        index = list(index)
        if self.format == "folder":
            batch = torch.from_numpy(np.stack([read_image(self.paths[i], self.shape) for i in index]))
        elif isinstance(self.images, Tensor):
            batch = _as_nchw(self.images[torch.tensor(index, dtype=torch.long)], self.layout)
        else:
            batch = _as_nchw(self.images[np.asarray(index, dtype=np.int64)], self.layout)
        return _to_unit(batch, self.name, 0)


def _as_nchw(part, layout: str) -> Tensor:
    t = part if isinstance(part, Tensor) else torch.from_numpy(np.array(part))  # a copy: maps are read-only
    if layout == "NHW":
        return t.unsqueeze(1)
    return t.permute(0, 3, 1, 2) if layout == "NHWC" else t


def _to_unit(batch: Tensor, name: str, start: int) -> Tensor:
    if batch.dtype == torch.uint8:
        return batch.float().div_(255)
    batch = batch.float()
    bad = ~torch.isfinite(batch) | (batch < 0) | (batch > 1)
    if bool(bad.any()):
        i = int(bad.flatten(1).any(1).nonzero()[0])
        value = float(batch[i][bad[i]][0])
        what = "NaN" if value != value else ("infinite" if abs(value) == float("inf") else f"{value:g}")
        raise BadSamples(f"{name}: image {start + i} holds a value {what}; float samples must be finite and in "
                         f"[0, 1] (uint8 in 0..255 also works)")
    return batch


def read_image(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """One image file as uint8 (C, H, W) of ``shape``; one line naming the file otherwise.

    Grey images stored as RGB with equal channels (as many tools save them) are read
    as grey; any other channel count or size than the data set's is refused, never
    converted, so no score silently depends on a resize.
    """
    from PIL import Image, UnidentifiedImageError

    channels, height, width = shape
    try:
        with Image.open(path) as im:
            if im.size != (width, height):  # checked on the header, before any pixel is decoded
                raise BadSamples(f"{path}: the image is {im.size[0]}x{im.size[1]}; the data set's images are "
                                 f"{width}x{height} (resize them before scoring)")
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            if im.mode in ("1", "L;16", "I;16", "I;16B"):
                im = im.convert("L")
            if im.mode not in ("L", "RGB"):
                raise BadSamples(f"{path}: image mode {im.mode}; give {'grey (L)' if channels == 1 else 'RGB'} images")
            pixels = np.asarray(im)  # decodes: a truncated file fails here
    except BadSamples:
        raise
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise BadSamples(f"{path}: not a readable image: {err}") from None
    if pixels.ndim == 2:
        pixels = pixels[None]
    else:
        pixels = pixels.transpose(2, 0, 1)
        if channels == 1 and (pixels == pixels[:1]).all():
            pixels = pixels[:1]
    if pixels.shape[0] != channels:
        raise BadSamples(f"{path}: the image has {pixels.shape[0]} channels; the data set's images have {channels}")
    return pixels


def _layout(array_shape: tuple, shape: tuple[int, int, int], name: str) -> str:
    c, h, w = shape
    found = tuple(array_shape[1:])
    if found == (c, h, w):
        return "NCHW"
    if found == (h, w, c):
        return "NHWC"
    if found == (h, w) and c == 1:
        return "NHW"
    layouts = f"N x {h} x {w}, " if c == 1 else ""
    raise BadSamples(f"{name}: images of shape {tuple(array_shape)}; the data set's images are {c}x{h}x{w}, so give "
                     f"{layouts}N x {c} x {h} x {w} or N x {h} x {w} x {c}")


def _check_dtype(dtype, name: str) -> None:
    if dtype not in (np.uint8, np.float16, np.float32, np.float64, torch.uint8, torch.float16, torch.bfloat16,
                     torch.float32, torch.float64):
        raise BadSamples(f"{name}: dtype {dtype}; give uint8 in 0..255 or floats in [0, 1]")


def _from_array(array, name: str, fmt: str, shape, label: str, seed: int) -> SampleSet:
    _check_dtype(array.dtype, name)
    if array.ndim not in (3, 4) or len(array) == 0:
        raise BadSamples(f"{name}: an array of shape {tuple(array.shape)}; give N images, N at least 1")
    layout = _layout(tuple(array.shape), shape, name)
    return SampleSet(name, label, seed, len(array), shape, fmt, array, layout)


def from_memory(images, shape: tuple[int, int, int], label: str = "samples", seed: int = 0,
                labels=None) -> SampleSet:
    """A NumPy array or tensor given to the Python API, checked like a file."""
    if not isinstance(images, (np.ndarray, Tensor)):
        raise BadSamples(f"samples: a {type(images).__name__}; give a path, a NumPy array or a tensor")
    if isinstance(images, Tensor):
        images = images.detach().cpu()
    out = _from_array(images, f"samples '{label}'", "array", shape, label, seed)
    if labels is not None:
        out.labels = check_labels(labels, out.count, f"samples '{label}' (labels)")
    return out


def _npy(path: Path):
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)  # mapped: read a batch at a time
    except (ValueError, OSError, EOFError) as err:
        raise BadSamples(f"{path}: not a NumPy array file: {err}") from None


def _npz(path: Path, key: str | None = None) -> tuple[Any, Any]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            if key is not None and key not in keys:
                raise BadSamples(f"{path}: holds no array '{key}'; it holds {', '.join(keys[:20]) or 'none'}")
            key = key or next((k for k in ARRAY_KEYS if k in keys), keys[0] if len(keys) == 1 else None)
            if key is None:
                raise BadSamples(f"{path}: holds arrays {', '.join(keys[:20]) or '(none)'}; name the images "
                                 f"'samples' or 'images', keep one array in the file, or pick one as {path}:NAME")
            _check_member(npz, key, path)
            return npz[key], (npz["labels"] if "labels" in keys else None)
    except BadSamples:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise BadSamples(f"{path}: not a readable .npz of arrays: {err}") from None


MAX_NPZ_MEMBER = 8 << 30  # an .npz member is read whole; larger sets go in an .npy, read in batches


def _check_member(npz, key: str, path: Path) -> None:
    """Before reading a member: its header's shape must fit the bytes it holds, and a bound."""
    info = npz.zip.getinfo(f"{key}.npy")
    with npz.zip.open(info) as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    size = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if size > info.file_size:
        raise BadSamples(f"{path}: array '{key}' declares {size:,} bytes but holds {info.file_size:,}")
    if size > MAX_NPZ_MEMBER:
        raise BadSamples(f"{path}: array '{key}' is {size / 2**30:.1f} GiB; an .npz member is read whole, so save "
                         f"a set this large as .npy (read in batches) or a folder of images")


def _pt(path: Path) -> Tensor:
    try:
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # weights_only refuses anything but tensors and plain containers
        raise BadSamples(f"{path}: not a plain tensor file ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
                         ) from None
    if not isinstance(value, Tensor):
        raise BadSamples(f"{path}: holds a {type(value).__name__}, not a tensor; save the images alone with "
                         f"torch.save(images, path)")
    return value


def _folder(path: Path) -> list[Path]:
    try:
        found = image_files(path)
    except DataError as err:
        raise BadSamples(str(err)) from None
    if not found:
        raise BadSamples(f"{path}: no {', '.join(IMAGE_SUFFIXES)} images in the folder")
    return found


def split_key(path: Path) -> tuple[Path, str | None]:
    """``images.npz:blur@2`` is the array ``blur@2`` of ``images.npz``."""
    text = str(path)
    if not path.exists() and ".npz:" in text:
        file, _, key = text.rpartition(":")
        return Path(file), key
    return path, None


def name_of(path: Path) -> tuple[str, int | None]:
    """The configuration and seed a file's name gives: ``vae-seed3.npz`` is vae, seed 3;
    ``images.npz:blur@2`` is blur_2."""
    path, key = split_key(path)
    stem = re.sub(r"[^A-Za-z0-9_.=-]+", "_", key) if key else path.name if path.is_dir() else path.stem
    match = SEED_NAME.fullmatch(stem)
    return (match["label"], int(match["seed"])) if match else (stem, None)


def open_set(path: Path, shape: tuple[int, int, int], label: str, seed: int) -> SampleSet:
    """Open one sample set and check its layout (values are checked as they are read)."""
    name = str(path)
    path, key = split_key(path)
    if path.is_dir():
        paths = _folder(path)
        first = read_image(paths[0], shape)  # the size and channels, before any scoring
        return SampleSet(name, label, seed, len(paths), tuple(first.shape), "folder", paths=paths)
    if not path.is_file():
        raise BadSamples(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    labels = None
    if suffix == ".npy":
        array = _npy(path)
    elif suffix == ".npz":
        array, labels = _npz(path, key)
    elif suffix == ".pt":
        array = _pt(path)
    else:
        raise BadSamples(f"{path}: unknown sample format; give .npz, .npy, .pt or a folder of PNG/JPEG images")
    out = _from_array(array, name, suffix[1:], shape, label, seed)
    if labels is not None:
        out.labels = check_labels(labels, out.count, name + " (labels)")
    return out


def check_labels(labels, count: int, name: str, classes: int | None = None) -> Tensor:
    labels = labels if isinstance(labels, Tensor) else torch.from_numpy(np.asarray(labels))
    if labels.dtype.is_floating_point or labels.dtype == torch.bool or labels.dim() != 1:
        raise BadSamples(f"{name}: labels must be one integer per image, found {labels.dtype} of shape "
                         f"{tuple(labels.shape)}")
    if len(labels) != count:
        raise BadSamples(f"{name}: {len(labels)} labels for {count} images")
    labels = labels.long()
    if classes is not None and len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < classes):
        raise BadSamples(f"{name}: labels {int(labels.min())}..{int(labels.max())}; the data set's classes are "
                         f"0..{classes - 1}")
    return labels


def read_labels(path: Path, count: int, classes: int) -> Tensor:
    """``--labels``: integers from .npy, .npz (one array), .pt, or text (one per line or comma-separated)."""
    suffix = path.suffix.lower()
    if not path.is_file():
        raise BadSamples(f"--labels {path}: no such file")
    if suffix == ".npy":
        values = np.asarray(_npy(path))
    elif suffix == ".npz":
        values = _npz(path)[0]
    elif suffix == ".pt":
        values = _pt(path)
    else:
        try:
            text = path.read_text(encoding="utf-8")
            values = np.array([int(v) for v in re.split(r"[\s,]+", text.strip()) if v], dtype=np.int64)
        except (UnicodeDecodeError, ValueError) as err:
            raise BadSamples(f"--labels {path}: not integers separated by commas or white space: {err}") from None
    return check_labels(values, count, f"--labels {path}", classes)


def expand(items: list[str]) -> list[Path]:
    """The sample sets named: files, folders, or quoted glob patterns (sorted)."""
    out: list[Path] = []
    for item in items:
        if any(c in item for c in "*?[") and not Path(item).exists():
            matched = sorted(glob.glob(item))
            if not matched:
                raise BadSamples(f"{item}: the pattern matches no file")
            out += [Path(m) for m in matched]
        else:
            out.append(Path(item))
    return out


def named_sets(paths: list[Path], group: str | None) -> list[tuple[Path, str, int]]:
    """(path, configuration label, seed) of each set: ``NAME-seed<k>`` names give both;
    ``group`` names one configuration whose seeds are the names' or, without them, 0, 1, ..."""
    named = [(p, *name_of(p)) for p in paths]
    if group is not None:
        seeds = [s for _, _, s in named]
        use = seeds if None not in seeds else list(range(len(named)))
        named = [(p, group, s) for (p, _, _), s in zip(named, use)]
    out = [(p, files.slug(label) or "samples", 0 if seed is None else seed) for p, label, seed in named]
    seen: dict[tuple[str, int], Path] = {}
    for p, label, seed in out:
        if (label, seed) in seen:
            raise BadSamples(f"{p}: configuration '{label}' seed {seed} is also {seen[label, seed]}; name the sets "
                             f"NAME-seed<k>, or use --group NAME for seeds of one configuration")
        seen[label, seed] = p
    return out
