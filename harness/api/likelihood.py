"""One likelihood scale for every model: log P(x) of the discrete 8-bit image, in nats.

A model that declares ``Capability.LIKELIHOOD`` says what its ``log_likelihood`` returns
with a :class:`Likelihood`: the convention (there is one, :data:`CONVENTIONS`) and
whether the value is exact or a lower bound. The metrics ``nll`` and ``bpd`` score only
models of the convention they print, so a continuous density can never share a column
with a probability of discrete pixels.

The helpers below turn common decoders into probabilities of 8-bit pixels: a pixel of
value k/255 owns the bin [k - 1/2, k + 1/2] / 255, and the two end bins reach to minus
and plus infinity, so the 256 probabilities of a pixel sum to exactly 1.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import Tensor

CONVENTIONS = {
    "discrete_8bit": "log P(x) in nats of the image as 8-bit pixels (each pixel one of 256 values k/255); "
                     "a model of a continuous density scores the dequantized image x + u/256, u ~ U[0, 1), "
                     "minus D log 256, a lower bound on log P(x)",
}
"""Known conventions, name -> what a value means."""

LEVELS = 256
HALF_BIN = 0.5 / (LEVELS - 1)


@dataclasses.dataclass(frozen=True)
class Likelihood:
    """What a model's ``log_likelihood`` returns.

    Attributes:
        exact: True if it is log P(x) itself (an autoregressive model); False if it is a
            lower bound on it (a variational bound, an importance-weighted bound, a
            dequantized density). The leaderboard marks bounds.
        convention: one of :data:`CONVENTIONS`.
        method: one line saying how, e.g. ``"uniform dequantization, one draw per image"``.
    """

    exact: bool
    convention: str = "discrete_8bit"
    method: str = ""

    def __post_init__(self):
        if self.convention not in CONVENTIONS:
            raise ValueError(f"likelihood convention {self.convention!r} is not one of {', '.join(CONVENTIONS)}")
        if not isinstance(self.exact, bool):
            raise ValueError("Likelihood.exact must be True or False")


def bits_per_dim(nll_nats: Tensor | float, dims: int) -> Tensor | float:
    """Negative log-likelihood in nats per image -> bits per dimension."""
    return nll_nats / (dims * math.log(2.0))


def _log_bin(x: Tensor, mean: Tensor, log_scale: Tensor, log_cdf, log_pdf) -> Tensor:
    """log P(bin of x) for a symmetric distribution of location ``mean`` and scale
    ``exp(log_scale)``; the end bins are open. Computed in the inputs' precision (at
    least float32): pass float64 where a score must be exact to the last digit."""
    if x.dtype not in (torch.float32, torch.float64):
        x, mean, log_scale = x.float(), mean.float(), log_scale.float()
    inv = torch.exp(-log_scale)
    upper, lower = (x - mean + HALF_BIN) * inv, (x - mean - HALF_BIN) * inv
    # F(upper) - F(lower), from the tail where both are small (F symmetric)
    flip = (upper + lower) > 0
    a, b = torch.where(flip, -lower, upper), torch.where(flip, -upper, lower)
    la, lb = log_cdf(a), log_cdf(b)
    gap = la - lb
    mid = la + torch.log(-torch.expm1(-gap.clamp(min=1e-30)))
    # A bin too narrow for the difference of two log-CDFs (it would cancel): the density
    # at its centre times its width, accurate to (width in scales)^2 / 24.
    narrow = log_pdf((x - mean) * inv) + math.log(2 * HALF_BIN) - log_scale
    tiny = 1e-10 if x.dtype == torch.float64 else 1e-3
    mid = torch.where((gap > tiny) & (2 * HALF_BIN * inv > tiny), mid, narrow)
    return torch.where(x < HALF_BIN, log_cdf(upper), torch.where(x > 1.0 - HALF_BIN, log_cdf(-lower), mid))


def discretized_logistic_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log P(x) per pixel of 8-bit pixels ``x`` (values k/255) under a logistic with
    ``mean`` (in pixel units, [0, 1]) and ``log_scale``, discretized into the 256 bins."""
    return _log_bin(x, mean, log_scale, F.logsigmoid, lambda t: -t.abs() - 2 * F.softplus(-t.abs()))


def discretized_gaussian_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """As :func:`discretized_logistic_log_prob`, for a Gaussian with standard deviation
    ``exp(log_scale)`` (the decoder of a diffusion model's last step, Ho et al. 2020)."""
    return _log_bin(x, mean, log_scale, torch.special.log_ndtr, lambda t: -0.5 * t * t - 0.5 * math.log(2 * math.pi))


def dequantize(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantization: 8-bit pixels k/255 -> (k + u) / 256 in [0, 1), u ~ U[0, 1)."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return (torch.round(x * (LEVELS - 1)) + u) / LEVELS


def gaussian_latent_draw(mean: Tensor, logvar: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """z = mean + eps * exp(logvar / 2), with log p(z) under N(0, I) and log q(z | x) per
    image: an importance weight is log p(x | z) + log p(z) - log q(z | x)."""
    z = mean + eps * (0.5 * logvar).exp()
    log_prior = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1)
    log_q = -0.5 * (eps.pow(2) + math.log(2 * math.pi) + logvar).sum(1)
    return z, log_prior, log_q


def importance_weighted(log_weights: Tensor) -> Tensor:
    """log (1/K) sum_k w_k from ``log_weights`` of shape (K, N): the bound of Burda et al. (2016)."""
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])
