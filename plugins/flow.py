"""A Glow-style normalizing flow (Kingma & Dhariwal 2018; Dinh et al. 2017 for the couplings).

Dequantized pixels go through a logit, squeezes and steps of (activation normalisation,
invertible 1x1 convolution, affine coupling) to a standard normal: one squeeze per
``halvings`` of the image, at most three (two at 28x28, three at 32x32 and 64x64). The
density is exact by change of variables; the 8-bit likelihood is a lower bound through
uniform dequantization (``genbench.api.likelihood``).
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

import genbench
from genbench import Capability, option
from genbench.api import halvings
from genbench.api.likelihood import LEVELS, dequantize, importance_weighted

ALPHA = 1e-6  # the logit's margin: x -> logit(ALPHA + (1 - 2 ALPHA) x)
SAMPLE_LIMIT = 1e4
MAX_SQUEEZES = 3  # a fourth would leave 768 channels of 4x4 at 3x64x64


def squeezes(image_shape) -> int:
    return halvings(*image_shape[1:], smallest=1, most=MAX_SQUEEZES)  # a squeeze needs only even sides


@dataclasses.dataclass(frozen=True)
class FlowOptions:
    steps: tuple[int, ...] = option((8, 8), "flow steps after each squeeze, from the first; there is one squeeze "
                                    "per genbench.api.halvings of the image, at most 3 (2 at 28x28, 3 at 32x32 "
                                    "and 64x64), later squeezes repeating the last count", min=1)
    hidden: int = option(96, "channels of each coupling's network", min=1)
    lr: float = option(1e-3, "Adam learning rate", min=0)
    dequantizations: int = option(1, "evaluation only: dequantization draws per image; above 1 the bound is "
                                  "importance-weighted over them (tighter)", min=1, evaluation=True)

    def __post_init__(self):
        if not 1 <= len(self.steps) <= MAX_SQUEEZES:
            raise ValueError(f"steps: give one to {MAX_SQUEEZES} counts (one per squeeze, from the first), got "
                             f"{list(self.steps)}")


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 4C, H/2, W/2): each 2x2 block becomes four channels."""
    n, c, h, w = x.shape
    return x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c // 4, 2 * h, 2 * w)


class ActNorm(nn.Module):
    """A learned scale and shift per channel (starting as the identity)."""

    def __init__(self, c: int):
        super().__init__()
        self.log_scale = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.shift = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x):
        return (x + self.shift) * self.log_scale.exp(), self.log_scale.sum() * x.shape[2] * x.shape[3]

    def inverse(self, y):
        return y * (-self.log_scale).exp() - self.shift


class InvConv(nn.Module):
    """An invertible 1x1 convolution: a learned c x c matrix mixing channels."""

    def __init__(self, c: int):
        super().__init__()
        self.weight = nn.Parameter(torch.linalg.qr(torch.randn(c, c))[0])

    def forward(self, x):
        logdet = torch.linalg.slogdet(self.weight.double())[1].to(x.dtype) * x.shape[2] * x.shape[3]
        return F.conv2d(x, self.weight[:, :, None, None]), logdet

    def inverse(self, y):
        return F.conv2d(y, torch.linalg.inv(self.weight.double()).to(y.dtype)[:, :, None, None])


