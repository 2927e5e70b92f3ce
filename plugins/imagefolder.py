"""``image_folder``: any folder of PNG/JPEG images as a data set.

One sub-folder per class (as torchvision's ``ImageFolder``), or images directly in the
folder (one class). Each image is resized (shorter side) and centre-cropped to the
suite's ``size`` with Pillow, decoded once into a uint8 array cached beside the other
data, keyed by every file's path, size and modification time and by the options, and
written atomically. The test split is held out per class with a fixed seed, or listed
in a split file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Literal, Optional

import numpy as np
import torch

import genbench
from genbench.api import IMAGE_SUFFIXES as SUFFIXES
from genbench.api import DataError, cached_arrays, image_files

SPLIT_SEED = 2468  # one held-out split for every run and seed
MODES = {1: ("L", "1"), 3: ("RGB", "P")}  # what each channel count accepts (P: palette, read as RGB)


@dataclasses.dataclass(frozen=True)
class ImageFolderOptions:
    path: Optional[str] = genbench.option(None, "the folder of PNG/JPEG images, optionally one sub-folder per class")
    size: int = genbench.option(32, "side of the square images: resized (shorter side) and centre-cropped to it",
                                min=4, max=1024)
    channels: Literal[1, 3] = genbench.option(3, "1 for grey images, 3 for RGB; an image of another mode is refused")
    test_fraction: float = genbench.option(0.1, "share of each class held out as the test split (seeded)",
                                           min=0.0, max=0.9)
    split_file: Optional[str] = genbench.option(None, "a text file listing the test images (paths relative to "
                                                "the folder, one per line) instead of a seeded split")


def scan(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    """The images, their class numbers and the class names (sorted sub-folder names)."""
    if not folder.is_dir():
        raise DataError(f"image_folder: {folder} is not a folder; set dataset.options.path")
    try:
        found = image_files(folder)
    except DataError as err:
        raise DataError(f"image_folder: {err}") from None
    if not found:
        raise DataError(f"image_folder: no {', '.join(SUFFIXES)} images in {folder}")
    top = [p for p in found if p.parent == folder]
    nested = [p for p in found if p.parent != folder]
    if top and nested:
        raise DataError(f"image_folder: {folder} has images both in it ({top[0].name}) and in sub-folders "
                        f"({nested[0].relative_to(folder)}); use one sub-folder per class, or none")
    if top:
        return found, [0] * len(found), ["all"]
    names = sorted({p.relative_to(folder).parts[0] for p in found})
    index = {n: i for i, n in enumerate(names)}
    return found, [index[p.relative_to(folder).parts[0]] for p in found], names


def decode(path: Path, size: int, channels: int) -> np.ndarray:
    """One image as uint8 (C, size, size); one line naming the file when it cannot be."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in MODES[channels]:
                wanted = "grey (L)" if channels == 1 else "RGB"
                raise DataError(f"image_folder: {path}: image mode {im.mode}; this data set takes {wanted} images "
                                f"(dataset.options.channels: {channels}); convert the folder to one mode")
            im = im.convert("L" if channels == 1 else "RGB")
            im = ImageOps.fit(im, (size, size), method=Image.Resampling.BICUBIC)
            pixels = np.asarray(im, dtype=np.uint8)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as err:
        raise DataError(f"image_folder: {path}: not a readable image: {err}") from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def cache_key(folder: Path, paths: list[Path], options: ImageFolderOptions) -> str:
    digest = hashlib.sha256(json.dumps([options.size, options.channels]).encode())
    for p in paths:
        stat = p.stat()
        digest.update(f"{p.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def test_mask(labels: np.ndarray, fraction: float) -> np.ndarray:
    """A seeded, class-stratified test split: ``fraction`` of each class (at least one
    image of a class with two or more), the same for every run."""
    g = torch.Generator().manual_seed(SPLIT_SEED)
    held = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        count = round(fraction * len(members))
        if fraction > 0 and len(members) > 1:
            count = min(max(count, 1), len(members) - 1)
        held[members[torch.randperm(len(members), generator=g).numpy()[:count]]] = True
    return held


class ImageFolder(genbench.Dataset):
    name = "image_folder"
    description = "any folder of PNG/JPEG images (one sub-folder per class, or none), resized and cropped to size"
    Options = ImageFolderOptions

    @classmethod
    def image_shape_of(cls, options) -> tuple[int, int, int]:
        return (options.channels, options.size, options.size)

    def _all(self) -> tuple[np.ndarray, np.ndarray, list[Path]]:
        opts = self.options
        if not opts.path:
            raise DataError("image_folder: set dataset.options.path to the folder of images")
        folder = Path(opts.path).expanduser()
        paths, labels, _ = scan(folder)

        def build():
            return {"images": np.stack([decode(p, opts.size, opts.channels) for p in paths]),
                    "labels": np.asarray(labels, dtype=np.int64)}
        arrays = cached_arrays("image_folder", cache_key(folder, paths, opts), build)
        if len(arrays["images"]) != len(paths) or arrays["images"].shape[1:] != self.image_shape_of(opts):
            arrays = build()  # a cache entry that does not fit its key: never trusted
        return arrays["images"], arrays["labels"], paths

    def load(self, split, root, download):
        images, labels, paths = self._all()
        if self.options.split_file:
            held = self._listed(paths)
        else:
            held = test_mask(labels, self.options.test_fraction)
        keep = held if split == "test" else ~held
        if not keep.any():
            raise DataError(f"image_folder: the {split} split is empty ({len(paths)} images, test_fraction "
                            f"{self.options.test_fraction}); hold out fewer or more images, or add images")
        return genbench.ImageSet(torch.from_numpy(images[keep]), torch.from_numpy(labels[keep]))

    def _listed(self, paths: list[Path]) -> np.ndarray:
        folder = Path(self.options.path).expanduser()
        split_file = Path(self.options.split_file).expanduser()
        try:
            names = [line.strip() for line in split_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as err:
            raise DataError(f"image_folder: split_file {split_file}: {err}") from None
        known = {p.relative_to(folder).as_posix(): i for i, p in enumerate(paths)}
        missing = [n for n in names if n not in known]
        if missing:
            raise DataError(f"image_folder: split_file {split_file} lists {missing[0]!r}, which is not an image of "
                            f"{folder}")
        held = np.zeros(len(paths), dtype=bool)
        held[[known[n] for n in names]] = True
        return held


@genbench.hookimpl
def register_datasets(register):
    register(ImageFolder)
