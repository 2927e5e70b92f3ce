"""Loss pieces shared by model plugins and metrics (per-image sums, batch means)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_kl_per_dim(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) of each latent dimension of each image, nats: (N, d)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per image, in nats: shape (N,)."""
    return gaussian_kl_per_dim(mean, logvar).sum(dim=1)


def reparameterize(mean: Tensor, logvar: Tensor) -> Tensor:
    """A sample z ~ N(mean, exp(logvar)) that gradients flow through."""
    return mean + torch.randn_like(mean) * (0.5 * logvar).exp()


def bce_with_logits(logits: Tensor, target: Tensor) -> Tensor:
    """Bernoulli negative log-likelihood per image from logits, in nats: shape (N,)."""
    per_pixel = F.binary_cross_entropy_with_logits(logits.flatten(1), target.flatten(1), reduction="none")
    return per_pixel.sum(dim=1)
