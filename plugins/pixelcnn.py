"""Gated PixelCNN (van den Oord et al. 2016): exact autoregressive likelihood of 8-bit pixels.

Each pixel is a 256-way softmax conditioned on every pixel above it and to its left (raster
order), through a vertical and a horizontal stack of gated convolutions, which together
have no blind spot. ``cpixelcnn`` adds the class label as a bias in every gate.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

import genbench
from genbench import Capability, option

LEVELS = 256


@dataclasses.dataclass(frozen=True)
class PixelCNNOptions:
    channels: int = option(32, "channels of each stack", min=1)
    layers: Optional[int] = option(None, "gated layers after the first (null: 5 per 28 rows of the image, "
                                   "rounded: 5 at 28x28, 6 at 32x32, 11 at 64x64)", min=1)
    kernel: int = option(3, "width of the gated convolutions (odd)", min=3)
    first_kernel: int = option(7, "width of the first, masked convolution (odd)", min=3)
    lr: float = option(1e-3, "Adam learning rate", min=0)

    def __post_init__(self):
        if self.kernel % 2 == 0 or self.first_kernel % 2 == 0:
            raise ValueError("kernel and first_kernel must be odd")


def _down(t: torch.Tensor) -> torch.Tensor:
    """Shift rows down by one (row i gets row i - 1; row 0 zeros)."""
    return F.pad(t, (0, 0, 1, 0))[:, :, :-1]


def _right(t: torch.Tensor) -> torch.Tensor:
    """Shift columns right by one (column j gets column j - 1)."""
    return F.pad(t, (1, 0))[..., :-1]


class GatedLayer(nn.Module):
    """One layer of both stacks. The vertical stack at row i sees rows <= i; it reaches the
    horizontal stack shifted down a row, so pixel (i, j) sees rows < i through it. The
    horizontal stack at (i, j) sees columns <= j of row i (< j in the first layer)."""

    def __init__(self, c_in: int, c: int, k: int, first: bool, num_classes: int):
        super().__init__()
        self.k, self.first = k, first
        half = k // 2
        self.v = nn.Conv2d(c_in, 2 * c, (half + 1, k))
        self.h = nn.Conv2d(c_in, 2 * c, (1, half + 1))
        self.v_to_h = nn.Conv2d(2 * c, 2 * c, 1)
        self.h_out = nn.Conv2d(c, c, 1)
        self.label = nn.Embedding(num_classes, 4 * c) if num_classes else None

    def forward(self, v, h, y):
        half = self.k // 2
        v_pre = self.v(F.pad(v, (half, half, half, 0)))            # rows i - half .. i
        h_in = _right(h) if self.first else h
        h_pre = self.h(F.pad(h_in, (half, 0, 0, 0))) + self.v_to_h(_down(v_pre))
        if self.label is not None:
            bias_v, bias_h = self.label(y)[:, :, None, None].chunk(2, dim=1)
            v_pre, h_pre = v_pre + bias_v, h_pre + bias_h
        v_out = _gate(v_pre)
        h_out = self.h_out(_gate(h_pre))
        return v_out, h_out if self.first else h + h_out


def _gate(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class PixelCNN(genbench.Model):
    name = "pixelcnn"
    description = "gated PixelCNN: exact log-likelihood, 256-way softmax per pixel, raster-order sampling"
    Options = PixelCNNOptions
    capabilities = frozenset({Capability.SAMPLE, Capability.LIKELIHOOD})
    likelihood = genbench.Likelihood(exact=True, method="product of 256-way softmaxes in raster order")
    conditional = False

    def __init__(self, options: PixelCNNOptions, data: genbench.DataInfo):
        super().__init__(options, data)
        c_img = data.image_shape[0]
        classes = data.num_classes if self.conditional else 0
        c = options.channels
        # The depth follows the height, so the receptive field keeps about the same share of the image.
        depth = options.layers or max(1, round(5 * data.image_shape[1] / 28))
        self.layers = nn.ModuleList([GatedLayer(c_img, c, options.first_kernel, True, classes)] +
                                    [GatedLayer(c, c, options.kernel, False, classes) for _ in range(depth)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(c, 2 * c, 1), nn.ReLU(), nn.Conv2d(2 * c, c_img * LEVELS, 1))
        # Rows above a pixel that can reach it: its receptive field upwards (for fast sampling).
        self.reach = options.first_kernel // 2 + depth * (options.kernel // 2) + 1

    def configure_optimizers(self):
        return {"adam": torch.optim.Adam(self.parameters(), lr=self.options.lr, fused=self.fused)}

    def logits(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """(N, 256, C, H, W) logits of every pixel given the pixels before it."""
        if self.conditional and y is None:
            raise ValueError("cpixelcnn needs the class labels")
        v = h = x * 2 - 1
        for layer in self.layers:
            v, h = layer(v, h, y)
        n, c, height, width = x.shape
        return self.head(h).view(n, c, LEVELS, height, width).transpose(1, 2)

    def train_step(self, batch, step):
        y = batch.y if self.conditional else None
        target = torch.round(batch.x * (LEVELS - 1)).long()
        nll = F.cross_entropy(self.logits(batch.x, y), target, reduction="none").flatten(1).sum(1).mean()
        self.optimize(nll, self.optimizers["adam"])
        return {"loss": nll.detach()}

    def log_likelihood(self, x, y=None):
        target = torch.round(x * (LEVELS - 1)).long()
        # float64: sums of 784 log-softmaxes stay exact (uniform pixels give 8 bits per dimension)
        return -F.cross_entropy(self.logits(x, y).double(), target, reduction="none").flatten(1).sum(1)

    def sample(self, n, labels=None):
        c, height, width = self.data.image_shape
        if self.conditional and labels is None:
            labels = torch.arange(n, device=self.device) % self.data.num_classes
        x = torch.zeros(n, c, height, width, device=self.device)
        for i in range(height):
            top = max(0, i - self.reach)  # rows above the reach cannot change row i's logits
            for j in range(width):
                logits = self.logits(x[:, :, top:i + 1], labels)[:, :, :, -1, j]  # (n, 256, c)
                probs = F.softmax(logits.float().transpose(1, 2).reshape(n * c, LEVELS), dim=1)
                x[:, :, i, j] = torch.multinomial(probs, 1).view(n, c).float() / (LEVELS - 1)
        return x


class ConditionalPixelCNN(PixelCNN):
    name = "cpixelcnn"
    description = "class-conditional gated PixelCNN: the label is a bias in every gate"
    capabilities = PixelCNN.capabilities | {Capability.CONDITIONAL}
    conditional = True


@genbench.hookimpl
def register_models(register):
    register(PixelCNN)
    register(ConditionalPixelCNN)
