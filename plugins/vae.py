"""Variational autoencoders: dense VAE, beta-VAE, convolutional VAE, conditional VAE.

They share one loss (Kingma & Welling 2014): the decoder's negative log-likelihood plus
beta times the closed-form KL to N(0, I), with an optional linear KL warm-up. The decoder
is a Bernoulli from logits (the classic choice, not a probability of grey pixels) or a
discretized logistic over the 256 pixel values, whose importance-weighted bound is a
bound on log P(x) of the 8-bit image and joins the ``nll``/``bpd`` column.
Subclasses only build networks and say how x (and the label) enter them.
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
from genbench.api.likelihood import discretized_logistic_log_prob, gaussian_latent_draw, importance_weighted
from genbench.api.losses import bce_with_logits, gaussian_kl, reparameterize

_GENERATIVE = frozenset({Capability.RECONSTRUCT, Capability.POSTERIOR, Capability.DECODE, Capability.SAMPLE,
                         Capability.LIKELIHOOD})
MIN_LOG_SCALE = -8.0  # the logistic's scale, in pixel units, stays above 1/3000 (a bin is 1/255)


def decoder_option():
    return option("bernoulli", "p(x|z): 'bernoulli' on grey pixels (no 8-bit likelihood), or 'logistic', a "
                  "discretized logistic over the 256 pixel values (gives nll/bpd)")


def iw_option():
    return option(100, "evaluation only: importance samples per image of log_likelihood's bound", min=1,
                  evaluation=True)


@dataclasses.dataclass(frozen=True)
class VAEOptions:
    hidden_dim: int = option(400, "units in the hidden layer of encoder and decoder", min=1)
    latent_dim: int = option(20, "size of the latent code z", min=1)
    beta: float = option(1.0, "weight of the KL term (a beta-VAE when above 1)", min=0)
    kl_warmup_epochs: float = option(0.0, "epochs over which the KL weight rises linearly "
                                     "from 0 to beta (0: no warm-up)", min=0)
    lr: float = option(1e-3, "Adam learning rate", min=0)
    decoder: Literal["bernoulli", "logistic"] = decoder_option()
    iw_samples: int = iw_option()


@dataclasses.dataclass(frozen=True)
class BetaVAEOptions(VAEOptions):
    beta: float = option(4.0, "weight of the KL term; above 1 favours disentangled codes", min=0)


@dataclasses.dataclass(frozen=True)
class ConvVAEOptions:
    channels: tuple[int, ...] = option((32, 64), "widths of the stride-2 convolutions, from the first; their "
                                       "number follows the image size (genbench.api.halvings: 2 at 28x28, 3 at "
                                       "32x32, 4 at 64x64), deeper levels doubling the last width", min=1)
    latent_dim: int = option(16, "size of the latent code z", min=1)
    beta: float = option(1.0, "weight of the KL term", min=0)
    kl_warmup_epochs: float = option(0.0, "epochs of linear KL warm-up (0: none)", min=0)
    lr: float = option(1e-3, "Adam learning rate", min=0)
    decoder: Literal["bernoulli", "logistic"] = decoder_option()
    iw_samples: int = iw_option()

    def __post_init__(self):
        if not 1 <= len(self.channels) <= 4:
            raise ValueError(f"channels: give one to four widths (one per stride-2 layer, from the first), got "
                             f"{list(self.channels)}")


class GaussianVAE(genbench.Model):
    """Shared training and capabilities; subclasses define the networks."""

    capabilities = _GENERATIVE
    likelihood = genbench.Likelihood(exact=False, method="importance-weighted bound (Burda et al. 2016) with "
                                     "the discretized logistic decoder")

    @property
    def outputs_per_pixel(self) -> int:
        return 2 if self.options.decoder == "logistic" else 1

    def encode(self, x, y):
        """Mean and log-variance of q(z|x[, y])."""
        raise NotImplementedError

    def decoder_output(self, z, y):
        """(N, outputs_per_pixel * C*H*W): the pixel logits, then (logistic) the log-scales."""
        raise NotImplementedError

    def unavailable(self):
        if self.options.decoder == "bernoulli":
            return {Capability.LIKELIHOOD: "decoder 'bernoulli' scores grey pixels as coin-flip probabilities, "
                    "which is no probability of the 8-bit image; set decoder: logistic"}
        return {}

    def decode_logits(self, z, y=None):
        """Logits of the pixel means (N, C*H*W)."""
        return self.decoder_output(z, y)[:, :self.data.num_pixels]

    def decoder_log_prob(self, x, z, y=None):
        """log p(x|z) per image, in nats, under the decoder."""
        out = self.decoder_output(z, y)
        d = self.data.num_pixels
        if self.options.decoder == "bernoulli":
            return -bce_with_logits(out, x)
        mean, log_scale = torch.sigmoid(out[:, :d]), out[:, d:].clamp(min=MIN_LOG_SCALE)
        return discretized_logistic_log_prob(x.flatten(1), mean, log_scale).sum(1)

    def configure_optimizers(self):
        return {"adam": torch.optim.Adam(self.parameters(), lr=self.options.lr, fused=self.fused)}

    def kl_weight(self, epochs: float) -> float:
        warmup = self.options.kl_warmup_epochs
        return self.options.beta * (min(1.0, epochs / warmup) if warmup > 0 else 1.0)

    def train_step(self, batch, step):
        y = batch.y if self.has(Capability.CONDITIONAL) else None
        mean, logvar = self.encode(batch.x, y)
        z = reparameterize(mean, logvar)
        rec = -self.decoder_log_prob(batch.x, z, y).mean()
        kl = gaussian_kl(mean, logvar).mean()
        weight = self.kl_weight(step.epochs)
        reg, extra = self.regularizer(kl, weight, mean, logvar, z)
        loss = rec + reg
        self.optimize(loss, self.optimizers["adam"])
        return {"loss": loss.detach(), "bce" if self.options.decoder == "bernoulli" else "nll_x": rec.detach(),
                "kl": kl.detach(), "kl_weight": torch.tensor(weight), **extra}

    def regularizer(self, kl, weight, mean, logvar, z):
        """The loss's latent term and extra values to log: beta (warmed up) times the KL."""
        return weight * kl, {}

    def log_likelihood(self, x, y=None):
        mean, logvar = self.encode(x, y)
        log_w = []
        for _ in range(self.options.iw_samples):
            z, log_prior, log_q = gaussian_latent_draw(mean, logvar, torch.randn_like(mean))
            log_w.append(self.decoder_log_prob(x, z, y).double() + log_prior.double() - log_q.double())
        return importance_weighted(torch.stack(log_w))

    def posterior(self, x, y=None):
        return self.encode(x, y)

    def decode(self, z, y=None):
        return torch.sigmoid(self.decode_logits(z, y)).view(-1, *self.data.image_shape)

    def reconstruct(self, x, y=None):
        return self.decode(self.encode(x, y)[0], y)

    def reconstruct_logits(self, x, y=None):
        return self.decode_logits(self.encode(x, y)[0], y)

    def sample(self, n, labels=None):
        z = torch.randn(n, self.options.latent_dim, device=self.device)
        return self.decode(z, labels)


