"""Metrics own their options and preconditions (issue 10, item 3)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml

import genbench
from genbench.cli import main
from genbench.engine.config import load_suite
from genbench.engine.pluginmanager import get_registry
from genbench.errors import ConfigErrors

SYNTH = """
name: opts
dataset: {{name: synthetic, subset: 256, test_subset: 128}}
budget: {{steps: 2}}
batch_size: 32
metrics: {metrics}
evaluation: {{num_samples: 128}}
runs:
  - model: ae
    options: {{hidden_dims: [16], latent_dim: 2}}
"""


@dataclasses.dataclass(frozen=True)
class MeanOptions:
    scale: float = genbench.option(1.0, "multiplies the score", min=0)
    images: int = genbench.option(16, "first N evaluation images", min=1)


def mean_pixel(ctx, options: MeanOptions) -> float:
    return float(ctx.reconstructions[:options.images].mean()) * options.scale


def check_mean(setup) -> list[str]:
    if setup.options.images > setup.eval_images:
        return [f"images {setup.options.images} is more than the {setup.eval_images} evaluation images"]
    return []


MEAN = genbench.Metric("mean_pixel", mean_pixel, {genbench.Capability.RECONSTRUCT}, description="test metric",
                       Options=MeanOptions, check=check_mean)


@pytest.fixture
def mean_metric(mock_plugins, synthetic_dataset):
    mock_plugins("mock_mean_metric", register_metrics=lambda register: register(MEAN))


def test_a_metric_gets_the_options_its_suite_sets(mean_metric, write_suite, tmp_path):
    path = write_suite(SYNTH.format(metrics="[bce, {name: mean_pixel, scale: 0}]"))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    rec = json.loads(next(out.glob("runs/*/record.json")).read_text())
    assert rec["metrics"]["mean_pixel"] == 0.0 and rec["metrics"]["bce"] > 0  # scale 0 reached compute
    assert rec["metric_options"] == {"mean_pixel": {"scale": 0.0, "images": 16}}
    saved = yaml.safe_load((out / "suite.yaml").read_text())
    assert saved["metrics"] == ["bce", {"name": "mean_pixel", "scale": 0.0, "images": 16}]
    # the saved suite reads back as the same suite, so --resume accepts it
    assert main(["run", str(path), "--out", str(out), "--resume"]) == 0


def test_metric_options_are_validated_with_file_field_and_line(mean_metric, write_suite, capsys):
    path = write_suite(SYNTH.format(metrics="[bce, {name: mean_pixel, scael: 2, images: 0}, {name: bce}]"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: metrics[1].scael: unknown option 'scael'; did you mean 'scale'? (line 6)" in err
    assert f"{path}: metrics[1].images: must be at least 1, got 0 (line 6)" in err
    assert f"{path}: metrics[2]: metric 'bce' is listed twice; list each metric once (line 6)" in err


def test_options_on_a_metric_without_options_are_refused(registry, write_suite):
    path = write_suite(SYNTH.format(metrics="[{name: bce, k: 3}]").replace("synthetic", "mnist"))
    with pytest.raises(ConfigErrors) as err:
        load_suite(path, registry)
    assert "metrics[0].k: metric 'bce' has no options" in str(err.value.lines)


def test_validate_runs_each_metrics_own_check_before_anything_trains(mean_metric, write_suite, tmp_path, capsys):
    path = write_suite(SYNTH.format(metrics="[bce, {name: mean_pixel, images: 500}]"))
    assert main(["validate", str(path)]) == 2
    assert (f"{path}: metrics[1]: metric 'mean_pixel': images 500 is more than the 128 evaluation images "
            f"(line 6)") in capsys.readouterr().err
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()  # refused before training: nothing written


def test_a_check_that_raises_is_reported_not_a_traceback(mock_plugins, synthetic_dataset, write_suite, capsys):
    broken = dataclasses.replace(MEAN, check=lambda setup: 1 / 0)
    mock_plugins("mock_broken_check", register_metrics=lambda register: register(broken))
    assert main(["validate", str(write_suite(SYNTH.format(metrics="[mean_pixel]")))]) == 2
    err = capsys.readouterr().err
    assert "metric 'mean_pixel': its check raised ZeroDivisionError" in err and "Traceback" not in err


def test_builtin_checks_refuse_impossible_sample_settings(synthetic_dataset, write_suite, capsys):
    text = SYNTH.format(metrics="[fid, {name: kid, subset_size: 200}, {name: precision, k: 500}]")
    # the synthetic set ships no extractor: Inception (the file is read only when scoring)
    text = text.replace("{num_samples: 128}", "{num_samples: 128, feature_extractor: inception, "
                        "feature_extractor_weights_path: inception.pth}")
    assert main(["validate", "--no-data", str(write_suite(text))]) == 0  # counts need the data
    assert main(["validate", str(write_suite(text))]) == 2
    err = capsys.readouterr().err
    assert "metrics[1]: metric 'kid': subset_size 200 is more than the 128 samples (evaluation.num_samples)" in err
    assert "metrics[1]: metric 'kid': subset_size 200 is more than the 128 evaluation images" in err
    assert "metrics[2]: metric 'precision': k 500 needs more than 128 images on each side" in err


def test_old_evaluation_settings_still_work_with_a_warning(registry, write_suite, capsys):
    text = SYNTH.replace("synthetic", "mnist").format(metrics="[fid, kid, precision, recall, iw_ll]")
    text = text.replace("{num_samples: 128}", "{num_samples: 128, kid_subset_size: 64, kid_subsets: 7, "
                        "prc_neighborhood: 5, iw_samples: 9}")
    suite = load_suite(write_suite(text), registry)
    options = {k: dataclasses.asdict(v) for k, v in suite.metric_options.items() if v is not None}
    assert options == {"kid": {"subset_size": 64, "subsets": 7}, "precision": {"k": 5}, "recall": {"k": 5},
                       "iw_ll": {"samples": 9, "images": None}}
    assert any("evaluation.kid_subset_size: deprecated" in w and "{name: kid, subset_size: 64}" in w
               and w.endswith("(line 7)") for w in suite.warnings)
    assert len(suite.warnings) == 4


def test_plugins_metric_shows_its_options(mean_metric, capsys):
    assert main(["plugins", "--metric", "mean_pixel", "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)
    assert [(o["name"], o["default"]) for o in entry["options"]] == [("scale", 1.0), ("images", 16)]
    assert entry["checks"] is True
    assert main(["plugins", "--metric", "kid"]) == 0
    out = capsys.readouterr().out
    assert "options of metric 'kid'" in out and "subset_size" in out and "random subsets averaged" in out


def test_metric_options_must_be_a_dataclass():
    with pytest.raises(ValueError, match="Options must be a dataclass"):
        genbench.Metric("bad", mean_pixel, Options=dict)
    assert get_registry().metrics["kid"].default_options().subset_size == 1000
