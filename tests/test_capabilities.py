"""Capabilities as one table (issue 10, item 2): a deterministic encoder gets the latent
figures without claiming a Gaussian posterior, and the posterior metrics skip it."""

from __future__ import annotations

import json

import pytest
import torch

import genbench
from genbench.api import CAPABILITIES, Capability
from genbench.api.model import expand, missing_methods
from genbench.cli import main

C = Capability


class DeterministicAE(genbench.Model):
    """Encoder and decoder, no posterior: the shape of a Wasserstein autoencoder."""

    name = "mock_wae"
    capabilities = frozenset({C.RECONSTRUCT, C.LATENT, C.DECODE})

    def __init__(self, options, data):
        super().__init__(options, data)
        self.enc = torch.nn.Linear(data.num_pixels, 3)
        self.dec = torch.nn.Linear(3, data.num_pixels)

    def configure_optimizers(self):
        return {"adam": torch.optim.Adam(self.parameters(), lr=1e-2)}

    def train_step(self, batch, step):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            self.dec(self.enc(batch.x.flatten(1))), batch.x.flatten(1))
        self.optimizers["adam"].zero_grad()
        loss.backward()
        self.optimizers["adam"].step()
        return {"loss": loss.detach()}

    def latent(self, x, y=None):
        return self.enc(x.flatten(1))

    def decode(self, z, y=None):
        return torch.sigmoid(self.dec(z)).view(-1, *self.data.image_shape)

    def reconstruct(self, x, y=None):
        return self.decode(self.enc(x.flatten(1)))


def test_every_capability_is_in_the_table_and_posterior_implies_latent():
    assert set(CAPABILITIES) == set(Capability)
    assert expand({C.POSTERIOR}) == {C.POSTERIOR, C.LATENT}
    assert missing_methods(DeterministicAE) == []

    class Claims(DeterministicAE):
        capabilities = frozenset({C.SAMPLE, C.POSTERIOR})
    assert sorted(m for _, m in missing_methods(Claims)) == ["posterior", "sample"]


def test_a_deterministic_encoder_gets_latent_figures_but_no_posterior_metrics(
        synthetic_dataset, mock_plugins, write_suite, tmp_path):
    mock_plugins("mock_wae", register_models=lambda register: register(DeterministicAE))
    suite = write_suite("""
        name: wae
        dataset: {name: synthetic, subset: 512, test_subset: 256}
        budget: {steps: 20}
        metrics: [bce, kl, elbo, active_units]
        runs: [{model: mock_wae}]
    """)
    out = tmp_path / "out"
    assert main(["run", str(suite), "--out", str(out)]) == 0
    (run_dir,) = (out / "runs").iterdir()
    rec = json.loads((run_dir / "record.json").read_text())
    assert rec["metrics"]["bce"] > 0
    assert rec["metrics"]["kl"] is None and rec["metrics"]["elbo"] is None and rec["metrics"]["active_units"] is None
    figures = {p.name for p in run_dir.glob("*.png")}
    assert {"latent.png", "interpolation.png", "reconstructions.png"} <= figures
    assert "manifold.png" not in figures  # the prior's quantiles need a Gaussian posterior


@pytest.mark.parametrize("bad, rule", [
    (lambda self, x, y=None: self.enc(x.flatten(1))[:, 0], "latent() returned something that is not an (N, d)"),
    (lambda self, x, y=None: self.enc(x.flatten(1)) * float("nan"), "latent() returned NaN"),
])
def test_latent_codes_are_checked(synthetic_dataset, mock_plugins, write_suite, tmp_path, capsys, bad, rule):
    """No score uses the codes, so a broken latent() costs its figures and a warning naming it."""
    broken = type("Broken", (DeterministicAE,), {"name": "mock_broken_latent", "latent": bad})
    mock_plugins("mock_broken_latent", register_models=lambda register: register(broken))
    suite = write_suite("""
        name: broken
        dataset: {name: synthetic, subset: 256, test_subset: 128}
        budget: {steps: 2}
        metrics: [mse]
        runs: [{model: mock_broken_latent}]
    """)
    assert main(["run", str(suite), "--out", str(tmp_path / "out")]) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"could not write the figure snapshot: ModelOutputError: model 'mock_broken_latent': {rule}" in printed
    (run_dir,) = (tmp_path / "out" / "runs").iterdir()
    assert json.loads((run_dir / "record.json").read_text())["metrics"]["mse"] > 0
    assert not (run_dir / "latent.png").exists()
