"""Built-in metrics: reconstruction, posterior, samples, and conditional generation.

Units are per image (summed over pixels) unless the unit says otherwise; every metric is
tested against a reference implementation or a known value in tests/test_metrics.py.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal, Optional

import torch
import torch.nn.functional as F

import genbench
from genbench.api import Capability, fidelity, option, outputs, to_float
from genbench.api.likelihood import bits_per_dim, gaussian_latent_draw, importance_weighted
from genbench.api.losses import gaussian_kl, gaussian_kl_per_dim

R, P, S, C = Capability.RECONSTRUCT, Capability.POSTERIOR, Capability.SAMPLE, Capability.CONDITIONAL
L = Capability.LIKELIHOOD


# Reconstruction -------------------------------------------------------------------

def reconstruction_bce(ctx):
    logits = ctx.reconstruction_logits
    if logits is not None:  # exact, whatever the decoder's sharpness
        total = F.binary_cross_entropy_with_logits(logits.double(), ctx.images.flatten(1).double(), reduction="sum")
        return float(total) / len(ctx.images), {"from": "logits"}
    # From probabilities: torch clamps log(0) at -100, which overstates a sharp decoder's BCE.
    total = F.binary_cross_entropy(ctx.reconstructions, ctx.images, reduction="sum")
    return float(total) / len(ctx.images), {"from": "probabilities"}


def _per_image_mse(ctx) -> torch.Tensor:
    return (ctx.reconstructions - ctx.images).pow(2).flatten(1).mean(1)


def reconstruction_mse(ctx) -> float:
    return float(_per_image_mse(ctx).mean())


def reconstruction_psnr(ctx) -> float:
    # Mean over images of 10 log10(1 / MSE); a perfect image is capped at 100 dB.
    mse = _per_image_mse(ctx).double().clamp_min(1e-10)
    return float((10 * torch.log10(1.0 / mse)).mean())


def gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter's 1-D kernel (radius int(truncate * sigma + 0.5))."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def _valid_blur_matrix(w: torch.Tensor, n: int) -> torch.Tensor:
    """The (n - k + 1, n) matrix whose product with a length-n signal is its 'valid'
    correlation with the k-tap window ``w``."""
    k = len(w)
    rows = torch.arange(n - k + 1)[:, None]
    cols = torch.arange(n)[None, :]
    offset = cols - rows
    inside = (offset >= 0) & (offset < k)
    return torch.where(inside, w[offset.clamp(0, k - 1)], torch.zeros((), dtype=w.dtype))


def ssim_per_image(a: torch.Tensor, b: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Mean SSIM of each image pair, in batches, in float64.

    Matches ``skimage.metrics.structural_similarity(a, b, data_range=1,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``: scikit-image
    filters with reflect padding and then crops (win_size - 1) // 2 pixels from each
    border before averaging, so only windows that lie inside the image count, which is
    exactly a 'valid' convolution with the same separable Gaussian.
    """
    # The separable blur as two batched matrix products (rows, then columns): float64
    # convolutions have no fast kernel on the CPU, matrix products do (about 10x faster).
    w = gaussian_window().to(a.device)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    h, wd = a.shape[-2:]
    rows, cols = _valid_blur_matrix(w, h).to(a.device), _valid_blur_matrix(w, wd).T.contiguous().to(a.device)
    out = []
    for start in range(0, len(a), batch):
        x = a[start:start + batch].double()
        y = b[start:start + batch].double()
        n, ch = x.shape[:2]
        x, y = x.reshape(n * ch, h, wd), y.reshape(n * ch, h, wd)
        ux, uy, xx, yy, xy = rows @ torch.stack([x, y, x * x, y * y, x * y]) @ cols
        vx, vy, vxy = xx - ux * ux, yy - uy * uy, xy - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        out.append(s.flatten(1).mean(1).view(n, ch).mean(1))
    return torch.cat(out)


def reconstruction_ssim(ctx) -> float:
    return float(ssim_per_image(ctx.reconstructions, ctx.images).mean())


# Posterior ------------------------------------------------------------------------

def posterior_kl(ctx):
    mean, logvar = ctx.posterior
    per_dim = gaussian_kl_per_dim(mean, logvar)
    return float(per_dim.sum(1).mean()), {"per_dim": [round(float(v), 4) for v in per_dim.mean(0)]}