class VAE(GaussianVAE):
    name = "vae"
    description = "dense VAE 784 -> hidden -> latent; BCE + beta * KL, optional KL warm-up"
    Options = VAEOptions

    def __init__(self, options: VAEOptions, data: genbench.DataInfo, extra_inputs: int = 0):
        super().__init__(options, data)
        d, h, z = data.num_pixels, options.hidden_dim, options.latent_dim
        self.encoder = nn.Sequential(nn.Linear(d + extra_inputs, h), nn.ReLU())
        self.to_mean = nn.Linear(h, z)
        self.to_logvar = nn.Linear(h, z)
        self.decoder = nn.Sequential(nn.Linear(z + extra_inputs, h), nn.ReLU(),
                                     nn.Linear(h, d * self.outputs_per_pixel))

    def encode(self, x, y=None):
        h = self.encoder(x.flatten(1))
        return self.to_mean(h), self.to_logvar(h)

    def decoder_output(self, z, y=None):
        return self.decoder(z)


class BetaVAE(VAE):
    name = "beta_vae"
    description = "the dense VAE with beta > 1 (default 4) on the KL term"
    Options = BetaVAEOptions


@dataclasses.dataclass(frozen=True)
class BetaTCVAEOptions(VAEOptions):
    beta: float = option(6.0, "weight of the total correlation of q(z); the rest of the KL keeps weight 1", min=0)


