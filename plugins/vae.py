"""Dense variational autoencoder (Kingma & Welling 2014): 784 -> hidden -> latent."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

import genbench
from genbench import Capability, option
from genbench.losses import bce_with_logits, gaussian_kl, reparameterize


@dataclasses.dataclass(frozen=True)
class VAEOptions:
    hidden_dim: int = option(400, "units in the hidden layer of encoder and decoder", min=1)
    latent_dim: int = option(20, "size of the latent code z", min=1)
    beta: float = option(1.0, "weight of the KL term (a beta-VAE when above 1)", min=0)
    kl_warmup_epochs: float = option(0.0, "epochs over which the KL weight rises linearly "
                                     "from 0 to beta (0: no warm-up)", min=0)
    lr: float = option(1e-3, "Adam learning rate", min=0)


class VAE(genbench.Model):
    name = "vae"
    description = "dense VAE: BCE + beta * KL, optional linear KL warm-up"
    Options = VAEOptions
    capabilities = frozenset({Capability.RECONSTRUCT, Capability.POSTERIOR, Capability.SAMPLE})

    def __init__(self, options: VAEOptions, data: genbench.DataInfo):
        super().__init__(options, data)
        d, h, z = data.num_pixels, options.hidden_dim, options.latent_dim
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, h), nn.ReLU())
        self.to_mean = nn.Linear(h, z)
        self.to_logvar = nn.Linear(h, z)
        self.decoder = nn.Sequential(nn.Linear(z, h), nn.ReLU(), nn.Linear(h, d))

    def configure_optimizers(self):
        return {"adam": torch.optim.Adam(self.parameters(), lr=self.options.lr)}

    def kl_weight(self, epochs: float) -> float:
        warmup = self.options.kl_warmup_epochs
        return self.options.beta * (min(1.0, epochs / warmup) if warmup > 0 else 1.0)

    def train_step(self, batch, step):
        mean, logvar = self.posterior(batch.x)
        logits = self.decoder(reparameterize(mean, logvar))
        bce = bce_with_logits(logits, batch.x).mean()
        kl = gaussian_kl(mean, logvar).mean()
        weight = self.kl_weight(step.epochs)
        loss = bce + weight * kl
        opt = self.optimizers["adam"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.detach(), "bce": bce.detach(), "kl": kl.detach(),
                "kl_weight": torch.tensor(weight)}

    def posterior(self, x, y=None):
        h = self.encoder(x)
        return self.to_mean(h), self.to_logvar(h)

    def decode(self, z, y=None):
        return torch.sigmoid(self.decoder(z)).view(-1, *self.data.image_shape)

    def reconstruct(self, x, y=None):
        return self.decode(self.posterior(x)[0])

    def sample(self, n, labels=None):
        return self.decode(torch.randn(n, self.options.latent_dim, device=self.device))


@genbench.hookimpl
def register_models(register):
    register(VAE)
