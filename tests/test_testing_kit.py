"""genbench.testing, the kit plugin authors call from their own tests (issue 10, item 11)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

import genbench
from genbench.testing import check_dataset, check_metric, check_model

from conftest import ROOT

C = genbench.Capability


@pytest.mark.parametrize("name", ["ae", "vae", "beta_vae", "conv_vae", "cvae", "gan"])
def test_every_builtin_model_passes(registry, name):
    check_model(registry.models[name])


class Good(genbench.Model):
    name = "mock_good"
    capabilities = frozenset({C.SAMPLE, C.RECONSTRUCT})

    def __init__(self, options, data):
        super().__init__(options, data)
        self.net = torch.nn.Linear(data.num_pixels, data.num_pixels)

    def configure_optimizers(self):
        return {"sgd": torch.optim.SGD(self.parameters(), lr=0.01)}

    def train_step(self, batch, step):
        loss = ((torch.sigmoid(self.net(batch.x.flatten(1))) - batch.x.flatten(1)) ** 2).mean()
        self.optimizers["sgd"].zero_grad()
        loss.backward()
        self.optimizers["sgd"].step()
        return {"loss": loss.detach()}

    def reconstruct(self, x, y=None):
        return torch.sigmoid(self.net(x.flatten(1))).view(-1, *self.data.image_shape)

    def sample(self, n, labels=None):
        return torch.sigmoid(self.net(torch.randn(n, self.data.num_pixels, device=self.device))).view(
            -1, *self.data.image_shape)


def _variant(**methods):
    return type("Variant", (Good,), {"name": "mock_variant", **methods})


@pytest.mark.parametrize("cls, message", [
    (_variant(sample=lambda self, n, labels=None: torch.rand(n, 1, 14, 14)),
     "Variant: model 'mock_variant': sample() returned shape (8, 1, 14, 14), expected (8, 1, 28, 28)"),
    (_variant(capabilities=frozenset({C.SAMPLE})),
     "Variant.reconstruct: is implemented but 'reconstruct' is not declared"),
    (_variant(capabilities=frozenset({C.SAMPLE, C.RECONSTRUCT, C.POSTERIOR})),
     "Variant.posterior: 'posterior' is declared but posterior() is not implemented"),
    (_variant(sample=lambda self, n, labels=None: torch.rand(
        n, 1, 28, 28, generator=torch.Generator().manual_seed(time.perf_counter_ns()))),
     "Variant.train_step: the same seed gave different results"),
    (_variant(train_step=lambda self, batch, step: {"loss": 1.0}),
     "Variant.train_step: loss 'loss' must be a scalar tensor"),
    (_variant(train_step=lambda self, batch, step: {"loss": self.net.weight.sum()}),
     "Variant.train_step: loss 'loss' must be detached"),
    (_variant(configure_optimizers=lambda self: [torch.optim.SGD(self.parameters(), lr=0.1)]),
     "Variant.configure_optimizers: must return a dict of torch.optim.Optimizer by name"),
])
def test_each_broken_rule_is_named(cls, message):
    with pytest.raises(AssertionError) as info:
        check_model(cls)
    assert str(info.value).startswith(message)


def test_check_model_passes_a_good_model():
    check_model(Good)


def test_check_dataset_on_real_and_synthetic_data(registry, synthetic_dataset, data_root):
    check_dataset(registry.datasets["mnist"])
    check_dataset(synthetic_dataset)

    class WrongShape(synthetic_dataset):
        image_shape = (1, 28, 28)
    with pytest.raises(AssertionError, match=r"WrongShape.load: train images are \(3, 16, 16\), image_shape says"):
        check_dataset(WrongShape)


def test_check_metric(registry):
    check_metric(registry.metrics["bce"], registry.models["vae"])
    check_metric(registry.metrics["kl"], registry.models["vae"])
    moody = genbench.Metric("mock_moody", lambda ctx: float(time.perf_counter_ns() % 997))
    with pytest.raises(AssertionError, match="mock_moody.compute: the same seed gave"):
        check_metric(moody, registry.models["vae"])
    with pytest.raises(AssertionError, match=r"metric 'kl' requires \['posterior'\]; AE lacks some"):
        check_metric(registry.metrics["kl"], registry.models["ae"])


def test_the_example_plugin_uses_the_kit_in_its_own_tests(tmp_path):
    example = ROOT / "examples" / "genbench-linear-ae"
    env = {"PYTHONPATH": str(example)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example / "tests")],
                          capture_output=True, text=True, cwd=tmp_path, env={**__import__("os").environ, **env})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
