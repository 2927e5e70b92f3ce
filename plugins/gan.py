"""Generative adversarial network (Goodfellow et al. 2014), dense or DCGAN-style.

Both optimizer steps happen inside train_step, so the harness's loop is the same as
for every other model. The non-saturating generator loss, all from discriminator logits;
Adam with beta1 0.5, the generator at lr 1.5e-3 and the discriminator at 2e-4: the
learning rates genbench's search chose (suites/fashion_tuned.yaml) and
suites/gan_defaults.yaml confirmed at four times the budget (FID 213 -> 112).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

import genbench
from genbench import Capability, option
from genbench.api import halvings


@dataclasses.dataclass(frozen=True)
class GANOptions:
    latent_dim: int = option(64, "size of the generator's input noise", min=1)
    architecture: Literal["dense", "dcgan"] = option(
        "dense", "dense: MLP pair 256-512; dcgan: transposed-conv generator, conv discriminator, one stride-2 "
        "layer per genbench.api.halvings of the image (2 at 28x28, 3 at 32x32, 4 at 64x64)")
    prior: Literal["normal", "uniform"] = option("normal", "noise distribution: N(0, I) or U(-1, 1)")
    hidden_dim: int = option(256, "width of the first dense layer (dense) or base channels x4 (dcgan)", min=1)
    lr: float = option(1.5e-3, "Adam learning rate of the generator", min=0)
    d_lr: Optional[float] = option(2e-4, "Adam learning rate of the discriminator (null: the same as lr)", min=0)
    beta1: float = option(0.5, "Adam beta1 of both networks", min=0, max=1)
    output: Literal["sigmoid", "tanh"] = option(
        "sigmoid", "generator output: sigmoid in [0, 1] (the data's range), or tanh in [-1, 1] with the "
        "discriminator seeing the data scaled to [-1, 1] too")
    d_dropout: float = option(0.0, "dropout after each hidden layer of the dense discriminator", min=0, max=0.9)
    spectral_norm: bool = option(False, "spectral normalisation of the discriminator's weight layers "
                                 "(Miyato et al. 2018)")


def dense_pair(z: int, d: int, h: int, dropout: float = 0.0) -> tuple[nn.Module, nn.Module]:
    generator = nn.Sequential(
        nn.Linear(z, h), nn.LeakyReLU(0.2), nn.Linear(h, 2 * h), nn.LeakyReLU(0.2), nn.Linear(2 * h, d))
    drop = [nn.Dropout(dropout)] if dropout else []
    discriminator = nn.Sequential(
        nn.Flatten(), nn.Linear(d, 2 * h), nn.LeakyReLU(0.2), *drop, nn.Linear(2 * h, h), nn.LeakyReLU(0.2), *drop,
        nn.Linear(h, 1))
    return generator, discriminator


def with_spectral_norm(net: nn.Module) -> nn.Module:
    for name, layer in list(net.named_children()):
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            setattr(net, name, nn.utils.parametrizations.spectral_norm(layer))
    return net


def dcgan_pair(z: int, shape: tuple[int, int, int], h: int) -> tuple[nn.Module, nn.Module]:
    """A DCGAN pair whose depth follows the image: one stride-2 layer per ``halvings`` (2 at
    28x28, 3 at 32x32, 4 at 64x64), widths hidden_dim/4 at full size, doubling per halving."""
    c, height, width = shape
    levels = halvings(height, width)
    widths = [max(1, h // 4) * 2 ** i for i in range(levels)]  # e.g. 64, 128 for hidden_dim 256 at 28x28
    small = (height >> levels, width >> levels)
    # Layers are made in the order they run, so a seed gives the networks it gave before.
    up = [nn.Linear(z, widths[-1] * small[0] * small[1]), nn.Unflatten(1, (widths[-1], *small)),
          nn.BatchNorm2d(widths[-1]), nn.ReLU()]
    for a, b in zip(widths[::-1], widths[-2::-1]):
        up += [nn.ConvTranspose2d(a, b, 4, 2, 1), nn.BatchNorm2d(b), nn.ReLU()]
    generator = nn.Sequential(*up, nn.ConvTranspose2d(widths[0], c, 4, 2, 1), nn.Flatten())
    down = [nn.Conv2d(c, widths[0], 4, 2, 1), nn.LeakyReLU(0.2)]
    for a, b in zip(widths, widths[1:]):
        down += [nn.Conv2d(a, b, 4, 2, 1), nn.BatchNorm2d(b), nn.LeakyReLU(0.2)]
    discriminator = nn.Sequential(*down, nn.Flatten(), nn.Linear(widths[-1] * small[0] * small[1], 1))
    return generator, discriminator


class GAN(genbench.Model):
    name = "gan"
    description = "GAN with non-saturating loss; dense or DCGAN pair; normal or uniform prior"
    Options = GANOptions
    capabilities = frozenset({Capability.SAMPLE})

    @classmethod
    def unsupported_shape(cls, options, image_shape):
        if options.architecture == "dcgan" and halvings(*image_shape[1:]) == 0:
            return "architecture dcgan halves the image at least once: height and width must be even and at " \
                   "least 8 (or use architecture: dense)"
        return None

    def __init__(self, options: GANOptions, data: genbench.DataInfo):
        super().__init__(options, data)
        if options.architecture == "dense":
            self.generator, self.discriminator = dense_pair(options.latent_dim, data.num_pixels, options.hidden_dim,
                                                            options.d_dropout)
        else:
            self.generator, self.discriminator = dcgan_pair(options.latent_dim, data.image_shape, options.hidden_dim)
        if options.spectral_norm:
            with_spectral_norm(self.discriminator)

    def configure_optimizers(self):
        def adam(net, lr):
            return torch.optim.Adam(net.parameters(), lr=lr, betas=(self.options.beta1, 0.999), fused=self.fused)
        d_lr = self.options.lr if self.options.d_lr is None else self.options.d_lr
        return {"generator": adam(self.generator, self.options.lr), "discriminator": adam(self.discriminator, d_lr)}

    def noise(self, n: int) -> torch.Tensor:
        if self.options.prior == "uniform":
            return torch.rand(n, self.options.latent_dim, device=self.device) * 2 - 1
        return torch.randn(n, self.options.latent_dim, device=self.device)

    def generate_logits(self, n: int) -> torch.Tensor:
        return self.generator(self.noise(n)).view(-1, *self.data.image_shape)

    def generate(self, n: int) -> torch.Tensor:
        """Images in the discriminator's range: [0, 1] for a sigmoid output, [-1, 1] for tanh."""
        out = self.generate_logits(n)
        return torch.tanh(out) if self.options.output == "tanh" else torch.sigmoid(out)

    def train_step(self, batch, step):
        n = len(batch.x)
        ones = torch.ones(n, 1, device=batch.x.device)
        zeros = torch.zeros(n, 1, device=batch.x.device)
        fake = self.generate(n)
        real = batch.x * 2 - 1 if self.options.output == "tanh" else batch.x
        # Discriminator: real -> 1, fake -> 0 (fake detached: no generator gradients).
        d_real = self.discriminator(real)
        d_fake = self.discriminator(fake.detach())
        d_loss = (F.binary_cross_entropy_with_logits(d_real, ones)
                  + F.binary_cross_entropy_with_logits(d_fake, zeros))
        d_opt, g_opt = self.optimizers["discriminator"], self.optimizers["generator"]
        self.optimize(d_loss, d_opt)
        # Generator, non-saturating: maximise log D(G(z)).
        g_loss = F.binary_cross_entropy_with_logits(self.discriminator(fake), ones)
        self.optimize(g_loss, g_opt)
        return {"loss": d_loss.detach(), "g_loss": g_loss.detach(),
                "d_real": torch.sigmoid(d_real).mean().detach(), "d_fake": torch.sigmoid(d_fake).mean().detach()}

    def sample(self, n, labels=None):
        images = self.generate(n)
        return (images + 1) / 2 if self.options.output == "tanh" else images


@genbench.hookimpl
def register_models(register):
    register(GAN)