def total_correlation(z, mean, logvar):
    """Minibatch-weighted estimate of TC(q(z)) = KL(q(z) || prod_j q(z_j)) (Chen et al.
    2018), up to a constant: log q(z_i) and log q_j(z_ij) from the batch's posteriors."""
    log_q = -0.5 * (math.log(2 * math.pi) + logvar[None] + (z[:, None] - mean[None]).pow(2) / logvar[None].exp())
    joint = torch.logsumexp(log_q.sum(2), dim=1)           # log sum_k q(z_i | x_k)
    marginals = torch.logsumexp(log_q, dim=1).sum(1)      # sum_j log sum_k q(z_ij | x_k)
    return (joint - marginals).mean()


class BetaTCVAE(VAE):
    name = "beta_tc_vae"
    description = "beta-TC-VAE: the dense VAE with beta on the total correlation of q(z) only"
    Options = BetaTCVAEOptions

    def regularizer(self, kl, weight, mean, logvar, z):
        tc = total_correlation(z, mean, logvar)
        scale = weight / self.options.beta if self.options.beta else 1.0  # the warm-up, if any
        return scale * (kl + (self.options.beta - 1) * tc), {"tc": tc.detach()}


class CVAE(VAE):
    name = "cvae"
    description = "conditional dense VAE: encoder and decoder see the one-hot class label"
    capabilities = _GENERATIVE | {Capability.CONDITIONAL}

    def __init__(self, options: VAEOptions, data: genbench.DataInfo):
        super().__init__(options, data, extra_inputs=data.num_classes)

    def _onehot(self, y):
        if y is None:
            raise ValueError("cvae needs the class labels")
        return F.one_hot(y, self.data.num_classes).to(torch.float32)

    def encode(self, x, y=None):
        h = self.encoder(torch.cat([x.flatten(1), self._onehot(y)], dim=1))
        return self.to_mean(h), self.to_logvar(h)

    def decoder_output(self, z, y=None):
        return self.decoder(torch.cat([z, self._onehot(y)], dim=1))

    def sample(self, n, labels=None):
        if labels is None:  # every class equally often, like the test split
            labels = torch.arange(n, device=self.device) % self.data.num_classes
        return super().sample(n, labels.to(self.device))


class ConvVAE(GaussianVAE):
    name = "conv_vae"
    description = "convolutional VAE: two stride-2 convolutions, mirrored transposed decoder"
    Options = ConvVAEOptions

    @classmethod
    def unsupported_shape(cls, options, image_shape):
        if halvings(*image_shape[1:]) == 0:
            return "it halves the image at least once: height and width must be even and at least 8"
        return None

    def __init__(self, options: ConvVAEOptions, data: genbench.DataInfo):
        super().__init__(options, data)
        c, h, w = data.image_shape
        levels = halvings(h, w)
        if levels == 0:
            raise ValueError(self.unsupported_shape(options, data.image_shape))
        widths = list(options.channels[:levels])
        widths += [widths[-1] * 2 ** (i + 1) for i in range(levels - len(widths))]
        self.feature_shape = (widths[-1], h >> levels, w >> levels)
        flat = widths[-1] * (h >> levels) * (w >> levels)
        down = []
        for a, b in zip([c, *widths], widths):
            down += [nn.Conv2d(a, b, 4, 2, 1), nn.ReLU()]
        self.encoder = nn.Sequential(*down, nn.Flatten())
        self.to_mean = nn.Linear(flat, options.latent_dim)
        self.to_logvar = nn.Linear(flat, options.latent_dim)
        self.from_z = nn.Sequential(nn.Linear(options.latent_dim, flat), nn.ReLU())
        up = []
        for a, b in zip(widths[::-1], [*widths[-2::-1], c * self.outputs_per_pixel]):
            up += [nn.ConvTranspose2d(a, b, 4, 2, 1), nn.ReLU()]
        self.decoder = nn.Sequential(*up[:-1])  # no activation after the last: logits

    def encode(self, x, y=None):
        h = self.encoder(x)
        return self.to_mean(h), self.to_logvar(h)

    def decoder_output(self, z, y=None):
        return self.decoder(self.from_z(z).view(-1, *self.feature_shape)).flatten(1)


@genbench.hookimpl
def register_models(register):
    for cls in (VAE, BetaVAE, BetaTCVAE, ConvVAE, CVAE):
        register(cls)
