"""A linear autoencoder (the PCA subspace, learnt by gradient descent) for genbench."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

import genbench
from genbench import Capability, option


@dataclasses.dataclass(frozen=True)
class Options:
    latent_dim: int = option(16, "size of the linear code", min=1)
    lr: float = option(1e-3, "Adam learning rate", min=0)


class LinearAE(genbench.Model):
    name = "linear_ae"
    description = "linear encoder and decoder, sigmoid output, BCE loss"
    Options = Options
    capabilities = frozenset({Capability.RECONSTRUCT})

    def __init__(self, options: Options, data: genbench.DataInfo):
        super().__init__(options, data)
        self.encoder = nn.Linear(data.num_pixels, options.latent_dim)
        self.decoder = nn.Linear(options.latent_dim, data.num_pixels)

    def configure_optimizers(self):
        return {"adam": torch.optim.Adam(self.parameters(), lr=self.options.lr, fused=self.fused)}

    def train_step(self, batch, step):
        logits = self.decoder(self.encoder(batch.x.flatten(1)))
        # Per-image sums from logits: numerically stable, and in the harness's units.
        loss = nn.functional.binary_cross_entropy_with_logits(
            logits, batch.x.flatten(1), reduction="sum") / len(batch.x)
        self.optimize(loss, self.optimizers["adam"])
        return {"loss": loss.detach()}

    def reconstruct(self, x, y=None):
        logits = self.decoder(self.encoder(x.flatten(1)))
        return torch.sigmoid(logits).view(-1, *self.data.image_shape)


@genbench.hookimpl
def register_models(register):
    register(LinearAE)