def active_units(ctx):
    # Burda et al. (2016): a dimension is active if Var_x(E_q[z_d | x]) > 0.01.
    mean, _ = ctx.posterior
    variance = mean.double().var(dim=0)
    return int((variance > 0.01).sum()), {"variance": [round(float(v), 4) for v in variance]}


def _log_px_given_z(ctx, z, x, y):
    own = getattr(ctx.model, "decoder_log_prob", None)
    if callable(own):  # the model's own decoder (e.g. a discretized logistic)
        return outputs.tensor(ctx.model, "decoder_log_prob", own(x, z, y),
                              (len(x),), ctx.device, unit_range=False)
    return -F.binary_cross_entropy_with_logits(ctx.decode_logits(z, y), x.flatten(1), reduction="none").sum(1)


def _elbo_terms(ctx) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: log p(x|z) at one z ~ q(z|x), and KL(q || p) in closed form."""
    def compute():
        mean, logvar = ctx.posterior
        gen = torch.Generator(device=mean.device).manual_seed(0)
        z = mean + torch.randn(mean.shape, generator=gen, device=mean.device) * (0.5 * logvar).exp()
        y = ctx.labels if ctx.conditional else None
        b = ctx.batch_size
        rec = torch.cat([_log_px_given_z(ctx, z[i:i + b], ctx.images[i:i + b], None if y is None else y[i:i + b])
                         for i in range(0, len(z), b)])
        return rec.double(), gaussian_kl(mean, logvar).double()
    return ctx.shared("elbo_terms", compute)


def elbo(ctx):
    """E_q[log p(x|z)] - KL(q || p) with one z per image (nats/image; higher is better)."""
    rec, kl = _elbo_terms(ctx)
    return float((rec - kl).mean()), {"images": len(rec)}


def bce_sampled(ctx):
    """The ELBO's reconstruction term -E_q[log p(x|z)], one sampled z per image (the same z as
    ``elbo``): what VAE papers and notebooks usually report as the VAE's "BCE"."""
    rec, _ = _elbo_terms(ctx)
    return float(-rec.mean()), {"images": len(rec)}


@dataclasses.dataclass(frozen=True)
class IWOptions:
    samples: int = option(50, "importance samples per image", min=1)
    images: Optional[int] = option(None, "evaluation images scored (the first N); all when unset, the "
                                   "images elbo scores", min=1)


def iw_log_likelihood(ctx, options: IWOptions):
    """log p(x) >= log 1/k sum_k p(x, z_k) / q(z_k | x) (Burda et al. 2016), nats/image.

    The details give the mean of the k single-sample ELBOs on the same images and z, so
    the gap between the two bounds is measured on one set of images.
    """
    k = options.samples
    n = len(ctx.images) if options.images is None else min(options.images, len(ctx.images))
    mean, logvar = (t[:n] for t in ctx.posterior)
    images = ctx.images[:n]  # every slice below must stop at n, not at the evaluation set's end
    y = ctx.labels[:n] if ctx.conditional else None
    gen = torch.Generator(device=mean.device).manual_seed(0)
    log_w = torch.empty(k, n, dtype=torch.float64, device=mean.device)
    b = ctx.batch_size
    for j in range(k):
        eps = torch.randn(mean.shape, generator=gen, device=mean.device)
        for i in range(0, n, b):
            z, log_prior, log_q = gaussian_latent_draw(mean[i:i + b], logvar[i:i + b], eps[i:i + b])
            log_px = _log_px_given_z(ctx, z, images[i:i + b], None if y is None else y[i:i + b])
            log_w[j, i:i + b] = log_px + log_prior - log_q
    return float(importance_weighted(log_w).mean()), {"images": n, "samples": k, "elbo_same_images": float(log_w.mean())}


# Likelihood ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LikelihoodOptions:
    images: Optional[int] = option(None, "evaluation images scored (the first N); all when unset", min=1)


