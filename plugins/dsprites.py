"""dSprites, made here from its definition: 737,280 binary 64x64 images of three shapes.

Every image of the factor grid (Matthey et al. 2017): shape (square, ellipse, heart),
scale (6 values in [0.5, 1]), orientation (40 values in [0, 2 pi)), x and y position
(32 values each in [0, 1]). A sprite is drawn once per shape, scale and orientation by
testing each pixel's centre against the shape's implicit equation; positions move it
by whole pixels (centres 16..47), so the 1,024 positions of a sprite are exact copies.
Nothing is downloaded: the grid is drawn on first use and cached as one bit-packed
file (377 MB, written atomically); a subset reads only its own rows.

Splits: a fixed seeded permutation of the grid; its first ``test_size`` images are the
test split, the next ``subset`` (all the rest by default) the training split. Both are
uniform random draws of the factor grid; the label is the shape.

``color_dsprites`` and ``noisy_dsprites`` are the colour variants of Locatello et al.
(2019, disentanglement_lib), with the same factors: the sprite in a colour drawn
uniformly from [0.5, 1] per channel, on black; or the white sprite over a background of
uniform noise. disentanglement_lib draws the colour or noise afresh at each sampling;
here they are fixed per image, so a split is the same array every time: an image's colour
follows its place in the grid, and the noise of the k-th image of a split is the same for
every ``subset``. The three channels take three times the memory of ``dsprites``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import torch

import genbench
from genbench import Factor, option
from genbench.api import CACHE_DIR, DataError, ExtractorSpec

SHAPES = ("square", "ellipse", "heart")
GRID = (3, 6, 40, 32, 32)
FACTORS = (
    Factor("shape", (0.0, 1.0, 2.0)),
    Factor("scale", tuple(np.linspace(0.5, 1.0, 6))),
    Factor("orientation", tuple(2 * math.pi * k / 40 for k in range(40))),
    Factor("pos_x", tuple(np.linspace(0.0, 1.0, 32))),
    Factor("pos_y", tuple(np.linspace(0.0, 1.0, 32))),
)
SIZE = 64
HALF = 9.0        # half the side of the square at scale 1, in pixels
FIRST = 16        # pixel of the centre at position 0 (position 1 is pixel 47)
CANVAS = 2 * SIZE  # a sprite is drawn centred on a canvas this wide, then windows are cut
SPLIT_SEED = 20170301
VERSION = 1       # bump when the drawing changes, so an old cache is never read
TOTAL = int(np.prod(GRID))
PACKED = SIZE * SIZE // 8


@dataclasses.dataclass(frozen=True)
class DSpritesOptions:
    subset: Optional[int] = option(None, "training images, a seeded random subset of the grid (default: "
                                   "every image not held out for testing)", min=1)
    test_size: int = option(10000, "images held out as the test split (disentanglement metrics draw from them)",
                            min=1, max=TOTAL - 1)
    cache: bool = option(True, "keep the drawn grid in ~/.cache/genbench/data/dsprites (377 MB) for the next "
                         "suite; false draws the requested images each time")


def sprites() -> torch.Tensor:
    """Every sprite (shape, scale, orientation) centred on a canvas: uint8 (720, CANVAS, CANVAS), 0 or 255."""
    shape, scale, orient = (torch.from_numpy(a.ravel()) for a in np.indices(GRID[:3]))
    k = (HALF * (0.5 + 0.1 * scale.float()))[:, None, None]
    theta = (orient.float() * (2 * math.pi / 40))[:, None, None]
    r = torch.arange(CANVAS, dtype=torch.float32) - CANVAS // 2
    dx, dy = r[None, None, :], r[None, :, None]  # image rows grow downwards
    u = (torch.cos(theta) * dx + torch.sin(theta) * dy) / k
    v = (-torch.sin(theta) * dx + torch.cos(theta) * dy) / k
    square = torch.maximum(u.abs(), v.abs()) <= 1
    ellipse = u * u + 4 * v * v <= 1  # twice as long as wide
    a, b = 1.05 * u, 0.15 - 1.05 * v  # the heart curve, its point down and centred
    heart = (a * a + b * b - 1) ** 3 - a * a * b ** 3 <= 0
    s = shape[:, None, None]
    return torch.where(s == 0, square, torch.where(s == 1, ellipse, heart)).to(torch.uint8) * 255


def draw(factors: np.ndarray, canvas: torch.Tensor | None = None, chunk: int = 4096) -> torch.Tensor:
    """The images of ``factors`` (N, 5) level indices: uint8 (N, 1, 64, 64) of 0 and 255."""
    flat = (sprites() if canvas is None else canvas).reshape(-1)
    f = torch.as_tensor(np.asarray(factors, dtype=np.int64)).reshape(-1, len(GRID))
    out = torch.empty((len(f), 1, SIZE, SIZE), dtype=torch.uint8)
    window = torch.arange(SIZE)
    for start in range(0, len(f), chunk):
        part = f[start:start + chunk]
        sprite = (part[:, 0] * GRID[1] + part[:, 1]) * GRID[2] + part[:, 2]
        # a sprite centred at pixel FIRST + p sits at canvas offset CANVAS // 2 - FIRST - p
        rows = (CANVAS // 2 - FIRST - part[:, 4])[:, None] + window
        cols = (CANVAS // 2 - FIRST - part[:, 3])[:, None] + window
        at = (sprite * CANVAS * CANVAS)[:, None, None] + rows[:, :, None] * CANVAS + cols[:, None, :]
        out[start:start + chunk, 0] = flat[at]
    return out


def grid_factors(index: np.ndarray) -> np.ndarray:
    """Factor levels (N, 5) of grid positions (row-major over GRID)."""
    return np.stack(np.unravel_index(np.asarray(index), GRID), axis=1).astype(np.int64)


def cache_path() -> Path:
    return CACHE_DIR.expanduser() / "dsprites" / f"dsprites_v{VERSION}_packed.npy"


def build_cache(path: Path, chunk: int = 1 << 16) -> None:
    """Draw the whole grid into ``path`` (one row of packed bits per image), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas = sprites()
    fd, tmp = tempfile.mkstemp(prefix=".dsprites-", dir=path.parent)
    os.close(fd)
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(TOTAL, PACKED))
        for start in range(0, TOTAL, chunk):
            index = np.arange(start, min(start + chunk, TOTAL))
            out[index] = np.packbits(draw(grid_factors(index), canvas).numpy().reshape(len(index), -1) > 0, axis=1)
        out.flush()
        del out
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_cache(path: Path, index: np.ndarray) -> np.ndarray | None:
    """Rows ``index`` of the cache as uint8 (N, 1, 64, 64); None if the file is not a sound cache."""
    try:
        packed = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if packed.shape != (TOTAL, PACKED) or packed.dtype != np.uint8:
        return None
    order = np.argsort(index, kind="stable")  # sorted reads of a memory map are sequential
    rows = np.empty((len(index), PACKED), dtype=np.uint8)
    rows[order] = packed[index[order]]
    probe = index[:: max(1, len(index) // 16)]  # a damaged or foreign file is redrawn, never trusted
    images = np.unpackbits(rows, axis=1).reshape(len(index), 1, SIZE, SIZE)
    del rows
    images *= np.uint8(255)  # in place: the training split alone is 3 GB
    if not np.array_equal(images[:: max(1, len(index) // 16)], draw(grid_factors(probe)).numpy()):
        return None
    return images


class DSprites(genbench.Dataset):
    name = "dsprites"
    description = "dSprites (drawn here): 737,280 64x64 binary sprites over 5 known factors; label = shape"
    image_shape = (1, SIZE, SIZE)
    class_names = SHAPES
    factors = FACTORS
    Options = DSpritesOptions

    def split_index(self, split: str) -> np.ndarray:
        order = np.random.Generator(np.random.PCG64(SPLIT_SEED)).permutation(TOTAL)
        test = self.options.test_size
        if split == "test":
            return order[:test]
        rest = order[test:]
        return rest if self.options.subset is None else rest[:self.options.subset]

    def load(self, split, root, download):
        index = self.split_index(split)
        images = None
        if self.options.cache:
            path = cache_path()
            images = read_cache(path, index) if path.is_file() else None
            if images is None:
                try:
                    build_cache(path)
                    images = read_cache(path, index)
                except OSError as err:  # a read-only home: draw without a cache
                    raise DataError(f"dsprites: cannot write its cache {path}: {err.strerror or err}; "
                                    f"set dataset.options.cache: false") from None
        pixels = torch.from_numpy(images) if images is not None else draw(grid_factors(index))
        factors = torch.from_numpy(grid_factors(index))
        return genbench.ImageSet(pixels, factors[:, 0].clone(), factors)




COLOUR_SEED, NOISE_SEED = 20190609, 20190610
# Domain feature extractors (shape, 3 classes): `genbench extractor train NAME --set subset=N
# --set test_size=2000 --set cache=false [--epochs 10] --out weights/NAME_v2.pt`, N = 10,000 for
# color_dsprites (6 epochs) and 20,000 for noisy_dsprites (10 epochs); the hashes pin them.
WEIGHTS = Path(__file__).parent / "weights"
COLOR_SHA256 = "95182890f66a5dd0a9343d6c44637c19aaab3e2dc8643b98b89683f0d9a4164c"
NOISY_SHA256 = "b9a26cf4edc7cacdf1f73cd22d0185b8283306bf842fb59d38b9279121d9d4d4"


class Painted(DSprites):
    """A colour variant: each sprite's mask painted, a chunk at a time (no float copy of a split)."""

    image_shape = (3, SIZE, SIZE)

    def painter(self, split: str, index: np.ndarray):
        """A function (masks (n, 1, 64, 64), the chunk's slice) -> uint8 (n, 3, 64, 64)."""
        raise NotImplementedError

    def load(self, split, root, download):
        grey = super().load(split, root, download)
        paint = self.painter(split, self.split_index(split))
        images = torch.empty((len(grey.images), 3, SIZE, SIZE), dtype=torch.uint8)
        for start in range(0, len(images), 4096):
            part = slice(start, start + 4096)
            images[part] = paint(grey.images[part] > 0, part)
        return genbench.ImageSet(images, grey.labels, grey.factors)


class ColorDSprites(Painted):
    name = "color_dsprites"
    description = "dSprites with the sprite in a random colour (Locatello et al. 2019); same factors"
    extractor = ExtractorSpec(WEIGHTS / "color_dsprites_v2.pt", COLOR_SHA256, num_classes=3, in_channels=3,
                              architecture="v2")

    def painter(self, split, index):
        # One colour per grid image, so an image keeps its colour in every subset and split size.
        table = np.random.Generator(np.random.PCG64(COLOUR_SEED)).uniform(0.5, 1.0, (TOTAL, 3))
        colour = torch.from_numpy(np.round(255 * table[index]).astype(np.uint8))[:, :, None, None]
        return lambda mask, part: mask * colour[part]


class NoisyDSprites(Painted):
    name = "noisy_dsprites"
    description = "dSprites, the white sprite over uniform noise (Locatello et al. 2019); same factors"
    extractor = ExtractorSpec(WEIGHTS / "noisy_dsprites_v2.pt", NOISY_SHA256, num_classes=3, in_channels=3,
                              architecture="v2")

    def painter(self, split, index):
        # drawn in order, so image k's noise never depends on the subset
        rng = np.random.Generator(np.random.PCG64([NOISE_SEED, 0 if split == "train" else 1]))
        white = torch.tensor(255, dtype=torch.uint8)

        def paint(mask, part):
            noise = rng.integers(0, 256, (len(mask), 3, SIZE, SIZE), dtype=np.uint8)
            return torch.where(mask, white, torch.from_numpy(noise))
        return paint


@genbench.hookimpl
def register_datasets(register):
    for cls in (DSprites, ColorDSprites, NoisyDSprites):
        register(cls)
