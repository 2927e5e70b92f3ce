"""Sample-quality scores through torch-fidelity, on features computed once.

The harness extracts features itself (so the real split's features are computed once
per suite) and hands them to torch-fidelity's FID; KID and precision/recall are computed
here, faster, and tested equal to torch-fidelity's own functions. The domain extractors
are also registered with torch-fidelity (``register_feature_extractor``), so
``torch_fidelity.calculate_metrics(..., feature_extractor="genbench-mnist_v2")`` gives
the same numbers outside genbench.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._torchvision_compat import ensure_torchvision
from ..errors import UserError
from . import extractor as ext

INCEPTION_HELP = ("Inception FID needs a local weights file: download "
                  "pt_inception-2015-12-05-6726825d.pth from https://github.com/toshas/torch-fidelity/releases "
                  "on a machine with internet and set evaluation.feature_extractor_weights_path; "
                  "genbench never downloads it")


def torch_fidelity():
    ensure_torchvision()  # torch-fidelity imports torchvision
    import torch_fidelity

    return torch_fidelity


def register(spec: ext.ExtractorSpec) -> str:
    """Register a domain extractor with torch-fidelity (once); return its name there."""
    tf = torch_fidelity()
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if spec.name in FEATURE_EXTRACTORS_REGISTRY:
        return spec.name

    class DomainExtractor(FeatureExtractorBase):
        """torch-fidelity's view of a genbench domain extractor (uint8 images in)."""

        def __init__(self, name, features_list, **kwargs):
            super().__init__(name, features_list)
            self.net = ext.load(spec)

        @staticmethod
        def get_provided_features_list():
            return ("features", "logits")

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return "features"

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, spec.in_channels, 28, 28, dtype=torch.uint8)

        def forward(self, x):
            x = x.float() / 255
            if x.shape[1] != spec.in_channels:  # torch-fidelity's RGB conversions
                x = x.mean(dim=1, keepdim=True)
            f = ext.features(self.net, x.to(next(self.net.parameters()).device))
            out = {"features": f, "logits": self.net.head(f)}
            return tuple(out[name] for name in self.features_list)

    tf.register_feature_extractor(spec.name, DomainExtractor)
    return spec.name


def features(ctx, images: Tensor) -> tuple[Tensor, Tensor | None]:
    """(features, logits or None) of float images in [0, 1] with the suite's extractor."""
    if ctx.options.feature_extractor == "inception":
        return _inception(ctx, images), None
    spec = ctx.data.extractor
    if spec is None:
        raise UserError(f"data set '{ctx.data.info.name}' ships no feature extractor; use "
                        f"evaluation.feature_extractor: inception")
    net = ext.load(spec, images.device)
    register(spec)
    ctx.details["feature_extractor"] = {"name": spec.name, "sha256": spec.sha256}
    # On a CPU small batches keep the activations in cache: 10,000 images in batches of
    # 256 take 0.7 s, in batches of 1,000 3.1 s (v2 extractor, 2 cores).
    return ext.extract(net, images, ctx.batch_size if images.device.type == "cuda" else 256)


