"""Plugin discovery: entry points, the load filter, and misbehaving plugins."""

from __future__ import annotations

import json
import os
import subprocess
import types

import pytest

import genbench
from genbench.engine import pluginmanager

from conftest import genbench_cmd


def plugins_json(env_extra: dict | None = None) -> dict:
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run(genbench_cmd() + ["plugins", "--json"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_builtins_come_from_entry_points_of_the_genbench_distribution():
    info = plugins_json()
    vae = next(m for m in info["models"] if m["name"] == "vae")
    assert vae["distribution"] == "genbench" and vae["plugin"] == "vae"
    assert vae["capabilities"] == ["decode", "likelihood", "posterior", "reconstruct", "sample"]
    assert {o["name"] for o in vae["options"]} >= {"hidden_dim", "latent_dim", "beta", "kl_warmup_epochs"}
    assert {d["name"] for d in info["datasets"]} == {"mnist", "fashion_mnist", "dsprites", "image_folder",
                                                       "cifar10", "svhn", "imagenet32", "imagenet64", "celeba64",
                                                       "color_dsprites", "noisy_dsprites", "color_shapes"}
    assert {"bce", "kl"} <= {m["name"] for m in info["metrics"]}
    assert info["warnings"] == []


def test_load_filter_limits_plugins():
    assert plugins_json({"GENBENCH_LOAD_PLUGINS": ""})["models"] == []
    only = plugins_json({"GENBENCH_LOAD_PLUGINS": "datasets, vae"})
    # the vae plugin module registers the VAE family; ae and gan stay out
    assert {m["name"] for m in only["models"]} == {"vae", "beta_vae", "beta_tc_vae", "conv_vae", "cvae"}
    assert only["metrics"] == [] and {d["name"] for d in only["datasets"]} == {"mnist", "fashion_mnist"}
    by_dist = plugins_json({"GENBENCH_LOAD_PLUGINS": "genbench"})
    assert {m["name"] for m in by_dist["models"]} == {"ae", "vae", "beta_vae", "beta_tc_vae", "conv_vae", "cvae",
                                                      "gan", "flow", "pixelcnn", "cpixelcnn", "ddpm"}


class Tiny(genbench.Model):
    name = "mock_tiny"
    description = "a mock"

    def train_step(self, batch, step):  # pragma: no cover - never trained here
        raise AssertionError


def _register(name: str, module: types.SimpleNamespace):
    pluginmanager.pm.register(module, name=name)


def test_mock_plugin_registers_and_unregisters():
    plugin = types.SimpleNamespace(register_models=genbench.hookimpl(lambda register: register(Tiny)))
    _register("mock", plugin)
    try:
        reg = pluginmanager.get_registry()
        assert reg.models["mock_tiny"] is Tiny
        assert reg.sources[("model", "mock_tiny")].distribution == pluginmanager.RUNTIME
    finally:
        pluginmanager.pm.unregister(name="mock")
    assert "mock_tiny" not in pluginmanager.get_registry().models


def test_duplicate_and_invalid_registrations_are_warnings_and_others_work(mock_plugins):
    class Dup(Tiny):
        name = "vae"

    class NoSample(Tiny):
        name = "mock_nosample"
        capabilities = frozenset({genbench.Capability.SAMPLE})

    def register_models(register):
        register(Dup)
        register(NoSample)
        register(Tiny)
        register("not a class")

    mock_plugins("mock", register_models=register_models)
    reg = pluginmanager.get_registry()
    assert reg.models["vae"].__module__ == "genbench.plugins.vae"  # the first one wins
    assert "mock_tiny" in reg.models and "mock_nosample" not in reg.models
    text = "\n".join(reg.warnings)
    assert "model 'vae' is registered already by plugin 'vae' (genbench" in text
    assert "declares 'sample' but does not implement sample()" in text
    assert "is not a subclass of genbench.Model" in text


def test_a_failing_hook_is_a_warning(mock_plugins):
    def register_models(register):
        raise RuntimeError("boom")

    mock_plugins("mock", register_models=register_models)
    reg = pluginmanager.get_registry()
    assert any("register_models failed: RuntimeError: boom" in w for w in reg.warnings)
    assert "vae" in reg.models


def _distribution(root, name: str, module: str, code: str) -> None:
    """An installed distribution as pip leaves it: a module and a dist-info with its entry point."""
    (root / f"{module}.py").write_text(code)
    info = root / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[genbench]\n{module} = {module}\n")


TORCHVISION_PLUGIN = """
import torchvision  # next to the CPU torch this fails unless genbench's workaround came first
import genbench
from genbench.plugins.ae import AE

class TvAE(AE):
    name = "tv_ae"

@genbench.hookimpl
def register_models(register):
    register(TvAE)
"""

MISSPELT_PLUGIN = """
import genbench

@genbench.hookimpl
def register_model(register):
    pass
"""


@pytest.fixture
def third_party(tmp_path):
    _distribution(tmp_path, "genbench-tv", "tvplugin", TORCHVISION_PLUGIN)
    _distribution(tmp_path, "genbench-typo", "typoplugin", MISSPELT_PLUGIN)
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def test_bad_plugins_are_left_out_and_every_command_works(third_party):
    info = plugins_json(third_party)
    models = {m["name"]: m for m in info["models"]}
    assert models["tv_ae"]["distribution"] == "genbench-tv" and "vae" in models
    (warning,) = info["warnings"]
    assert warning.startswith("plugin 'typoplugin' (genbench-typo 1.0) implements unknown hook 'register_model'")
    assert "did you mean 'register_models'" in warning and warning.endswith("the plugin is left out")


def test_disable_plugins_leaves_out_by_name_or_distribution(third_party):
    info = plugins_json({**third_party, "GENBENCH_DISABLE_PLUGINS": "genbench-typo, gan"})
    names = {m["name"] for m in info["models"]}
    assert info["warnings"] == [] and "gan" not in names and {"tv_ae", "ae", "vae"} <= names


def test_plugin_warnings_are_kept_with_the_results(third_party, tmp_path):
    from conftest import TINY

    suite = tmp_path / "s.yaml"
    suite.write_text(TINY)
    proc = subprocess.run(genbench_cmd() + ["run", str(suite), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env={**os.environ, **third_party})
    assert proc.returncode == 0, proc.stderr
    assert "implements unknown hook 'register_model'" in proc.stderr
    env = json.loads((tmp_path / "out" / "env.json").read_text())
    assert len(env["plugin_warnings"]) == 1 and "genbench-typo" in env["plugin_warnings"][0]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "when the suite ran: plugin &#x27;typoplugin&#x27; (genbench-typo 1.0) implements unknown hook" in page


def test_a_misspelt_hook_registered_at_run_time_is_left_out_too():
    plugin = types.SimpleNamespace(register_model=genbench.hookimpl(lambda register: None))
    _register("mock", plugin)
    try:
        reg = pluginmanager.get_registry()
    finally:
        pluginmanager.pm.unregister(name="mock")
    assert any("implements unknown hook 'register_model'; did you mean 'register_models'" in w
               for w in reg.warnings)
    assert not pluginmanager.pm.has_plugin("mock") and "vae" in reg.models


def test_plugins_metric_shows_one_metric(capsys):
    from genbench.cli import main

    assert main(["plugins", "--metric", "kl", "--json"]) == 0
    kl = json.loads(capsys.readouterr().out)
    assert kl["requires"] == ["posterior"] and kl["higher_is_better"] is False and kl["unit"] == "nats/image"
    assert main(["plugins", "--metric", "fdi"]) == 2
    assert "--metric fdi: not installed; did you mean 'fid'?" in capsys.readouterr().err
