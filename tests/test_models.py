"""Every built-in model on a small real subset: steps, learning, capabilities, state."""

from __future__ import annotations

import io
import json

import pytest
import torch

from genbench import Capability
from genbench.cli import main
from genbench.engine.config import load_suite
from genbench.engine.execute import seed_everything
from genbench.engine.runner import load_data
from genbench.engine.train import train

MODELS = [
    ("ae", {}),
    ("ae", {"loss": "mse", "hidden_dims": [128, 64]}),
    ("vae", {}),
    ("beta_vae", {}),
    ("beta_tc_vae", {}),
    ("conv_vae", {"channels": [8, 16]}),
    ("cvae", {}),
    ("gan", {}),
    ("gan", {"architecture": "dcgan", "prior": "uniform", "hidden_dim": 64}),
    ("vae", {"decoder": "logistic", "iw_samples": 5}),
    ("flow", {"steps": [2, 2], "hidden": 16}),
    ("pixelcnn", {"channels": 8, "layers": 2, "lr": 0.01}),
    ("cpixelcnn", {"channels": 8, "layers": 2, "lr": 0.01}),
    ("ddpm", {"channels": 8, "timesteps": 100, "sample_steps": 5, "bound_timesteps": 5}),
]
IDS = [f"{m}-{'-'.join(map(str, o.values())) or 'default'}" for m, o in MODELS]


@pytest.fixture(scope="module")
def data(registry, tmp_path_factory):
    path = tmp_path_factory.mktemp("suite") / "s.yaml"
    path.write_text("name: m\ndataset: {name: fashion_mnist, subset: 2048, test_subset: 200}\n"
                    "budget: {steps: 1}\nruns: [{model: vae}]\n")
    suite = load_suite(path, registry)
    return load_data(suite, registry, torch.device("cpu"), download=False)


def build(registry, data, name, options, seed=0):
    from genbench.api import options as opt

    seed_everything(seed)
    cls = registry.models[name]
    parsed, errors = opt.build(cls.Options, options)
    assert not errors
    model = cls(parsed, data.info)
    model.optimizers = model.configure_optimizers()
    return model


@pytest.mark.parametrize("name, options", MODELS, ids=IDS)
def test_one_step_gives_finite_losses(registry, data, name, options):
    model = build(registry, data, name, options)
    result = train(model, data, {"steps": 1}, 64, seed=0)
    assert result.used["steps"] == 1
    assert result.final and all(torch.isfinite(torch.tensor(v)) for v in result.final.values())


@pytest.mark.parametrize("name, options", MODELS, ids=IDS)
def test_training_lowers_the_loss(registry, data, name, options):
    model = build(registry, data, name, options)
    # autoregressive steps are costly, and their loss (nats of 784 softmaxes) falls fast
    steps = 40 if "pixelcnn" in name else 300
    result = train(model, data, {"steps": steps}, 64, seed=0)
    first, last = result.history[0]["loss"], result.history[-1]["loss"]
    if name == "gan":
        # The game stays balanced (the discriminator has not won: D(G(z)) is well above 0)
        # and the generator learns the data: its mean image, unrelated to the data's at
        # the start, now resembles it, and its brightness approaches the data's.
        assert result.history[-1]["d_fake"] > 0.2
        real = (data.train.images.float() / 255).mean(0).flatten()
        model.eval()
        with torch.no_grad():
            fake = model.sample(500)
        assert torch.corrcoef(torch.stack([fake.mean(0).flatten(), real]))[0, 1] > 0.6
        assert (fake.mean() - real.mean()).abs() < 0.1
    else:
        assert last < 0.8 * first


@pytest.mark.parametrize("name, options", MODELS, ids=IDS)
def test_declared_capabilities_work(registry, data, name, options):
    model = build(registry, data, name, options)
    train(model, data, {"steps": 5}, 64, seed=0)
    model.eval()
    x, y = data.eval.images[:16].float() / 255, data.eval.labels[:16]
    caps = model.capabilities
    cond = y if Capability.CONDITIONAL in caps else None
    with torch.no_grad():
        if Capability.RECONSTRUCT in caps:
            r = model.reconstruct(x, cond)
            assert r.shape == x.shape and r.min() >= 0 and r.max() <= 1
        if Capability.POSTERIOR in caps:
            mean, logvar = model.posterior(x, cond)
            assert mean.shape == logvar.shape == (16, model.options.latent_dim)
            assert model.decode(mean, cond).shape == x.shape
        if Capability.SAMPLE in caps:
            s = model.sample(10)
            assert s.shape == (10, 1, 28, 28) and s.min() >= 0 and s.max() <= 1
        if Capability.CONDITIONAL in caps:
            labels = torch.tensor([3] * 5 + [7] * 5)
            assert model.sample(10, labels).shape == (10, 1, 28, 28)
        if Capability.LIKELIHOOD in caps and not model.unavailable():
            ll = model.log_likelihood(x, cond)
            assert ll.shape == (16,) and torch.isfinite(ll).all() and (ll <= 0).all()
    assert name != "gan" or caps == {Capability.SAMPLE}
    assert name != "ae" or caps == {Capability.RECONSTRUCT}