class Coupling(nn.Module):
    """Affine coupling: the second half of the channels is scaled and shifted by a network
    of the first half; scale = sigmoid(raw + 2), as in Glow, keeps it stable."""

    def __init__(self, c: int, hidden: int):
        super().__init__()
        half = c // 2
        self.net = nn.Sequential(nn.Conv2d(half, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1),
                                 nn.ReLU(), nn.Conv2d(hidden, 2 * (c - half), 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, a):
        raw, shift = self.net(a).chunk(2, dim=1)
        return torch.sigmoid(raw + 2.0), shift

    def forward(self, x):
        a, b = x.split([x.shape[1] // 2, x.shape[1] - x.shape[1] // 2], dim=1)
        scale, shift = self._scale_shift(a)
        return torch.cat([a, (b + shift) * scale], dim=1), scale.log().flatten(1).sum(1)

    def inverse(self, y):
        a, b = y.split([y.shape[1] // 2, y.shape[1] - y.shape[1] // 2], dim=1)
        scale, shift = self._scale_shift(a)
        return torch.cat([a, b / scale - shift], dim=1)


class Flow(genbench.Model):
    name = "flow"
    description = "Glow-style flow: logit, squeezes, (actnorm, 1x1 conv, affine coupling) steps; exact density"
    Options = FlowOptions
    capabilities = frozenset({Capability.SAMPLE, Capability.LIKELIHOOD})
    likelihood = genbench.Likelihood(exact=False, method="exact density of uniformly dequantized pixels "
                                     "minus D log 256 (a lower bound on log P(x))")

    @classmethod
    def unsupported_shape(cls, options, image_shape):
        if squeezes(image_shape) == 0:
            return "it squeezes the image at least once: height and width must be even"
        return None

    def __init__(self, options: FlowOptions, data: genbench.DataInfo):
        super().__init__(options, data)
        reason = self.unsupported_shape(options, data.image_shape)
        if reason:
            raise ValueError(f"flow: {reason}")
        c = data.image_shape[0]
        levels = squeezes(data.image_shape)
        counts = list(options.steps[:levels]) + [options.steps[-1]] * (levels - len(options.steps))
        self.levels = nn.ModuleList()
        for level, count in enumerate(counts):
            ch = c * 4 ** (level + 1)
            self.levels.append(nn.ModuleList(
                nn.ModuleList([ActNorm(ch), InvConv(ch), Coupling(ch, options.hidden)]) for _ in range(count)))

    def configure_optimizers(self):
        return {"adam": torch.optim.Adam(self.parameters(), lr=self.options.lr, fused=self.fused)}

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per image of continuous images ``x`` in (0, 1), in nats (exact)."""
        s = ALPHA + (1 - 2 * ALPHA) * x
        z = torch.log(s) - torch.log1p(-s)
        logdet = (math.log(1 - 2 * ALPHA) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
        for level in self.levels:
            z = squeeze(z)
            for step in level:
                for layer in step:
                    z, ld = layer(z)
                    logdet = logdet + ld
        prior = -0.5 * (z.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)
        return prior + logdet

    def _bound(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_density(dequantize(x)) - self.data.num_pixels * math.log(LEVELS)

    def train_step(self, batch, step):
        nll = -self._bound(batch.x).mean()
        self.optimize(nll, self.optimizers["adam"])
        return {"loss": nll.detach()}

    def log_likelihood(self, x, y=None):
        draws = torch.stack([self._bound(x).double() for _ in range(self.options.dequantizations)])
        return importance_weighted(draws)

    def sample(self, n, labels=None):
        c, h, w = self.data.image_shape
        dtype = next(self.parameters()).dtype
        k = len(self.levels)
        z = torch.randn(n, c * 4 ** k, h >> k, w >> k, device=self.device, dtype=dtype)
        for level in reversed(self.levels):
            for step in reversed(level):
                for layer in reversed(step):
                    # A draw far outside what the flow learned can be stretched past float range by
                    # a coupling's 1/scale; the final sigmoid saturates long before this limit.
                    z = layer.inverse(z).clamp(-SAMPLE_LIMIT, SAMPLE_LIMIT)
            z = unsqueeze(z)
        x = (torch.sigmoid(z) - ALPHA) / (1 - 2 * ALPHA)
        # the bin the dequantized value falls in is the 8-bit pixel
        return torch.floor(x * LEVELS).clamp(0, LEVELS - 1) / (LEVELS - 1)


@genbench.hookimpl
def register_models(register):
    register(Flow)