def _inception(ctx, images: Tensor) -> Tensor:
    path = ctx.options.feature_extractor_weights_path
    if not path:
        raise UserError(INCEPTION_HELP)
    torch_fidelity()
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=path)
    net = net.eval().to(images.device)
    ctx.details["feature_extractor"] = {"name": "inception-v3-compat", "weights": str(path),
                                        "sha256": ext.file_sha256(path)}
    out = []
    for start in range(0, len(images), 100):
        rgb = (images[start:start + 100] * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
        out.append(net(rgb)[0].float().cpu())
    return torch.cat(out)


def fid_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """(mean, covariance) of features in float64, as torch-fidelity computes them."""
    torch_fidelity()
    from torch_fidelity.metric_fid import fid_features_to_statistics

    stats = fid_features_to_statistics(features.double().cpu())
    return torch.from_numpy(stats["mu"]), torch.from_numpy(np.asarray(stats["sigma"]))


def fid(real: Tensor, fake: Tensor, real_stats: tuple[Tensor, Tensor] | None = None) -> float:
    """torch-fidelity's FID; ``real_stats`` (:func:`fid_statistics` of ``real``) may be cached."""
    torch_fidelity()
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    stats = [fid_statistics(real) if real_stats is None else real_stats, fid_statistics(fake)]
    mu_sigma = [{"mu": m.cpu().numpy(), "sigma": s.cpu().numpy()} for m, s in stats]
    return fid_statistics_to_metric(mu_sigma[0], mu_sigma[1], verbose=False)["frechet_inception_distance"]


def kid_subsets(n_fake: int, n_real: int, size: int, subsets: int, seed: int = 2020) -> list[tuple[Tensor, Tensor]]:
    """The (fake, real) row indices of each KID subset: torch-fidelity's own draws
    (``np.random.RandomState(seed).choice(n, size, replace=False)``, fake then real)."""
    rng = np.random.RandomState(seed)
    return [(torch.from_numpy(rng.choice(n_fake, size, replace=False)),
             torch.from_numpy(rng.choice(n_real, size, replace=False))) for _ in range(subsets)]


def _poly_kernel_sum(a: Tensor, b: Tensor | None = None) -> Tensor:
    """Sum of the cubic polynomial kernel (a.b / d + 1)^3 over all pairs; over the pairs
    of distinct rows when ``b`` is None (a with itself)."""
    # a.b / d + 1 in one pass (addmm); the same values as a matmul, a scaling and an add
    k = torch.addmm(torch.ones((), dtype=a.dtype, device=a.device), a, (a if b is None else b).T,
                    alpha=1.0 / a.shape[1]).pow_(3)
    # rows summed in float32, the row sums in float64: within 1e-8 of an all-float64 sum
    # at a tenth of its time (the float64 copy of k was a fifth of KID's time)
    total = k.sum(dim=1).sum(dtype=torch.float64)
    return total - k.diagonal().sum(dtype=torch.float64) if b is None else total


def kid_real_terms(real: Tensor, subsets: list[tuple[Tensor, Tensor]]) -> Tensor:
    """Each subset's real-real kernel sum: the part of KID that depends only on the real
    images, so a suite computes it once for all its runs."""
    return torch.stack([_poly_kernel_sum(real[r.to(real.device)]) for _, r in subsets])


def kid(real: Tensor, fake: Tensor, subset_size: int, subsets: int, seed: int = 2020,
        real_terms: Tensor | None = None) -> tuple[float, float]:
    """KID (Binkowski et al. 2018) as torch-fidelity computes it: the unbiased MMD^2 with
    the cubic polynomial kernel, on the same random subsets; mean and standard deviation
    over the subsets.

    Written here rather than called from torch-fidelity (which the tests check it against)
    because its NumPy version took 2.1 s a run on the CPU against this one's 0.5 s, and
    recomputes the real images' kernel for every run; ``real_terms``
    (:func:`kid_real_terms`) reuses it across a suite's runs.
    """
    m = subset_size
    draws = kid_subsets(len(fake), len(real), m, subsets, seed)
    real_terms = kid_real_terms(real, draws) if real_terms is None else real_terms
    if len(real_terms) != subsets:
        raise ValueError(f"real_terms has {len(real_terms)} subsets' sums, not {subsets}")
    mmds = []
    for (f, r), real_term in zip(draws, real_terms):
        part = fake[f.to(fake.device)]
        mmds.append((_poly_kernel_sum(part) + real_term) / (m * (m - 1))
                    - 2 * _poly_kernel_sum(part, real[r.to(real.device)]) / (m * m))
    mmds = torch.stack(mmds)
    return float(mmds.mean()), float(mmds.std(unbiased=False))


def kid_reference(real: Tensor, fake: Tensor, subset_size: int, subsets: int, seed: int = 2020) -> tuple[float, float]:
    """torch-fidelity's own KID (the reference for :func:`kid`)."""
    torch_fidelity()
    from torch_fidelity.metric_kid import kid_features_to_metric

    out = kid_features_to_metric(fake, real, kid_subsets=subsets, kid_subset_size=subset_size,
                                 kid_degree=3, kid_gamma=None, kid_coef0=1, kid_kernel="poly",
                                 rng_seed=seed, verbose=False)
    return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]


