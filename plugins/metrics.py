"""Built-in metrics."""

from __future__ import annotations

import torch.nn.functional as F

import genbench
from genbench import Capability
from genbench.losses import gaussian_kl


def reconstruction_bce(ctx: genbench.EvalContext) -> float:
    # From probabilities (models promise outputs in [0, 1]); torch clamps log(0) at -100.
    total = F.binary_cross_entropy(ctx.reconstructions, ctx.images, reduction="sum")
    return float(total) / len(ctx.images)


def posterior_kl(ctx: genbench.EvalContext) -> float:
    mean, logvar = ctx.posterior
    return float(gaussian_kl(mean, logvar).mean())


@genbench.hookimpl
def register_metrics(register):
    register(genbench.Metric(
        name="bce", compute=reconstruction_bce, requires={Capability.RECONSTRUCT},
        higher_is_better=False, unit="nats/image",
        description="reconstruction binary cross-entropy, summed over pixels"))
    register(genbench.Metric(
        name="kl", compute=posterior_kl, requires={Capability.POSTERIOR},
        higher_is_better=False, unit="nats/image",
        description="KL(q(z|x) || N(0, I)) in closed form"))
