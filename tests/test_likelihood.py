"""Likelihood on one scale: the discretized decoders, the flow's change of variables, the
PixelCNN's causal masks, the DDPM's bound and sampler, the bpd column and its marks."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

import genbench
from genbench import Capability
from genbench.api import DataInfo, EvalOptions, options as opt
from genbench.api.likelihood import (discretized_gaussian_log_prob, discretized_logistic_log_prob,
                                     importance_weighted)
from genbench.engine.evaluate import evaluate
from genbench.testing import check_model, tiny_data

LEVELS = torch.arange(256, dtype=torch.float64) / 255


def build(registry, name, image_shape=(1, 28, 28), seed=0, **options):
    cls = registry.models[name]
    parsed, errors = opt.build(cls.Options, options)
    assert not errors
    torch.manual_seed(seed)
    return cls(parsed, DataInfo("t", image_shape, 10, tuple("0123456789"), 100))


# The discretized decoders -------------------------------------------------------------

@pytest.mark.parametrize("mean, log_scale", [(0.5, -3.0), (0.01, -5.0), (0.999, -4.0), (0.3, 1.0), (-2.0, -6.0)])
def test_discretized_decoders_are_distributions_over_256_values(mean, log_scale):
    for fn in (discretized_logistic_log_prob, discretized_gaussian_log_prob):
        logp = fn(LEVELS, torch.full((256,), mean, dtype=torch.float64),
                  torch.full((256,), log_scale, dtype=torch.float64))
        assert torch.isfinite(logp).all()
        assert float(torch.logsumexp(logp, 0).exp()) == pytest.approx(1.0, abs=1e-9)
        single = fn(LEVELS.float(), torch.full((256,), mean), torch.full((256,), log_scale))  # training's precision
        assert torch.isfinite(single).all() and float(torch.logsumexp(single.double(), 0).exp()) == pytest.approx(
            1.0, abs=1e-4)


def test_discretized_decoders_match_scipy_bins():
    mean, scale = 0.42, 0.07
    half = 0.5 / 255
    edges = [(-np.inf if k == 0 else k / 255 - half, np.inf if k == 255 else k / 255 + half) for k in range(256)]
    for fn, dist in ((discretized_logistic_log_prob, sps.logistic(mean, scale)),
                     (discretized_gaussian_log_prob, sps.norm(mean, scale))):
        ours = fn(LEVELS, torch.full((256,), mean, dtype=torch.float64),
                  torch.full((256,), math.log(scale), dtype=torch.float64)).numpy()
        # right of the mean from the survival function: 1 - cdf would cancel
        ref = np.log([dist.cdf(hi) - dist.cdf(lo) if hi <= mean else dist.sf(lo) - dist.sf(hi) for lo, hi in edges])
        mask = ref > -30  # where scipy's difference is still accurate
        np.testing.assert_allclose(ours[mask], ref[mask], rtol=1e-9, atol=1e-9)
        assert (ours[~mask] < -25).all() and np.isfinite(ours).all()  # the tails stay finite, unlike scipy's


def test_importance_weighted_is_the_log_mean_of_weights():
    w = torch.rand(7, 5, dtype=torch.float64) + 0.1
    assert torch.allclose(importance_weighted(w.log()), w.mean(0).log())


# The uniform model: exactly 8 bits per dimension --------------------------------------

def test_a_model_of_uniform_pixels_scores_exactly_8_bits_per_dimension(registry):
    model = build(registry, "pixelcnn", channels=4, layers=1)
    final = model.head[-1]
    torch.nn.init.zeros_(final.weight), torch.nn.init.zeros_(final.bias)  # equal logits: uniform pixels
    data = tiny_data((1, 28, 28), 10)
    scores, details = evaluate(model, data, [registry.metrics["bpd"], registry.metrics["nll"]],
                               EvalOptions(num_samples=2))
    assert scores["bpd"] == pytest.approx(8.0, abs=1e-12)
    assert scores["nll"] == pytest.approx(784 * math.log(256), rel=1e-12)
    assert details["bpd"]["exact"] is True and "bound" not in details["bpd"]


# The flow: exact change of variables ----------------------------------------------------

def _perturb(model, scale=0.3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():  # off the identity start: every layer does something
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def test_flow_log_density_equals_brute_force_change_of_variables(registry):
    from genbench.plugins.flow import squeeze

    model = build(registry, "flow", image_shape=(1, 4, 4), steps=[2, 2], hidden=8).double()
    _perturb(model)
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64) * 0.9 + 0.05

    def to_z(flat):  # the flow written out again: logit, squeeze, layers
        s = 1e-6 + (1 - 2e-6) * flat.view(1, 1, 4, 4)
        z = torch.log(s) - torch.log1p(-s)
        for level in model.levels:
            z = squeeze(z)
            for step in level:
                for layer in step:
                    z = layer(z)[0]
        return z.flatten()

    for i in range(3):
        jac = torch.autograd.functional.jacobian(to_z, x[i].flatten())  # 16 x 16, by autograd
        z = to_z(x[i].flatten()).detach()
        brute = float(-0.5 * (z.pow(2) + math.log(2 * math.pi)).sum() + torch.linalg.slogdet(jac)[1])
        assert float(model.log_density(x[i:i + 1]).detach()) == pytest.approx(brute, abs=1e-8)


def test_flow_inverts_and_scores_8_bit_images_below_zero(registry):
    from genbench.plugins.flow import squeeze, unsqueeze

    model = build(registry, "flow", image_shape=(1, 8, 8), steps=[2, 2], hidden=8).double()
    _perturb(model, 0.1)
    model.eval()
    with torch.no_grad():
        x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
        assert torch.equal(unsqueeze(squeeze(x)), x)
        for level, steps in enumerate(model.levels):
            size = 8 // 2 ** (level + 1)
            z = torch.randn(2, 4 ** (level + 1), size, size, dtype=torch.float64)
            for step in steps:
                for layer in step:
                    assert torch.allclose(layer.inverse(layer(z)[0]), z, atol=1e-10)
        torch.manual_seed(0)
        images = model.sample(5)
        assert images.shape == (5, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
        assert torch.equal(images, torch.round(images * 255) / 255)  # 8-bit pixels
        pixels = torch.randint(0, 256, (4, 1, 8, 8)).double() / 255
        assert (model.log_likelihood(pixels) < 0).all()
        for level in model.levels:  # couplings that shrink by e^-100: their inverse stretches by e^100
            for step in level:
                step[2].net[-1].bias.fill_(-100.0)
        model.float()
        assert torch.isfinite(model.sample(20)).all()


# PixelCNN: causal masks, tested by gradients ------------------------------------------

@pytest.mark.parametrize("name", ["pixelcnn", "cpixelcnn"])
def test_pixelcnn_output_depends_only_on_earlier_pixels(registry, name):
    model = build(registry, name, image_shape=(1, 8, 8), channels=8, layers=3).double()
    _perturb(model, 0.1)
    h, w = 8, 8
    y = torch.tensor([3])
    for i in range(h):
        for j in range(w):
            x = torch.rand(1, 1, h, w, dtype=torch.float64, requires_grad=True)
            model.logits(x, y)[0, :, 0, i, j].sum().backward()
            grad = x.grad[0, 0].abs()
            order = torch.arange(h * w).view(h, w)
            later = order >= i * w + j  # the pixel itself and everything after it
            assert float(grad[later].max()) == 0.0, (i, j)
            if j > 0:
                assert grad[i, j - 1] > 0  # its left neighbour
            if i > 0:
                assert grad[i - 1, j] > 0 and grad[i - 1, max(j - 1, 0)] > 0  # above: no blind spot
                if j + 1 < w:
                    assert grad[i - 1, j + 1] > 0  # above right, the classic blind spot


def test_pixelcnn_sampling_crop_gives_the_full_networks_logits(registry):
    model = build(registry, "pixelcnn", image_shape=(1, 28, 28), channels=8, layers=3).double()
    _perturb(model, 0.1)
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    full = model.logits(x)
    for i in (model.reach + 2, 20, 27):
        top = i - model.reach
        assert torch.allclose(model.logits(x[:, :, top:i + 1])[:, :, :, -1], full[:, :, :, i], atol=1e-12)


# DDPM: the bound's strata, the sampler's steps ------------------------------------------

@pytest.mark.parametrize("k", [1, 3, 7, 9, 40])
def test_ddpm_bound_weights_every_kl_term_once(registry, k, monkeypatch):
    model = build(registry, "ddpm", image_shape=(1, 8, 8), channels=8, timesteps=10, bound_timesteps=k)
    seen = []

    def one(x0, i):
        seen.append(i)
        return torch.ones(len(x0))
    monkeypatch.setattr(model, "_kl_term", one)
    x = torch.randint(0, 256, (4, 1, 8, 8)).float() / 255
    with torch.no_grad():
        torch.manual_seed(0)  # the same noise for the first step's decoder in both
        with_kl = model.log_likelihood(x)
        monkeypatch.setattr(model, "_kl_term", lambda x0, i: torch.zeros(len(x0)))
        torch.manual_seed(0)
        without = model.log_likelihood(x)
    # sum of (stratum size) x 1 over the strata = the T - 1 KL terms, whatever k
    assert torch.allclose(without - with_kl, torch.full((4,), 9.0, dtype=torch.float64), atol=1e-5)
    drawn = torch.stack(seen)
    assert drawn.min() >= 1 and drawn.max() <= 9 and len(seen) == len(model.strata()) <= min(k, 9)
    strata = model.strata()  # contiguous, covering 1..T-1, never wider later than earlier
    assert strata[0][0] == 1 and strata[-1][1] == 9 and all(b[0] == a[1] + 1 for a, b in zip(strata, strata[1:]))
    widths = [last - first + 1 for first, last in strata]
    assert widths == sorted(widths) and (k < 9 or widths == [1] * 9)


def test_ddpm_bound_is_finite_and_sampling_steps_are_an_evaluation_option(registry):
    model = build(registry, "ddpm", image_shape=(1, 8, 8), channels=8, timesteps=50, sample_steps=7)
    calls = []
    model.net.register_forward_hook(lambda *a: calls.append(1))
    model.eval()
    with torch.no_grad():
        images = model.sample(3)
        assert len(calls) == 7 and images.shape == (3, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
        fewer = dataclasses.replace(model.options, sample_steps=3)
        twin = type(model)(fewer, model.data)
        twin.load_state_dict(model.state_dict())  # the same trained network, another sampler
        twin.net.register_forward_hook(lambda *a: calls.append(1))
        calls.clear()
        twin.sample(3)
        assert len(calls) == 3
        ll = model.log_likelihood(torch.randint(0, 256, (4, 1, 8, 8)).float() / 255)
        assert torch.isfinite(ll).all() and (ll < 0).all()
    assert opt.evaluation_only(type(model).Options) == {"sample_steps", "bound_timesteps"}


# The column: conventions, bounds, dashes -------------------------------------------------

@pytest.mark.parametrize("name, options", [
    ("flow", {"steps": [1, 1], "hidden": 8}),
    ("pixelcnn", {"channels": 8, "layers": 1}),
    ("cpixelcnn", {"channels": 8, "layers": 1}),
    ("ddpm", {"channels": 8, "timesteps": 20, "sample_steps": 4, "bound_timesteps": 4}),
    ("vae", {"decoder": "logistic", "iw_samples": 4}),
    ("conv_vae", {"decoder": "logistic", "channels": [4, 8], "iw_samples": 4}),
])
def test_likelihood_models_pass_the_plugin_checks(registry, name, options):
    cls = registry.models[name]
    check_model(cls, opt.build(cls.Options, options)[0], image_shape=(1, 28, 28), steps=2)  # colour: test_shapes


def test_a_bernoulli_vae_gets_a_dash_with_the_reason_and_a_logistic_one_a_bound(registry):
    data = tiny_data((1, 28, 28), 10)
    metrics = [registry.metrics["bpd"], registry.metrics["elbo"], registry.metrics["iw_ll"]]
    bern = build(registry, "vae")
    scores, details = evaluate(bern, data, metrics, EvalOptions(num_samples=2))
    assert scores["bpd"] is None and "decoder: logistic" in details["not_applicable"]["bpd"]
    assert scores["elbo"] is not None
    logistic = build(registry, "vae", decoder="logistic", iw_samples=20)
    scores, details = evaluate(logistic, data, metrics, EvalOptions(num_samples=2),
                               metric_options={"iw_ll": registry.metrics["iw_ll"].Options(samples=20)})
    assert details["bpd"]["exact"] is False and details["bpd"]["bound"] == "upper"
    # the IW bound (20 samples) is at least the ELBO, and bpd is its negative in bits per pixel
    assert scores["iw_ll"] >= scores["elbo"]
    assert scores["bpd"] == pytest.approx(-scores["iw_ll"] / (784 * math.log(2)), rel=0.02)


class Density(genbench.Model):
    """Returns a continuous log-density (positive): the wrong convention."""

    name = "mock_density"
    capabilities = frozenset({Capability.LIKELIHOOD})
    likelihood = genbench.Likelihood(exact=True)

    def __init__(self, options, data):
        super().__init__(options, data)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def log_likelihood(self, x, y=None):
        return torch.full((len(x),), 1234.5) + self.w


def test_a_density_instead_of_a_probability_fails_the_run(registry):
    from genbench.api.outputs import ModelOutputError

    data = tiny_data((1, 28, 28), 10)
    with pytest.raises(ModelOutputError, match="at most 0.*continuous density"):
        evaluate(Density(genbench.NoOptions(), data.info), data, [registry.metrics["bpd"]], EvalOptions(num_samples=2))


def test_registration_needs_a_likelihood_declaration_of_a_known_convention():
    from genbench.engine.pluginmanager import _check_model

    class Undeclared(Density):
        name = "mock_undeclared"
        likelihood = None

        def train_step(self, batch, step):  # pragma: no cover
            raise AssertionError

    with pytest.raises(TypeError, match="not a genbench.Likelihood"):
        _check_model(Undeclared)
    with pytest.raises(ValueError, match="not one of discrete_8bit"):
        genbench.Likelihood(exact=True, convention="continuous")


# The suite: one column, bounds marked, sampling cost, an evaluation option changed later ---

LIKELIHOOD_SUITE = """
name: lk
dataset: {name: mnist, subset: 512, test_subset: 64}
budget: {steps: 3}
batch_size: 32
metrics: [bpd, nll]
runs:
  - {model: ddpm, options: {channels: 8, timesteps: 20, sample_steps: 4, bound_timesteps: 4}}
  - {model: pixelcnn, options: {channels: 4, layers: 1}}
  - {model: vae, label: bernoulli}