def _nll(ctx, options: LikelihoodOptions):
    """-log P(x) per image (float64), and the details both nll and bpd record."""
    spec = ctx.model.likelihood
    if spec is None or spec.convention != "discrete_8bit":
        raise ValueError(f"this column is discrete_8bit; the model declares {getattr(spec, 'convention', None)!r}")
    nll = -ctx.log_likelihood(options.images)
    details = {"convention": spec.convention, "exact": spec.exact, "method": spec.method, "images": len(nll),
               "sem": float(nll.std() / math.sqrt(len(nll))) if len(nll) > 1 else 0.0}
    if not spec.exact:  # -log P is at most the value shown
        details["bound"] = "upper"
    return nll, details


def negative_log_likelihood(ctx, options: LikelihoodOptions):
    nll, details = _nll(ctx, options)
    return float(nll.mean()), details


def bits_per_dimension(ctx, options: LikelihoodOptions):
    nll, details = _nll(ctx, options)
    dims = ctx.data.info.num_pixels
    details["sem"] = bits_per_dim(details["sem"], dims)
    return float(bits_per_dim(nll.mean(), dims)), {**details, "dims": dims}


# Samples ---------------------------------------------------------------------------

def fid(ctx) -> float:
    real = ctx.real_features[0]
    stats = ctx.cached(("fid_statistics", ctx.options.feature_extractor, len(real)),
                       lambda: fidelity.fid_statistics(real))
    return fidelity.fid(real, ctx.sample_features[0], stats)


@dataclasses.dataclass(frozen=True)
class KIDOptions:
    subset_size: int = option(1000, "images per subset (at most evaluation.num_samples and the evaluation "
                              "images)", min=2)
    subsets: int = option(100, "random subsets averaged", min=1)


def kid(ctx, options: KIDOptions):
    real, fake = ctx.real_features[0], ctx.sample_features[0]
    # The full evaluation is checked up front; curves during training use fewer images.
    size = min(options.subset_size, len(real), len(fake))
    key = ("kid_real_terms", ctx.options.feature_extractor, len(real), len(fake), size, options.subsets)
    draws = lambda: fidelity.kid_subsets(len(fake), len(real), size, options.subsets)  # noqa: E731
    real_terms = ctx.cached(key, lambda: fidelity.kid_real_terms(real, draws()))
    mean, spread = fidelity.kid(real, fake, size, options.subsets, real_terms=real_terms)
    # The spread of the subset estimates, and the standard error of their mean (the
    # subsets overlap, so the SEM understates the error of KID itself).
    return mean, {"subset_spread": spread, "sem": spread / math.sqrt(options.subsets), "subset_size": size,
                  "subsets": options.subsets}


def check_kid(setup) -> list[str]:
    size = setup.options.subset_size
    return [f"subset_size {size} is more than the {count} {what}; lower subset_size or use more images"
            for count, what in ((setup.evaluation.num_samples, "samples (evaluation.num_samples)"),
                                (setup.eval_images, "evaluation images")) if size > count]


@dataclasses.dataclass(frozen=True)
class ManifoldOptions:
    k: int = option(3, "k of the k-nearest-neighbour manifolds (Kynkaanniemi et al. 2019)", min=1)


def _knn_pair(ctx, compute, k: int) -> tuple[float, float]:
    """``compute(real, fake, k, real_radii)``, once per run for a pair of metrics with the
    same k (precision and recall, density and coverage); the real images' k-NN radii
    serve every run of the suite."""
    real = ctx.real_features[0]
    radii = ctx.cached(("knn_radii", ctx.options.feature_extractor, k), lambda: fidelity.knn_radii(real, k))
    return ctx.shared((compute.__name__, k), lambda: compute(real, ctx.sample_features[0], k, radii))


def precision(ctx, options: ManifoldOptions) -> float:
    return _knn_pair(ctx, fidelity.manifold_precision_recall, options.k)[0]


def recall(ctx, options: ManifoldOptions) -> float:
    return _knn_pair(ctx, fidelity.manifold_precision_recall, options.k)[1]


@dataclasses.dataclass(frozen=True)
class DensityOptions:
    k: int = option(5, "k of the real images' k-nearest-neighbour balls (Naeem et al. 2020 use 5)", min=1)


def density(ctx, options: DensityOptions) -> float:
    return _knn_pair(ctx, fidelity.density_coverage, options.k)[0]


def coverage(ctx, options: DensityOptions) -> float:
    return _knn_pair(ctx, fidelity.density_coverage, options.k)[1]


