"""Denoising diffusion (Ho et al. 2020) with a compact U-Net that predicts the noise.

Its likelihood is the variational bound on the discrete 8-bit image (Ho et al. eq. 5: the
prior term, the T - 1 Gaussian KL terms and a discretized Gaussian decoder at t = 1),
estimated per image from ``bound_timesteps`` of the KL terms, stratified over t. The
reverse steps use the predicted x_0 clipped to the data range, as sampling does. Sampling
is ancestral over ``sample_steps`` evenly spaced timesteps (respaced as in Nichol &
Dhariwal 2021), so the number of steps is chosen at evaluation without retraining.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

import genbench
from genbench import Capability, option
from genbench.api import halvings
from genbench.api.likelihood import discretized_gaussian_log_prob


@dataclasses.dataclass(frozen=True)
class DDPMOptions:
    channels: int = option(32, "U-Net width at full resolution (doubled below it; one resolution per "
                           "genbench.api.halvings: full, 1/2, 1/4 at 28x28, down to 1/8 at 32x32 and 1/16 at "
                           "64x64)", min=8)
    timesteps: int = option(1000, "diffusion steps T", min=2)
    schedule: Literal["cosine", "linear"] = option("cosine", "noise schedule: cosine (Nichol & Dhariwal) or "
                                                   "linear (Ho et al., beta 1e-4..0.02 scaled by 1000/T)")
    lr: float = option(5e-4, "Adam learning rate", min=0)
    sample_steps: int = option(100, "evaluation only: ancestral sampling steps (at most timesteps)", min=1,
                               evaluation=True)
    bound_timesteps: int = option(50, "evaluation only: KL terms of the bound computed per image, one from each "
                                  "of at most this many strata of t, geometrically wider with t (all T - 1 "
                                  "when at least that)", min=1, evaluation=True)


def betas_for(schedule: str, steps: int) -> torch.Tensor:
    if schedule == "linear":
        scale = 1000 / steps
        return torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64)
    s = 0.008
    f = torch.cos((torch.arange(steps + 1, dtype=torch.float64) / steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=0.999)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, t_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(8, c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(t_dim, c_out)
        self.norm2 = nn.GroupNorm(min(8, c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x))) + self.time(temb)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class UNet(nn.Module):
    """One resolution per ``halvings`` of the image plus the full one (full, 1/2, 1/4 at
    28x28; down to 1/8 at 32x32 and 1/16 at 64x64), width c at full resolution and 2c
    below, one residual block each way, skip connections."""

    def __init__(self, c_img: int, c: int, levels: int = 2):
        super().__init__()
        t_dim = 4 * c
        self.c = c
        widths = [c] + [2 * c] * levels
        self.time = nn.Sequential(nn.Linear(c, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))
        self.inp = nn.Conv2d(c_img, c, 3, padding=1)
        self.down = nn.ModuleList([ResBlock(a, b, t_dim) for a, b in zip([c, *widths], widths)])
        self.pool = nn.ModuleList([nn.Conv2d(w, w, 3, stride=2, padding=1) for w in widths[:-1]])
        self.mid = ResBlock(2 * c, 2 * c, t_dim)
        skips, ups, h = widths[::-1], [], widths[-1]
        for i, skip in enumerate(skips):
            out = skips[i + 1] if i + 1 < len(skips) else c
            ups.append(ResBlock(h + skip, out, t_dim))
            h = out
        self.up = nn.ModuleList(ups)
        self.unpool = nn.ModuleList([nn.Conv2d(w, w, 3, padding=1) for w in skips[1:]])
        self.out = nn.Sequential(nn.GroupNorm(min(8, c), c), nn.SiLU(), nn.Conv2d(c, c_img, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x, t):
        temb = self.time(timestep_embedding(t, self.c))
        h = self.inp(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, temb)
            skips.append(h)
            if i < len(self.pool):
                h = self.pool[i](h)
        h = self.mid(h, temb)
        for i, block in enumerate(self.up):
            h = block(torch.cat([h, skips.pop()], dim=1), temb)
            if i < len(self.unpool):
                h = self.unpool[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h)


class DDPM(genbench.Model):
    name = "ddpm"
    description = "denoising diffusion, compact U-Net predicting the noise; bound on the 8-bit likelihood"
    Options = DDPMOptions
    capabilities = frozenset({Capability.SAMPLE, Capability.LIKELIHOOD})
    likelihood = genbench.Likelihood(exact=False, method="variational bound (Ho et al. 2020, discretized "
                                     "Gaussian decoder), KL terms estimated from stratified timesteps")

    @classmethod
    def unsupported_shape(cls, options, image_shape):
        if halvings(*image_shape[1:]) == 0:
            return "its U-Net halves the image at least once: height and width must be even and at least 8"
        return None

    def __init__(self, options: DDPMOptions, data: genbench.DataInfo):
        super().__init__(options, data)
        reason = self.unsupported_shape(options, data.image_shape)
        if reason:
            raise ValueError(f"ddpm: {reason}")
        self.net = UNet(data.image_shape[0], options.channels, halvings(*data.image_shape[1:]))
        betas = betas_for(options.schedule, options.timesteps)
        # Schedules are rebuilt from the options, not saved: model.pt holds the network only.
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alpha_bar", torch.cumprod(1 - betas, 0).float(), persistent=False)

    def configure_optimizers(self):
        return {"adam": torch.optim.Adam(self.parameters(), lr=self.options.lr, fused=self.fused)}

    def _noised(self, x0, t):
        noise = torch.randn_like(x0)
        ab = self.alpha_bar[t][:, None, None, None]
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise, noise

    def train_step(self, batch, step):
        x0 = batch.x * 2 - 1
        t = torch.randint(0, self.options.timesteps, (len(x0),), device=x0.device)
        xt, noise = self._noised(x0, t)
        loss = F.mse_loss(self.net(xt, t), noise)
        self.optimize(loss, self.optimizers["adam"])
        return {"loss": loss.detach()}

    # The bound -------------------------------------------------------------------------

    def _posterior(self, x0, xt, i, alpha_bar):
        """Mean and variance of q(x_{i-1} | x_i, x_0) (0-based i >= 1) for the schedule ``alpha_bar``."""
        ab, ab_prev = alpha_bar[i], alpha_bar[i - 1]
        beta = 1 - ab / ab_prev
        c0 = (beta * ab_prev.sqrt() / (1 - ab))[:, None, None, None]
        ct = ((1 - ab_prev) * (1 - beta).sqrt() / (1 - ab))[:, None, None, None]
        return c0 * x0 + ct * xt, (beta * (1 - ab_prev) / (1 - ab))[:, None, None, None]

    def _x0_from_eps(self, xt, i, eps, alpha_bar):
        ab = alpha_bar[i][:, None, None, None]
        return (xt - (1 - ab).sqrt() * eps) / ab.sqrt()

    def _predict_x0(self, xt, i, alpha_bar):
        """The model's x_0: from its noise prediction, clipped to the data range [-1, 1].

        The reverse step p(x_{i-1} | x_i) is the posterior at this x_0, in sampling and in
        the bound alike. Unclipped, the first reverse step, at t = T (alpha_bar 2.4e-9, cosine
        schedule) amplifies the noise prediction's error ~10^4-fold: one KL term of ~1,500
        nats, 2.7 of the undertrained model's 4.4 bits per dimension of KL terms.
        """
        return self._x0_from_eps(xt, i, self.net(xt, i), alpha_bar).clamp(-1, 1)

    def _kl_term(self, x0, i):
        """KL(q(x_{i-1} | x_i, x_0) || p(x_{i-1} | x_i)) per image, variances equal (beta tilde)."""
        xt, _ = self._noised(x0, i)
        ab = self.alpha_bar
        true_mean, var = self._posterior(x0, xt, i, ab)
        model_mean, _ = self._posterior(self._predict_x0(xt, i, ab), xt, i, ab)
        return ((true_mean - model_mean).pow(2) / (2 * var)).flatten(1).sum(1)

    def strata(self) -> list[tuple[int, int]]:
        """(first, last) timesteps (0-based, inclusive) of the KL terms' strata, covering 1..T-1.

        The terms fall steeply with t (t = 1 is ~10^4 times t = 500), so the strata widen
        geometrically: the first terms are computed exactly, the small late ones sampled.
        """
        T, k = self.options.timesteps, self.options.bound_timesteps
        if k >= T - 1:
            return [(i, i) for i in range(1, T)]
        edges = torch.unique(torch.round(torch.logspace(0, math.log10(T), k + 1, dtype=torch.float64))).long()
        return [(int(a), int(b) - 1) for a, b in zip(edges[:-1], edges[1:])]

    def log_likelihood(self, x, y=None):
        n = len(x)
        x0 = x * 2 - 1
        zero = torch.zeros(n, dtype=torch.long, device=x.device)
        # L_0: the first step's mean, decoded as a Gaussian of variance beta_1 over 8-bit bins
        x1, _ = self._noised(x0, zero)
        # (at t = 1 the model's mean 1/sqrt(alpha_1) (x_1 - beta_1 / sqrt(1 - alpha_bar_1) eps) is its x_0)
        mean0 = self._predict_x0(x1, zero, self.alpha_bar)
        log_p0 = discretized_gaussian_log_prob(x, (mean0 + 1) / 2, 0.5 * self.betas[0].log() - math.log(2.0))
        # L_T: q(x_T | x_0) against the standard normal prior
        ab_T = self.alpha_bar[-1].double()
        prior = 0.5 * (ab_T * x0.double().pow(2) + (1 - ab_T) - 1 - torch.log(1 - ab_T)).flatten(1).sum(1)
        # sum of L_{t-1}, t = 2..T (0-based i = 1..T-1): one i from each stratum, weighted by its size
        kl = torch.zeros(n, dtype=torch.float64, device=x.device)
        for first, last in self.strata():
            i = torch.randint(first, last + 1, (n,), device=x.device)
            kl += (last - first + 1) * self._kl_term(x0, i).double()
        return log_p0.flatten(1).sum(1).double() - prior - kl

    # Sampling --------------------------------------------------------------------------

    def sample(self, n, labels=None):
        T = self.options.timesteps
        steps = min(self.options.sample_steps, T)
        used = torch.linspace(0, T - 1, steps, device=self.device).round().long()
        ab = self.alpha_bar[used]  # the respaced schedule: alpha_bar at the steps used
        x = torch.randn(n, *self.data.image_shape, device=self.device)
        for k in range(steps - 1, -1, -1):
            i = torch.full((n,), k, dtype=torch.long, device=self.device)
            eps = self.net(x, used[i])
            if k == 0:
                x = self._x0_from_eps(x, i, eps, ab).clamp(-1, 1)
                break
            x0 = self._x0_from_eps(x, i, eps, ab).clamp(-1, 1)  # as _predict_x0, on the respaced schedule
            mean, var = self._posterior(x0, x, i, ab)
            x = mean + var.sqrt() * torch.randn_like(x)
        return ((x + 1) / 2).clamp(0, 1)


@genbench.hookimpl
def register_models(register):
    register(DDPM)