"""


def test_suite_marks_bounds_records_sampling_cost_and_rescores_with_other_sampling_steps(
        write_suite, tmp_path, capsys):
    import json

    from genbench.cli import main

    out = tmp_path / "out"
    assert main(["run", str(write_suite(LIKELIHOOD_SUITE)), "--out", str(out)]) == 0
    board = (out / "leaderboard.md").read_text()
    rows = {line.split("|")[2].strip(): line for line in board.splitlines() if line.startswith("| ")}
    ddpm = next(v for k, v in rows.items() if k.startswith("ddpm"))
    pixel = next(v for k, v in rows.items() if k.startswith("pixelcnn"))
    assert "≤ " in ddpm and "≤" not in pixel and "≤: an upper bound" in board  # the DDPM's is a bound
    records = {r["model"]: r for r in (json.loads(p.read_text()) for p in out.glob("runs/*/record.json"))}
    ddpm_rec = records["ddpm"]
    assert ddpm_rec["sampling"]["images"] == 100 and ddpm_rec["sampling"]["seconds_per_1000"] > 0
    assert records["vae"]["metrics"]["bpd"] is None
    assert "decoder: logistic" in records["vae"]["metric_details"]["not_applicable"]["bpd"]
    assert "sample_seconds_per_1000" in (out / "results.csv").read_text().splitlines()[0]

    capsys.readouterr()
    before = {r["model"]: r for r in (json.loads(p.read_text()) for p in out.glob("runs/*/record.json"))}
    assert main(["rescore", str(out), "--set", "sample_steps=2"]) == 0
    after = {r["model"]: r for r in (json.loads(p.read_text()) for p in out.glob("runs/*/record.json"))}
    assert after["pixelcnn"] == before["pixelcnn"] and "rescored" not in after["vae"]  # theirs have no such option
    again = next(json.loads(p.read_text()) for p in out.glob("runs/*/record.json")
                 if json.loads(p.read_text())["model"] == "ddpm")
    assert again["options"]["sample_steps"] == 2 and again["rescored"]["options"] == {"sample_steps": 2}
    assert again["options"]["timesteps"] == 20 and again["budget_used"] == ddpm_rec["budget_used"]  # no training
    assert again["sampling"]["seconds_per_1000"] != ddpm_rec["sampling"]["seconds_per_1000"]
    assert main(["rescore", str(out), "--set", "timesteps=10"]) == 2
    assert "a training option of model 'ddpm'" in capsys.readouterr().err
    assert main(["rescore", str(out), "--set", "no_such=1"]) == 2
    assert "no rescored run's model has an option 'no_such'" in capsys.readouterr().err


@pytest.mark.parametrize("batch", [8, 20, 64])
def test_iw_ll_takes_any_image_count_with_any_batch_size(registry, batch):
    """Counts below, equal to, a multiple of and not a multiple of the batch, and all the
    images: each the same number as one batch of everything gives (issue 26, item 3b)."""
    from genbench.api import EvalContext

    data = tiny_data((1, 28, 28), 10)  # 64 evaluation images
    model = build(registry, "vae", decoder="logistic").eval()
    metric = registry.metrics["iw_ll"]
    for images in (5, batch - 1, batch, batch + 3, 2 * batch, 64, 100, None):
        opts = metric.Options(samples=3, images=images)
        with torch.no_grad():
            value, details = metric.score(EvalContext(model, data, batch_size=batch), opts)
            whole, _ = metric.score(EvalContext(model, data, batch_size=4096), opts)
        assert details["images"] == min(images or 64, 64)
        assert value == pytest.approx(whole, rel=1e-6), (images, batch)
