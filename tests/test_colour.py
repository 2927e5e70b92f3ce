"""Colour end to end (issue 29, items 4-6): the procedural colour data set, feature
extractors for any data set and pinned in a suite, and every built-in model and metric
on 3x32x32 images."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.cli import main
from genbench.plugins import colorshapes
from genbench.testing import check_dataset

from conftest import ROOT


def test_color_shapes_is_seeded_balanced_and_coloured():
    check_dataset(colorshapes.ColorShapes, colorshapes.ColorShapesOptions(train_size=200, test_size=100))
    images, labels = colorshapes.generate(1000, 7)
    again, _ = colorshapes.generate(1000, 7)
    assert images.shape == (1000, 3, 32, 32) and torch.equal(images, again)
    assert torch.bincount(labels).tolist() == [100] * 10
    # a bright shape (its brightest channel at 75-100%) on a dark background (corners: at most 38%)
    assert images.flatten(1).amax(1).min() >= 190 and images[:, :, 0, 0].max() <= 100
    # the palette is the class's: warm shapes are redder than they are blue, cool ones bluer
    warm = (labels % 2 == 0)
    red, blue = images.float()[:, 0].amax((1, 2)), images.float()[:, 2].amax((1, 2))
    assert (red > blue)[warm].float().mean() > 0.9 and (blue > red)[~warm].float().mean() > 0.9


def test_the_shipped_colour_suite_validates_and_its_extractor_is_pinned(capsys):
    assert main(["validate", str(ROOT / "suites" / "colour_smoke.yaml")]) == 0
    spec = colorshapes.ColorShapes.extractor
    from genbench.api.extractor import file_sha256

    assert spec.path.is_file() and file_sha256(spec.path) == spec.sha256 and spec.in_channels == 3


def write_colour_folder(root, per_class=40, size=20, seed=0):
    """Two classes of colour PNGs: red squares and blue discs on grey, jittered."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for c, name in enumerate(("red", "blue")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = np.full((size, size, 3), 60, dtype=np.uint8) + rng.integers(0, 20, (size, size, 3), dtype=np.uint8)
            cx, cy, r = rng.integers(7, 13, 2).tolist() + [int(rng.integers(3, 6))]
            inside = (np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r) if c == 0 else (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            image[inside] = (220, 30, 30) if c == 0 else (30, 30, 220)
            Image.fromarray(image).save(root / name / f"{i}.png")
    return root


def test_a_folder_suite_without_an_extractor_is_refused_then_trains_pins_and_scores_with_its_own(
        tmp_path, write_suite, capsys, monkeypatch):
    from genbench.api import dataset

    monkeypatch.setattr(dataset, "CACHE_DIR", tmp_path / "cache")
    folder = write_colour_folder(tmp_path / "imgs")
    text = f"""
        name: folder
        dataset: {{name: image_folder, options: {{path: {folder}, size: 16, channels: 3, test_fraction: 0.25}}}}
        budget: {{steps: 3}}
        batch_size: 16
        metrics: [fid, {{name: kid, subset_size: 20}}, precision, bce]
        evaluation: {{num_samples: 40%s}}
        runs:
          - {{model: conv_vae, options: {{channels: [8, 16], latent_dim: 4}}}}
        """
    suite = write_suite(text % "")
    for extra in ([], ["--no-data"]):
        assert main(["validate", str(suite), *extra]) == 2
        err = capsys.readouterr().err
        assert re.search(r"suite.yaml: evaluation.feature_extractor: metrics fid, kid, precision need a feature "
                         r"extractor, and data set 'image_folder' ships none: train one with `genbench extractor "
                         r"train SUITE --out FILE` and pin it here as feature_extractor: \{path: FILE, sha256: "
                         r"\.\.\.\}", err), err
        assert "inception" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

    weights = tmp_path / "folder_v2.pt"
    assert main(["extractor", "train", str(suite), "--out", str(weights), "--epochs", "2", "--batch-size", "16"]) == 0
    out = capsys.readouterr().out
    pin = re.search(r"pin it in a suite: evaluation: \{feature_extractor: \{path: (\S+), sha256: ([0-9a-f]{64})\}\}",
                    out)
    assert pin and pin.group(1) == str(weights) and "accuracy" in out
    from genbench.api.extractor import file_sha256

    sha = pin.group(2)
    assert file_sha256(weights) == sha

    pinned = write_suite(text % f", feature_extractor: {{path: {weights}, sha256: {sha}}}", "pinned.yaml")
    assert main(["validate", str(pinned)]) == 0
    capsys.readouterr()
    assert main(["run", str(pinned), "--out", str(tmp_path / "out")]) == 0
    run = next((tmp_path / "out" / "runs").iterdir())
    record = json.loads((run / "record.json").read_text())
    assert record["status"] == "ok" and record["metrics"]["fid"] is not None
    assert record["metric_details"]["feature_extractor"]["sha256"] == sha
    assert "folder_v2.pt the suite pinned" in (tmp_path / "out" / "report.html").read_text()

    wrong = write_suite(text % f", feature_extractor: {{path: {weights}, sha256: {'f' * 64}}}", "wrong.yaml")
    missing = write_suite(text % f", feature_extractor: {{path: {tmp_path / 'nope.pt'}, sha256: {sha}}}",
                          "missing.yaml")
    for path, said in ((wrong, f"evaluation.feature_extractor.sha256: {weights} has sha256 {sha}: not the pinned "
                        "file"), (missing, "evaluation.feature_extractor.path: no such file")):
        assert main(["validate", str(path), "--no-data"]) == 2
        assert said in capsys.readouterr().err



def test_extractor_train_works_on_a_colour_data_set_and_score_takes_its_file(tmp_path, capsys):
    weights = tmp_path / "shapes.pt"
    assert main(["extractor", "train", "color_shapes", "--out", str(weights), "--epochs", "1", "--set",
                 "train_size=256", "--set", "test_size=100"]) == 0
    sha = re.search(r"sha256 ([0-9a-f]{64})", capsys.readouterr().out).group(1)
    samples = tmp_path / "samples.npz"
    images, _ = colorshapes.generate(64, 3)
    np.savez(samples, samples=images.numpy())
    assert main(["score", str(samples), "--dataset", "color_shapes", "--extractor", str(weights), "--metrics",
                 "fid,precision", "--real-images", "200", "--out", str(tmp_path / "scored"), "--format", "json"]) == 0
    capsys.readouterr()
    record = json.loads(next((tmp_path / "scored" / "runs").glob("*/record.json")).read_text())
    assert record["metric_details"]["feature_extractor"]["sha256"] == sha
    assert record["reference"]["extractor"]["sha256"] == sha
    assert main(["score", str(samples), "--dataset", "color_shapes", "--extractor", str(tmp_path / "no.pt"),
                 "--out", str(tmp_path / "x")]) == 2
    assert "--extractor " in capsys.readouterr().err
    assert main(["extractor", "train", "color_shapes", "--out", str(weights), "--set", "train_size=-1"]) == 2
    assert "--set train_size: must be at least 10, got -1" in capsys.readouterr().err


ALL_MODELS = """
          - {model: ae, options: {hidden_dims: [32], latent_dim: 4}}
          - {model: vae, options: {hidden_dim: 32, latent_dim: 4, decoder: logistic, iw_samples: 2}}
          - {model: beta_vae, options: {hidden_dim: 32, latent_dim: 4}}
          - {model: beta_tc_vae, options: {hidden_dim: 32, latent_dim: 4}}
          - {model: cvae, options: {hidden_dim: 32, latent_dim: 4}}
          - {model: conv_vae, options: {channels: [8, 16], latent_dim: 4, decoder: logistic, iw_samples: 2}}
          - {model: gan, label: gan_dense, options: {hidden_dim: 32, latent_dim: 8}}
          - {model: gan, label: dcgan, options: {architecture: dcgan, hidden_dim: 32, latent_dim: 8}}
          - {model: flow, options: {steps: [1], hidden: 8}}
          - {model: ddpm, options: {channels: 8, timesteps: 20, sample_steps: 3, bound_timesteps: 3}}
          - {model: pixelcnn, options: {channels: 8, layers: 2}}
          - {model: cpixelcnn, options: {channels: 8, layers: 2}}
"""
METRICS = ["fid", "kid", "precision", "recall", "density", "coverage", "memorization", "cond_accuracy",
           "fid_per_class", "bce", "bce_sampled", "mse", "psnr", "ssim", "kl", "elbo", "iw_ll", "active_units",
           "nll", "bpd"]


@pytest.mark.slow
def test_every_builtin_model_and_metric_runs_on_colour_images(write_suite, tmp_path, registry):
    suite = write_suite(f"""
        name: colour_all
        dataset: {{name: color_shapes, options: {{train_size: 300, test_size: 120}}}}
        budget: {{steps: 2}}
        batch_size: 32
        metrics: [{", ".join(METRICS).replace("kid", "{name: kid, subset_size: 60}")}]
        evaluation: {{num_samples: 120}}
        runs:{ALL_MODELS}""")
    assert main(["run", str(suite), "--out", str(tmp_path / "out")]) == 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").glob("*/record.json")]
    assert len(records) == 12 and all(r["status"] == "ok" for r in records)
    for r in records:
        caps = set(registry.models[r["model"]].capabilities)
        for name in METRICS:
            needed = {genbench_cap(c) for c in registry.metrics[name].requires}
            if needed <= caps and not (name in ("nll", "bpd") and r["model"] in ("beta_vae", "beta_tc_vae", "cvae")):
                assert r["metrics"][name] is not None, (r["label"], name, r.get("metric_errors"))
    flow = next(r for r in records if r["model"] == "flow")  # bits per dimension count C x H x W dimensions
    assert flow["metrics"]["bpd"] == pytest.approx(flow["metrics"]["nll"] / (3 * 32 * 32 * np.log(2)), rel=1e-6)
    # the figures draw colour in colour: the test images' row of the reconstruction grid
    grid = Image.open(next((tmp_path / "out" / "runs").glob("conv_vae*")) / "reconstructions.png").convert("RGB")
    pixels = np.asarray(grid).astype(int)
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() > 100


def genbench_cap(value):
    import genbench

    return genbench.Capability(value)
