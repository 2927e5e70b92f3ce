"""Every metric against a reference implementation or a known value, on real images."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

import genbench
from genbench.api import Capability
from genbench.api import extractor as ext
from genbench.api import fidelity
from genbench.api.dataset import to_float
from genbench.api.metric import EvalContext, EvalOptions
from genbench.engine.config import DatasetConfig, load_suite
from genbench.engine.data import prepare
from genbench.engine.evaluate import evaluate
from genbench.plugins import metrics as builtin
from genbench.plugins.datasets import MNIST, FashionMNIST


@pytest.fixture(scope="module")
def mnist(registry):
    return prepare(registry.datasets["mnist"](), DatasetConfig(name="mnist", subset=4000, test_subset=4000),
                   torch.device("cpu"), download=False)


def blur(x: torch.Tensor) -> torch.Tensor:
    w = torch.ones(1, 1, 3, 3) / 9
    return F.conv2d(x, w, padding=1)


# SSIM ---------------------------------------------------------------------------------

def skimage_ssim(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return np.array([structural_similarity(x.double().numpy(), y.double().numpy(), data_range=1, channel_axis=0,
                                           gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
                     for x, y in zip(a, b)])


def test_ssim_matches_scikit_image_on_real_images(mnist):
    x = to_float(mnist.eval.images[:300])
    noisy = (x + 0.2 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    for other in (blur(x), noisy, to_float(mnist.eval.images[300:600])):
        ours = builtin.ssim_per_image(other, x).numpy()
        assert np.abs(ours - skimage_ssim(other, x)).max() < 1e-12


def test_ssim_matches_scikit_image_on_colour_non_square_images_in_small_batches():
    g = torch.Generator().manual_seed(2)
    x = torch.rand(7, 3, 40, 33, generator=g)
    y = (x + 0.3 * torch.rand(x.shape, generator=g)).clamp(0, 1)
    ours = builtin.ssim_per_image(y, x, batch=3).numpy()
    assert np.abs(ours - skimage_ssim(y, x)).max() < 1e-12 and ours.min() < 0.99


def test_ssim_edge_cases():
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(builtin.ssim_per_image(x, x), torch.ones(4, dtype=torch.float64))
    flat_a, flat_b = torch.full((2, 1, 28, 28), 0.2), torch.full((2, 1, 28, 28), 0.8)
    assert torch.allclose(builtin.ssim_per_image(flat_a, flat_a), torch.ones(2, dtype=torch.float64))
    ours = builtin.ssim_per_image(flat_a, flat_b).numpy()
    assert np.abs(ours - skimage_ssim(flat_a, flat_b)).max() < 1e-4
    assert ours[0] == pytest.approx((2 * 0.16 + 1e-4) / (0.04 + 0.64 + 1e-4))


# Reconstruction metrics through a model with a known output -----------------------------

class Shifted(genbench.Model):
    """Reconstructs every image as itself plus a constant: known MSE and PSNR."""

    name = "shifted"
    capabilities = frozenset({Capability.RECONSTRUCT})
    offset = 0.1

    def train_step(self, batch, step):  # pragma: no cover
        raise AssertionError

    def reconstruct(self, x, y=None):
        return (x + self.offset).clamp(0, 1)


def test_bce_mse_psnr_against_numpy(registry, mnist):
    model = Shifted(genbench.NoOptions(), mnist.info)
    ctx = EvalContext(model, mnist)
    x = ctx.images.double().numpy()
    r = np.clip(x + 0.1, 0, 1)
    with np.errstate(divide="ignore"):  # log(0) = -inf, clamped at -100 as torch documents
        bce = -(x * np.maximum(np.log(r), -100) + (1 - x) * np.maximum(np.log(1 - r), -100)).sum((1, 2, 3)).mean()
    mse_i = ((r - x) ** 2).mean((1, 2, 3))
    value, details = builtin.reconstruction_bce(ctx)
    assert value == pytest.approx(bce, rel=1e-4) and details == {"from": "probabilities"}
    assert builtin.reconstruction_mse(ctx) == pytest.approx(mse_i.mean(), rel=1e-5)
    assert builtin.reconstruction_psnr(ctx) == pytest.approx((10 * np.log10(1 / mse_i)).mean(), rel=1e-5)


class Sharp(Shifted):
    """A confident decoder: logits of +-20 (p = 1 - 2e-9 rounds to 1.0 in float32)."""

    def reconstruct_logits(self, x, y=None):
        return 20 * (2 * x.flatten(1) - 1).round()

    def reconstruct(self, x, y=None):
        return torch.sigmoid(Sharp.reconstruct_logits(self, x)).view_as(x)


def test_bce_from_logits_is_exact_where_probabilities_overstate_it(mnist):
    ctx = EvalContext(Sharp(genbench.NoOptions(), mnist.info), mnist)
    x = ctx.images.double().flatten(1).numpy()
    logits = 20 * (2 * x - 1).round()
    exact = (np.logaddexp(0, logits) - x * logits).sum(1).mean()  # -log sigmoid terms, stably
    value, details = builtin.reconstruction_bce(ctx)
    assert details == {"from": "logits"} and value == pytest.approx(exact, rel=1e-9)

    class NoLogits(Sharp):
        reconstruct_logits = None

    from_probs, details = builtin.reconstruction_bce(EvalContext(NoLogits(genbench.NoOptions(), mnist.info), mnist))
    assert details == {"from": "probabilities"} and from_probs > value + 5  # log(0) clamped at -100


# Posterior metrics on a trained VAE -------------------------------------------------------

@pytest.fixture(scope="module")
def trained_vae(registry, mnist):
    from genbench.engine.train import train

    torch.manual_seed(0)
    cls = registry.models["vae"]
    model = cls(cls.Options(hidden_dim=200, latent_dim=10), mnist.info)
    model.optimizers = model.configure_optimizers()
    train(model, mnist, {"steps": 300}, 128, seed=0)
    return model.eval()


def test_closed_form_kl_matches_monte_carlo(trained_vae, mnist):
    ctx = EvalContext(trained_vae, mnist)
    with torch.no_grad():
        closed, details = builtin.posterior_kl(ctx)
        mean, logvar = ctx.posterior
        gen = torch.Generator().manual_seed(0)
        std = (0.5 * logvar).exp()
        estimates = []
        for _ in range(400):  # KL = E_q[log q(z|x) - log p(z)]
            eps = torch.randn(mean.shape, generator=gen)
            z = mean + std * eps
            log_q = -0.5 * (eps ** 2 + logvar).sum(1)
            log_p = -0.5 * (z ** 2).sum(1)
            estimates.append((log_q - log_p).mean())
    monte_carlo = float(torch.stack(estimates).mean())
    assert closed == pytest.approx(monte_carlo, rel=0.02)
    assert sum(details["per_dim"]) == pytest.approx(closed, rel=1e-3)
    assert closed > 1.0  # a trained posterior, not the prior


def test_elbo_below_iw_bound_and_active_units(trained_vae, mnist):
    ctx = EvalContext(trained_vae, mnist)
    with torch.no_grad():
        elbo, elbo_details = builtin.elbo(ctx)
        rec, _ = builtin.bce_sampled(ctx)
        kl, _ = builtin.posterior_kl(ctx)
        iw, iw_details = builtin.iw_log_likelihood(ctx, builtin.IWOptions(samples=20))
        one, _ = builtin.iw_log_likelihood(EvalContext(trained_vae, mnist), builtin.IWOptions(samples=1))
        units, details = builtin.active_units(ctx)
    assert elbo < iw < 0  # the importance-weighted bound is tighter (Burda et al. 2016)
    assert elbo_details["images"] == iw_details["images"] == len(mnist.eval)  # the same images by default
    assert iw_details["elbo_same_images"] == pytest.approx(elbo, rel=0.01) and iw_details["elbo_same_images"] < iw
    assert one == pytest.approx(elbo, rel=0.01)  # with k = 1 it is the ELBO again
    assert -rec - kl == pytest.approx(elbo, rel=1e-6) and rec > 0  # elbo = -(sampled-z BCE) - KL (float32 KL)
    mean, _ = ctx.posterior
    assert units == int((mean.double().var(0) > 0.01).sum()) and len(details["variance"]) == 10


# Sample metrics --------------------------------------------------------------------------

def frechet_numpy(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@pytest.fixture(scope="module")
def features(mnist):
    net = ext.load(MNIST.extractor)
    x = to_float(mnist.eval.images)
    train = to_float(mnist.train.images)
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    return {name: ext.extract(net, images)[0] for name, images in
            {"test": x, "train": train, "blurred": blur(blur(x)), "noise": noise}.items()}


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # dead ReLU features: singular
def test_fid_equals_numpy_scipy_frechet(features):
    ours = fidelity.fid(features["test"], features["blurred"])
    assert ours == pytest.approx(frechet_numpy(features["test"].double().numpy(),
                                               features["blurred"].double().numpy()), rel=1e-3)


def test_fid_and_kid_order_train_blurred_noise(features):
    real = features["test"]
    fids = [fidelity.fid(real, features[k]) for k in ("train", "blurred", "noise")]
    kids = [fidelity.kid(real, features[k], 1000, 20)[0] for k in ("train", "blurred", "noise")]
    assert fids[0] < fids[1] < fids[2] and fids[0] < 0.05 * fids[2]
    assert kids[0] < kids[1] < kids[2] and abs(kids[0]) < 0.05 * kids[2]


class Replay(genbench.Model):
    """'Generates' the real test images of each asked class, in order: known answers."""

    name = "replay"
    capabilities = frozenset({Capability.SAMPLE, Capability.CONDITIONAL})
    pool: dict = {}

    def train_step(self, batch, step):  # pragma: no cover
        raise AssertionError

    def sample(self, n, labels=None):
        self.__dict__.setdefault("seen", [0] * 10)
        out = []
        for c in labels.tolist():
            out.append(self.pool[c][self.seen[c]])
            self.seen[c] += 1
        return torch.stack(out)


def test_sample_metrics_on_real_images_used_as_samples(registry, mnist):
    images, labels = to_float(mnist.eval.images), mnist.eval.labels
    Replay.pool = {c: images[labels == c] for c in range(10)}
    model = Replay(genbench.NoOptions(), mnist.info)
    names = ["fid", "kid", "precision", "recall", "cond_accuracy", "fid_per_class"]
    scores, details = evaluate(model, mnist, [registry.metrics[m] for m in names],
                               EvalOptions(num_samples=2000), metric_options={"kid": builtin.KIDOptions(subsets=20)})
    # the samples were the first 200 test images of each class: the classifier's accuracy on them
    first = torch.cat([torch.nonzero(labels == c)[:200, 0] for c in range(10)])
    logits = ext.extract(ext.load(MNIST.extractor), images[first])[1]
    expected_accuracy = (logits.argmax(1) == labels[first]).double().mean()
    assert scores["cond_accuracy"] == pytest.approx(float(expected_accuracy)) and scores["cond_accuracy"] > 0.97
    assert scores["precision"] > 0.9 and scores["recall"] > 0.5
    assert scores["fid"] < 5 and scores["fid_per_class"] < 50
    assert details["feature_extractor"] == {"name": "genbench-mnist_v2", "sha256": MNIST.extractor.sha256}
    assert len(details["fid_per_class"]["per_class"]) == 10


@pytest.mark.parametrize("other, k", [("train", 3), ("blurred", 1), ("blurred", 5), ("noise", 3)])
def test_manifold_precision_recall_equals_torch_fidelitys(features, other, k):
    real, fake = features["test"], features[other][:3000]
    expected = fidelity.precision_recall(real, fake, k)
    # small chunks: the chunked passes must agree with torch-fidelity's whole-matrix ones
    assert fidelity.manifold_precision_recall(real, fake, k, chunk=700) == expected
    radii = fidelity.knn_radii(real, k)
    assert fidelity.manifold_precision_recall(real, fake, k, real_radii=radii) == expected
    assert 0 <= expected[0] <= 1 and 0 <= expected[1] <= 1


@pytest.mark.parametrize("other, size, subsets, seed", [("train", 1000, 5, 2020), ("blurred", 300, 7, 1),
                                                       ("noise", 50, 11, 2020)])
def test_kid_equals_torch_fidelitys(features, other, size, subsets, seed):
    real, fake = features["test"], features[other][:3000]  # unequal counts: the draws must follow
    expected = fidelity.kid_reference(real, fake, size, subsets, seed)
    assert fidelity.kid(real, fake, size, subsets, seed) == pytest.approx(expected, rel=1e-5)
    terms = fidelity.kid_real_terms(real, fidelity.kid_subsets(len(fake), len(real), size, subsets, seed))
    assert fidelity.kid(real, fake, size, subsets, seed, real_terms=terms) == pytest.approx(expected, rel=1e-5)
    assert fidelity.kid(real, fake, size, subsets, seed + 1) != pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="subsets' sums"):
        fidelity.kid(real, fake, size, subsets + 1, seed, real_terms=terms)


def test_kid_through_the_registry_reuses_the_real_terms_and_equals_torch_fidelitys(registry, mnist):
    images, labels = to_float(mnist.eval.images), mnist.eval.labels
    Replay.pool = {c: images[labels == c] for c in range(10)}
    options = {"kid": builtin.KIDOptions(subset_size=500, subsets=6)}
    before = {key for key in mnist.cache if "kid_real_terms" in str(key)}
    first, _ = evaluate(Replay(genbench.NoOptions(), mnist.info), mnist, [registry.metrics["kid"]],
                        EvalOptions(num_samples=1000), metric_options=options)
    added = {key for key in mnist.cache if "kid_real_terms" in str(key)} - before
    assert len(added) == 1 and mnist.cache[added.pop()].shape == (6,)
    again, _ = evaluate(Replay(genbench.NoOptions(), mnist.info), mnist, [registry.metrics["kid"]],
                        EvalOptions(num_samples=1000), metric_options=options)
    ctx = EvalContext(Replay(genbench.NoOptions(), mnist.info), mnist, EvalOptions(num_samples=1000))
    with torch.no_grad():
        real, fake = ctx.real_features[0], ctx.sample_features[0]
    expected = fidelity.kid_reference(real, fake, 500, 6)[0]
    # near 0, torch-fidelity's float32 sums of a million kernel values dominate the difference
    assert first["kid"] == again["kid"] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("other, k", [("train", 5), ("blurred", 5), ("blurred", 2), ("noise", 5)])
def test_density_and_coverage_equal_the_reference_codes(features, other, k):
    prdc = pytest.importorskip("prdc")  # Naeem et al.'s own package
    real, fake = features["test"][:4000], features[other][:3000]
    expected = prdc.compute_prdc(real.double().numpy(), fake.double().numpy(), nearest_k=k)
    density, coverage = fidelity.density_coverage(real.double(), fake.double(), k, chunk=700)
    assert density == pytest.approx(expected["density"], rel=1e-12)
    assert coverage == pytest.approx(expected["coverage"], rel=1e-12)


def test_density_and_coverage_through_the_registry_rank_real_blurred_noise(registry, mnist, features):
    images, labels = to_float(mnist.eval.images), mnist.eval.labels
    Replay.pool = {c: images[labels == c] for c in range(10)}
    names = ["density", "coverage"]
    scores, _ = evaluate(Replay(genbench.NoOptions(), mnist.info), mnist, [registry.metrics[m] for m in names],
                         EvalOptions(num_samples=2000))
    assert 0.8 < scores["density"] < 1.2 and scores["coverage"] > 0.5  # real images as samples
    real = features["test"]
    blurred = fidelity.density_coverage(real, features["blurred"][:2000], 5)
    noise = fidelity.density_coverage(real, features["noise"][:2000], 5)
    assert noise[1] < blurred[1] < scores["coverage"]


def test_precision_and_recall_each_use_their_own_k(registry, mnist):
    images, labels = to_float(mnist.eval.images), mnist.eval.labels
    Replay.pool = {c: images[labels == c] for c in range(10)}
    chosen = {"precision": builtin.ManifoldOptions(k=1), "recall": builtin.ManifoldOptions(k=10)}
    scores, _ = evaluate(Replay(genbench.NoOptions(), mnist.info), mnist,
                         [registry.metrics["precision"], registry.metrics["recall"]], EvalOptions(num_samples=1000),
                         metric_options=chosen)
    ctx = EvalContext(Replay(genbench.NoOptions(), mnist.info), mnist, EvalOptions(num_samples=1000))
    with torch.no_grad():
        real, fake = ctx.real_features[0], ctx.sample_features[0]
    assert scores["precision"] == pytest.approx(fidelity.precision_recall(real, fake, 1)[0], abs=1e-6)
    assert scores["recall"] == pytest.approx(fidelity.precision_recall(real, fake, 10)[1], abs=1e-6)
    assert fidelity.precision_recall(real, fake, 1)[1] < scores["recall"]  # k matters: a larger ball covers more


def test_registered_extractor_gives_the_same_fid_through_torch_fidelity(mnist, features):
    tf = fidelity.torch_fidelity()
    name = fidelity.register(MNIST.extractor)

    class Images(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x = x

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i]

    x = mnist.eval.images
    out = tf.calculate_metrics(input1=Images(blur(blur(to_float(x))).mul(255).round().to(torch.uint8)),
                               input2=Images(x), fid=True, feature_extractor=name, cuda=False,
                               save_cpu_ram=True, verbose=False, batch_size=500)
    quantised = ext.extract(ext.load(MNIST.extractor), blur(blur(to_float(x))).mul(255).round().div(255))[0]
    assert out["frechet_inception_distance"] == pytest.approx(fidelity.fid(features["test"], quantised), rel=1e-3)


# Extractors ---------------------------------------------------------------------------

@pytest.mark.parametrize("dataset, minimum", [(MNIST, 0.99), (FashionMNIST, 0.91)])
def test_shipped_extractor_matches_its_pinned_hash_and_accuracy(registry, dataset, minimum):
    spec = dataset.extractor
    assert ext.file_sha256(spec.path) == spec.sha256
    assert spec.path.stat().st_size < 2_000_000  # small: v2 with its decoder is 1.8 MB
    data = prepare(dataset(), DatasetConfig(name=dataset.name), torch.device("cpu"), download=False)
    logits = ext.extract(ext.load(spec), to_float(data.eval.images))[1]
    assert (logits.argmax(1) == data.eval.labels).double().mean() >= minimum


def test_a_tampered_extractor_is_refused(tmp_path):
    bad = tmp_path / "mnist.pt"
    bad.write_bytes(MNIST.extractor.path.read_bytes() + b"x")
    with pytest.raises(ext.ExtractorMismatch, match="expected 5011c7"):
        ext.load(ext.ExtractorSpec(bad, MNIST.extractor.sha256))


# Counts and options in suites ---------------------------------------------------------

def test_too_few_images_for_kid_is_refused(write_suite, tmp_path, capsys):
    from genbench.cli import main

    path = write_suite("name: k\ndataset: {name: mnist, subset: 256, test_subset: 500}\nbudget: {steps: 1}\n"
                       "metrics: [bce, kid]\nruns: [{model: vae}]\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert ("metrics[1]: metric 'kid': subset_size 1000 is more than the 500 evaluation images; lower "
            "subset_size or use more images (line 4)") in err
    assert not (tmp_path / "out").exists()


def test_inception_without_local_weights_says_how_to_get_them(write_suite, registry):
    from genbench.errors import ConfigErrors

    path = write_suite("name: i\ndataset: {name: mnist}\nbudget: {steps: 1}\nmetrics: [fid]\n"
                       "evaluation: {feature_extractor: inception}\nruns: [{model: gan}]\n")
    with pytest.raises(ConfigErrors, match="evaluation.feature_extractor_weights_path: Inception needs a "
                                           "local weights file .*never downloads"):
        load_suite(path, registry)


@pytest.mark.parametrize("space", ["features", "pixels"])
def test_memorization_equals_a_scikit_learn_nearest_neighbour_count(registry, mnist, space):
    """Copies of training images all count, held-out images count as often as the
    quantile says, and the share equals one computed with scikit-learn and NumPy."""
    neighbors = pytest.importorskip("sklearn.neighbors")
    train, test = to_float(mnist.train.images), to_float(mnist.eval.images)
    net = ext.load(MNIST.extractor)

    def points(x):
        return (ext.extract(net, x)[0] if space == "features" else x.flatten(1)).double().numpy()

    index = neighbors.NearestNeighbors(n_neighbors=1).fit(points(train))
    real_d = index.kneighbors(points(test))[0][:, 0]
    quantile = 0.05
    threshold = np.quantile(real_d, quantile)
    mixed = torch.cat([train[:300], test[:700]])  # 30% copies
    fake_d = index.kneighbors(points(mixed))[0][:, 0]

    class Copier(Replay):
        capabilities = frozenset({Capability.SAMPLE})

        def sample(self, n, labels=None):
            start = self.__dict__.setdefault("at", 0)
            self.at += n
            return mixed[start:start + n]

    scores, details = evaluate(Copier(genbench.NoOptions(), mnist.info), mnist, [registry.metrics["memorization"]],
                               EvalOptions(num_samples=1000),
                               metric_options={"memorization": builtin.MemorizationOptions(quantile, space)})
    assert scores["memorization"] == pytest.approx(float((fake_d < threshold).mean()), abs=1e-12)
    assert details["memorization"]["threshold"] == pytest.approx(threshold, rel=1e-4)  # float32 features
    assert 0.3 <= scores["memorization"] < 0.3 + 0.7 * 0.1  # the copies, and about 5% of the held-out rest
    share, _ = fidelity.memorization(torch.from_numpy(real_d), torch.from_numpy(real_d), quantile)
    assert share == pytest.approx(quantile, abs=1 / len(real_d))  # held-out images score the quantile