def knn_radii(features: Tensor, k: int, chunk: int = 2048) -> Tensor:
    """Each row's distance to its k-th nearest other row (the row itself excluded)."""
    # topk, not torch-fidelity's kthvalue: the same value, about 10x faster for small k
    return torch.cat([torch.cdist(part, features).topk(k + 1, dim=1, largest=False).values[:, k]
                      for part in features.split(chunk)])


def manifold_precision_recall(real: Tensor, fake: Tensor, k: int, real_radii: Tensor | None = None,
                              chunk: int = 2048) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019), as torch-fidelity computes
    them, from one fake-to-real distance matrix instead of two, and ``real_radii``
    (:func:`knn_radii` of ``real``) computed once per suite instead of per run.

    Written here rather than called from torch-fidelity (which the tests check it against)
    because its version recomputes both k-NN manifolds and both cross distances each call:
    two thirds of a run's evaluation time on the CPU.
    """
    real_radii = knn_radii(real, k, chunk) if real_radii is None else real_radii
    fake_radii = knn_radii(fake, k, chunk)
    inside_real = []  # per fake sample: inside some real image's ball (precision)
    covered = torch.zeros(len(real), dtype=torch.bool, device=real.device)  # per real image (recall)
    for part, radii in zip(fake.split(chunk), fake_radii.split(chunk)):
        dist = torch.cdist(part, real)
        inside_real.append((dist <= real_radii).any(dim=1))
        covered |= (dist <= radii[:, None]).any(dim=0)
    return torch.cat(inside_real).float().mean().item(), covered.float().mean().item()


def density_coverage(real: Tensor, fake: Tensor, k: int, real_radii: Tensor | None = None,
                     chunk: int = 2048) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
    Generative Models"), as their reference code (the ``prdc`` package) computes them.

    Density: the mean, over samples, of how many real images' k-NN balls contain the
    sample, divided by k (about 1 when samples are distributed like the real images; it
    is not capped at 1). Coverage: the share of real images whose k-NN ball contains at
    least one sample. Unlike precision and recall, neither builds a ball around a
    sample, so a few outlying samples cannot inflate them. Strict ``<`` as in ``prdc``.
    """
    real_radii = knn_radii(real, k, chunk) if real_radii is None else real_radii
    inside_total = 0
    covered = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    for part in fake.split(chunk):
        inside = torch.cdist(part, real) < real_radii
        inside_total += int(inside.sum())
        covered |= inside.any(dim=0)
    return inside_total / (k * len(fake)), int(covered.sum()) / len(real)


def precision_recall(real: Tensor, fake: Tensor, neighborhood: int) -> tuple[float, float]:
    """torch-fidelity's own precision and recall (the reference for :func:`manifold_precision_recall`)."""
    torch_fidelity()
    from torch_fidelity.metric_prc import prc_features_to_metric

    out = prc_features_to_metric(fake, real, prc_neighborhood=neighborhood, prc_batch_size=10000,
                                 save_cpu_ram=True, verbose=False)
    return out["precision"], out["recall"]


def nearest_distances(queries: Tensor, reference: Tensor, chunk: int = 512) -> Tensor:
    """Each query row's Euclidean distance to its nearest ``reference`` row."""
    return torch.cat([torch.cdist(part, reference).min(dim=1).values for part in queries.split(chunk)])


def memorization(real_to_train: Tensor, fake_to_train: Tensor, quantile: float) -> tuple[float, float]:
    """The share of samples closer to their nearest training image than the ``quantile``
    of real held-out images are (a nearest-neighbour distance test), and that threshold.

    ``real_to_train`` and ``fake_to_train`` are :func:`nearest_distances` to the training
    images. Held-out real images score ``quantile`` by construction, so a model that
    generalises scores about that; exact or near copies of training images have distance
    0 and all count.
    """
    threshold = float(torch.quantile(real_to_train.double(), quantile))
    return float((fake_to_train.double() < threshold).double().mean()), threshold