def _corr(a, b):
    """Pearson correlation of every image in a with every image in b."""
    a = a.flatten(1) - a.flatten(1).mean(1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return (a @ b.T) / (a.norm(dim=1)[:, None] * b.norm(dim=1)[None])


def test_cvae_generates_the_asked_class(registry):
    from genbench.engine.config import DatasetConfig
    from genbench.engine.data import prepare

    cfg = DatasetConfig(name="fashion_mnist", test_subset=10)
    data = prepare(registry.datasets["fashion_mnist"](), cfg, torch.device("cpu"), download=False)
    model = build(registry, data, "cvae", {})
    train(model, data, {"steps": 1000}, 64, seed=0)
    model.eval()
    real = data.train.images.float() / 255
    class_means = torch.stack([real[data.train.labels == c].mean(0) for c in range(10)])
    with torch.no_grad():
        modes = model.decode(torch.zeros(10, model.options.latent_dim), torch.arange(10))
        torch.manual_seed(0)
        trousers = model.sample(200, torch.full((200,), 1)).mean(0, keepdim=True)
        bags = model.sample(200, torch.full((200,), 8)).mean(0, keepdim=True)
    # the prior's mode decoded with label c looks most like class c (shirt-like classes may mix)
    assert (_corr(modes, class_means).argmax(1) == torch.arange(10)).sum() >= 8
    assert _corr(trousers, class_means)[0].argmax() == 1 and _corr(bags, class_means)[0].argmax() == 8


@pytest.mark.parametrize("name, options", MODELS, ids=IDS)
def test_saved_and_loaded_state_gives_identical_outputs(registry, data, name, options):
    model = build(registry, data, name, options)
    train(model, data, {"steps": 3}, 64, seed=0)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    twin = build(registry, data, name, options, seed=99)  # different initial weights
    twin.load_state_dict(torch.load(buffer))
    model.eval(), twin.eval()
    x, y = data.eval.images[:8].float() / 255, data.eval.labels[:8]
    cond = y if Capability.CONDITIONAL in model.capabilities else None
    with torch.no_grad():
        if Capability.RECONSTRUCT in model.capabilities:
            assert torch.equal(model.reconstruct(x, cond), twin.reconstruct(x, cond))
        torch.manual_seed(1)
        a = model.sample(4) if Capability.SAMPLE in model.capabilities else None
        torch.manual_seed(1)
        b = twin.sample(4) if Capability.SAMPLE in model.capabilities else None
        assert a is None or torch.equal(a, b)


GAN_TUNED = {"output": "tanh", "d_dropout": 0.3, "spectral_norm": True, "d_lr": 4e-4}


def test_gan_options_shape_its_networks_optimizers_and_output_range(registry, data):
    from torch.nn.utils import parametrize

    model = build(registry, data, "gan", GAN_TUNED)
    lrs = {k: o.param_groups[0]["lr"] for k, o in model.optimizers.items()}
    assert lrs == {"generator": 1.5e-3, "discriminator": 4e-4}
    same = build(registry, data, "gan", {"lr": 3e-4, "d_lr": None}).optimizers
    assert {k: o.param_groups[0]["lr"] for k, o in same.items()} == {"generator": 3e-4, "discriminator": 3e-4}
    layers = list(model.discriminator)
    assert [m.p for m in layers if isinstance(m, torch.nn.Dropout)] == [0.3, 0.3]
    linear = [m for m in layers if isinstance(m, torch.nn.Linear)]
    assert len(linear) == 3 and all(parametrize.is_parametrized(m, "weight") for m in linear)
    assert not any(isinstance(m, torch.nn.Dropout) for m in build(registry, data, "gan", {}).discriminator)
    result = train(model, data, {"steps": 30}, 64, seed=0)
    assert all(torch.isfinite(torch.tensor(v)) for v in result.final.values())
    model.eval()
    with torch.no_grad():
        raw, images = model.generate(500), model.sample(500)
    assert raw.min() < 0 <= images.min() and images.max() <= 1  # tanh in [-1, 1], samples in [0, 1]
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    twin = build(registry, data, "gan", GAN_TUNED, seed=99)
    twin.load_state_dict(torch.load(buffer))
    twin.eval()
    with torch.no_grad():
        torch.manual_seed(1)
        a = model.sample(4)
        torch.manual_seed(1)
        assert torch.equal(a, twin.sample(4))


def test_conv_vae_rejects_wrong_channel_count(write_suite, registry):
    from genbench.errors import ConfigErrors

    path = write_suite("name: x\ndataset: {name: mnist}\nbudget: {steps: 1}\n"
                       "runs: [{model: conv_vae, options: {channels: [8, 16, 32, 64, 128]}}]\n")
    with pytest.raises(ConfigErrors, match=r"runs\[0\].options: channels: give one to four widths"):
        load_suite(path, registry)


def test_all_six_models_in_one_suite(write_suite, tmp_path):
    path = write_suite("""
        name: zoo
        dataset: {name: fashion_mnist, subset: 512, test_subset: 256}
        budget: {steps: 6}
        seeds: [0]
        batch_size: 64
        runs:
          - model: ae
          - model: vae
          - model: beta_vae
          - model: conv_vae
          - model: cvae
          - model: gan
    """)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    records = {json.loads(p.read_text())["model"]: json.loads(p.read_text()) for p in out.glob("runs/*/record.json")}
    assert set(records) == {"ae", "vae", "beta_vae", "conv_vae", "cvae", "gan"}
    assert all(r["status"] == "ok" and r["budget_used"]["steps"] == 6 for r in records.values())
    assert records["gan"]["metrics"] == {"bce": None, "kl": None}
    assert records["ae"]["metrics"]["kl"] is None and records["ae"]["metrics"]["bce"] > 0
    board = (out / "leaderboard.md").read_text()
    gan_row = next(line for line in board.splitlines() if line.startswith("| ") and " gan " in line)
    assert gan_row.count("| -") == 2
