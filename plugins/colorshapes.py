"""color_shapes: a procedural 3x32x32 colour data set with ten classes, made here in a second.

Each image is one shape (disc, square, triangle, ring or cross) in a warm (red to
yellow) or a cool (cyan to blue) colour, over a dark two-colour gradient with a little
noise; the class is the pair (shape, palette), so telling classes apart takes both the
outline and the colour. Position, size, rotation, exact hue, saturation and brightness,
and the background vary within a class. Every draw comes from a generator seeded by the
split, so a split is the same array everywhere; nothing is downloaded or cached.

It exists so that colour can be tested and demonstrated without a download: the test
suite and ``suites/colour_smoke.yaml`` use it, and its domain feature extractor ships
pinned (``weights/color_shapes_v2.pt``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

import genbench
from genbench import option
from genbench.api import ExtractorSpec

SIZE = 32
SHAPES = ("disc", "square", "triangle", "ring", "cross")
PALETTES = {"warm": (-0.08, 0.17), "cool": (0.45, 0.70)}  # hue ranges (fractions of the colour wheel)
SEEDS = {"train": 20260101, "test": 20260102}
# `genbench extractor train color_shapes --out plugins/weights/color_shapes_v2.pt` (6 epochs)
WEIGHTS = Path(__file__).parent / "weights"
EXTRACTOR_SHA256 = "3c471b3ad1087c346ac337e957789b91201ce0c70089e0d37344b54656164026"


@dataclasses.dataclass(frozen=True)
class ColorShapesOptions:
    train_size: int = option(20000, "training images", min=10)
    test_size: int = option(5000, "test images", min=10)


def hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(N,) hue, saturation and value in [0, 1] -> (N, 3) RGB in [0, 1]."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + (h % 1.0)[:, None] * 6) % 6
    return v[:, None] - (v * s)[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def masks(shape: torch.Tensor, cx, cy, radius, angle) -> torch.Tensor:
    """(N, H, W) boolean masks of each image's shape, by its implicit equation."""
    r = torch.arange(SIZE, dtype=torch.float32) + 0.5
    dx, dy = r[None, None, :] - cx[:, None, None], r[None, :, None] - cy[:, None, None]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    R = radius[:, None, None]
    dist = torch.sqrt(dx * dx + dy * dy)
    disc = dist <= R
    square = torch.maximum(u.abs(), v.abs()) <= 0.8 * R
    # an equilateral triangle: inside the three half-planes whose normals are 120 degrees apart
    sides = [math.cos(a) * u + math.sin(a) * v <= 0.5 * R for a in (math.pi / 2, math.pi * 7 / 6, math.pi * 11 / 6)]
    triangle = sides[0] & sides[1] & sides[2]
    ring = disc & (dist >= 0.55 * R)
    cross = ((u.abs() <= 0.3 * R) & (v.abs() <= R)) | ((v.abs() <= 0.3 * R) & (u.abs() <= R))
    s = shape[:, None, None]
    return torch.where(s == 0, disc, torch.where(s == 1, square, torch.where(
        s == 2, triangle, torch.where(s == 3, ring, cross))))


def generate(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` uint8 images (n, 3, 32, 32) and their labels, from ``seed`` alone."""
    g = torch.Generator().manual_seed(seed)

    def uniform(lo, hi, *size):
        return lo + (hi - lo) * torch.rand(*(size or (n,)), generator=g)

    labels = (torch.arange(n) % (2 * len(SHAPES)))[torch.randperm(n, generator=g)]
    shape, warm = labels // 2, labels % 2 == 0
    mask = masks(shape, uniform(10, 22), uniform(10, 22), uniform(6, 10), uniform(0, 2 * math.pi))
    (w0, w1), (c0, c1) = PALETTES["warm"], PALETTES["cool"]
    hue = torch.where(warm, uniform(w0, w1), uniform(c0, c1))
    colour = hsv_to_rgb(hue, uniform(0.6, 1.0), uniform(0.75, 1.0))
    # the background: a gradient between two dark colours along a random direction, plus noise
    ends = [hsv_to_rgb(uniform(0, 1), uniform(0, 0.6), uniform(0.05, 0.35)) for _ in range(2)]
    theta = uniform(0, 2 * math.pi)
    r = (torch.arange(SIZE, dtype=torch.float32) + 0.5) / SIZE - 0.5
    t = (torch.cos(theta)[:, None, None] * r[None, None, :] + torch.sin(theta)[:, None, None] * r[None, :, None]) + 0.5
    t = t.clamp(0, 1)[:, None]
    background = ends[0][:, :, None, None] * (1 - t) + ends[1][:, :, None, None] * t
    background = background + uniform(-0.03, 0.03, n, 3, SIZE, SIZE)
    image = torch.where(mask[:, None], colour[:, :, None, None], background)
    return torch.round(image.clamp(0, 1) * 255).to(torch.uint8), labels


class ColorShapes(genbench.Dataset):
    name = "color_shapes"
    description = "procedural 3x32x32 colour shapes, 10 classes (5 shapes x warm/cool), made in a second"
    image_shape = (3, SIZE, SIZE)
    class_names = tuple(f"{palette} {shape}" for shape in SHAPES for palette in PALETTES)
    Options = ColorShapesOptions
    extractor = ExtractorSpec(WEIGHTS / "color_shapes_v2.pt", EXTRACTOR_SHA256, num_classes=10, in_channels=3,
                              architecture="v2")

    def load(self, split, root, download):
        n = self.options.train_size if split == "train" else self.options.test_size
        images, labels = generate(n, SEEDS[split])
        return genbench.ImageSet(images, labels)


@genbench.hookimpl
def register_datasets(register):
    register(ColorShapes)
