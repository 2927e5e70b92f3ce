"""Dense deterministic autoencoder: 784 -> 256 -> 32 -> 256 -> 784 by default."""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

import genbench
from genbench import Capability, option
from genbench.api.losses import bce_with_logits


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


@dataclasses.dataclass(frozen=True)
class AEOptions:
    hidden_dims: tuple[int, ...] = option((256,), "hidden layer sizes of the encoder "
                                          "(the decoder mirrors them)", min=1)
    latent_dim: int = option(32, "size of the code", min=1)
    loss: Literal["bce", "mse"] = option("bce", "reconstruction loss: Bernoulli cross-entropy "
                                         "from logits, or squared error of the sigmoid output")
    lr: float = option(1e-3, "Adam learning rate", min=0)


class AE(genbench.Model):
    name = "ae"
    description = "dense deterministic autoencoder (reconstructs; no posterior, no sampling)"
    Options = AEOptions
    capabilities = frozenset({Capability.RECONSTRUCT})

    def __init__(self, options: AEOptions, data: genbench.DataInfo):
        super().__init__(options, data)
        sizes = [data.num_pixels, *options.hidden_dims, options.latent_dim]
        self.encoder = mlp(sizes)
        self.decoder = mlp(sizes[::-1])

    def configure_optimizers(self):
        return {"adam": torch.optim.Adam(self.parameters(), lr=self.options.lr, fused=self.fused)}

    def train_step(self, batch, step):
        logits = self.decoder(self.encoder(batch.x.flatten(1)))
        if self.options.loss == "bce":
            loss = bce_with_logits(logits, batch.x).mean()
        else:
            loss = F.mse_loss(torch.sigmoid(logits), batch.x.flatten(1), reduction="sum") / len(batch.x)
        self.optimize(loss, self.optimizers["adam"])
        return {"loss": loss.detach()}

    def reconstruct(self, x, y=None):
        return torch.sigmoid(self.reconstruct_logits(x)).view(-1, *self.data.image_shape)

    def reconstruct_logits(self, x, y=None):
        return self.decoder(self.encoder(x.flatten(1)))


@genbench.hookimpl
def register_models(register):
    register(AE)