@dataclasses.dataclass(frozen=True)
class MemorizationOptions:
    quantile: float = option(0.05, "a sample counts when it is closer to a training image than this share "
                             "of held-out real images are; such images themselves score this share",
                             min=0.001, max=0.5)
    space: Literal["features", "pixels"] = option("features", "where distances are measured: the feature "
                                                  "extractor's space or raw pixels")


def _points(space: str, images: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
    return images.flatten(1) if space == "pixels" else features


def memorization(ctx, options: MemorizationOptions):
    """Samples nearer a training image than held-out real images typically are."""
    space, extractor = options.space, ctx.options.feature_extractor

    def train_points():  # once per suite
        train = to_float(ctx.data.train.images)
        return _points(space, train, None if space == "pixels" else fidelity.features(ctx, train)[0])
    train = ctx.cached(("train_points", space, extractor), train_points)
    real = ctx.cached(("real_to_train", space, extractor), lambda: fidelity.nearest_distances(
        _points(space, ctx.images, None if space == "pixels" else ctx.real_features[0]).to(train.device), train))
    fake_points = _points(space, ctx.samples, None if space == "pixels" else ctx.sample_features[0])
    fake = fidelity.nearest_distances(fake_points.to(train.device), train)
    share, threshold = fidelity.memorization(real, fake, options.quantile)
    return share, {"threshold": threshold, "expected_for_unseen_images": options.quantile, "space": space,
                   "median_sample_distance": float(fake.median()), "median_real_distance": float(real.median())}


def check_manifold(setup) -> list[str]:
    n = min(setup.evaluation.num_samples, setup.eval_images)
    return [] if setup.options.k < n else [f"k {setup.options.k} needs more than {n} images on each side"]


# Conditional -----------------------------------------------------------------------

def conditional_accuracy(ctx) -> float:
    """How often the data set's classifier sees the asked class in a conditional sample."""
    logits = ctx.sample_features[1]
    if logits is None:
        raise ValueError("cond_accuracy needs the domain feature extractor (it is a classifier)")
    return float((logits.argmax(1) == ctx.sample_labels.cpu()).double().mean())


def check_classifier(setup) -> list[str]:
    if setup.evaluation.feature_extractor != "domain":
        return ["needs evaluation.feature_extractor: domain (the data set's classifier); Inception's "
                "features are not a classifier of its classes"]
    return []


def check_per_class(setup) -> list[str]:
    per_class = setup.evaluation.num_samples // max(setup.info.num_classes, 1)
    return [] if per_class >= 2 else [f"evaluation.num_samples {setup.evaluation.num_samples} gives fewer "
                                      f"than 2 samples for each of {setup.info.num_classes} classes"]


def fid_per_class(ctx):
    real, fake = ctx.real_features[0], ctx.sample_features[0]
    real_labels, fake_labels = ctx.labels.cpu(), ctx.sample_labels.cpu()
    per_class = [fidelity.fid(real[real_labels == c], fake[fake_labels == c])
                 for c in range(ctx.data.info.num_classes)]
    return sum(per_class) / len(per_class), {"per_class": [round(v, 4) for v in per_class]}


# What each sample metric must respond to (checked by genbench check-metrics on real images).
_DEFECTS = ("gaussian_noise", "blur", "salt_pepper", "uniform_swap")
_COLLAPSE = ("drop_classes", "one_per_class")
DISTANCE_CLAIMS = tuple(genbench.Claim(d) for d in _DEFECTS + _COLLAPSE)
PRECISION_CLAIMS = (*(genbench.Claim(d) for d in _DEFECTS[:3]), genbench.Claim("uniform_swap", bound=0.1),
                    genbench.Claim("drop_classes", "steady", tolerance=0.1))
# Density is not capped at 1 and rewards typical images: a slight blur (sigma 0.5) raises
# it on MNIST (0.88 -> 0.92), so only strong blur is claimed; one class alone moves it by
# up to 0.12 (2,000 samples).
DENSITY_CLAIMS = (genbench.Claim("gaussian_noise"), genbench.Claim("blur", bound=0.1, monotone=False),
                  genbench.Claim("salt_pepper"), genbench.Claim("uniform_swap", bound=0.1),
                  genbench.Claim("drop_classes", "steady", tolerance=0.15))
RECALL_CLAIMS = tuple(genbench.Claim(d) for d in _COLLAPSE)
COVERAGE_CLAIMS = (genbench.Claim("drop_classes", bound=0.3), genbench.Claim("one_per_class", bound=0.1),
                   genbench.Claim("uniform_swap", bound=0.1), genbench.Claim("gaussian_noise"))
MEMORIZATION_CLAIMS = (genbench.Claim("train_copies", bound=0.9),)


@genbench.hookimpl
def register_metrics(register):
    M = genbench.Metric
    register(M("bce", reconstruction_bce, {R}, False, "nats/image",
               "reconstruction binary cross-entropy, summed over pixels; from logits when the model "
               "gives them"))
    register(M("mse", reconstruction_mse, {R}, False, "per pixel", "reconstruction mean squared error"))
    register(M("psnr", reconstruction_psnr, {R}, True, "dB", "reconstruction PSNR, mean over images"))
    register(M("ssim", reconstruction_ssim, {R}, True, "", "structural similarity (Gaussian 11x11, "
               "sigma 1.5), mean over images; equals scikit-image's"))
    register(M("kl", posterior_kl, {P}, False, "nats/image", "KL(q(z|x) || N(0, I)) in closed form; "
               "per dimension in the record"))
    register(M("active_units", active_units, {P}, True, "dims", "latent dimensions with "
               "Var_x(E[z|x]) > 0.01"))
    register(M("elbo", elbo, {R, P}, True, "nats/image", "evidence lower bound on log p(x), one z per image"))
    register(M("bce_sampled", bce_sampled, {R, P}, False, "nats/image", "the ELBO's reconstruction term "
               "-log p(x|z) at one sampled z per image (the same z as elbo)"))
    register(M("iw_ll", iw_log_likelihood, {R, P}, True, "nats/image",
               "importance-weighted log-likelihood bound (options: samples per image, images)",
               Options=IWOptions))
    register(M("nll", negative_log_likelihood, {L}, False, "nats/image",
               "-log P(x) of the 8-bit test images (discrete_8bit convention); an upper bound where the "
               "model gives a bound on log P(x)", Options=LikelihoodOptions))
    register(M("bpd", bits_per_dimension, {L}, False, "bits/dim", "nll / (pixels x ln 2): bits per "
               "dimension of the 8-bit test images; 8 for uniform pixels", Options=LikelihoodOptions))
    register(M("fid", fid, {S}, False, "", "Frechet distance of samples to the evaluation split in "
               "the extractor's feature space", uses_samples=True, claims=DISTANCE_CLAIMS))
    register(M("kid", kid, {S}, False, "", "kernel (MMD^2, cubic polynomial) distance of samples to "
               "the evaluation split", uses_samples=True, Options=KIDOptions, check=check_kid,
               claims=DISTANCE_CLAIMS))
    register(M("precision", precision, {S}, True, "", "share of samples inside the real k-NN manifold",
               uses_samples=True, Options=ManifoldOptions, check=check_manifold, claims=PRECISION_CLAIMS))
    register(M("recall", recall, {S}, True, "", "share of real images inside the samples' k-NN manifold",
               uses_samples=True, Options=ManifoldOptions, check=check_manifold, claims=RECALL_CLAIMS))
    register(M("density", density, {S}, True, "", "real k-NN balls containing a sample, per sample, over k "
               "(about 1 for samples like the data; robust to outliers)", uses_samples=True,
               Options=DensityOptions, check=check_manifold, claims=DENSITY_CLAIMS))
    register(M("coverage", coverage, {S}, True, "", "share of real images whose k-NN ball holds a sample",
               uses_samples=True, Options=DensityOptions, check=check_manifold, claims=COVERAGE_CLAIMS))
    register(M("memorization", memorization, {S}, False, "", "share of samples closer to a training image "
               "than held-out real images are (0.05 for a model that does not copy; 1 for copies)",
               uses_samples=True, Options=MemorizationOptions, claims=MEMORIZATION_CLAIMS))
    register(M("cond_accuracy", conditional_accuracy, {S, C}, True, "",
               "the domain classifier's accuracy on samples of asked classes", uses_samples=True,
               check=check_classifier))
    register(M("fid_per_class", fid_per_class, {S, C}, False, "", "FID within each class, averaged",
               uses_samples=True, check=check_per_class))
