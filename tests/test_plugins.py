"""Plugin discovery: entry points, the load filter, and misbehaving plugins."""

from __future__ import annotations

import json
import os
import subprocess
import types

import pytest

import genbench
from conftest import genbench_cmd
from genbench import pluginmanager
from genbench.errors import PluginError


def plugins_json(env_extra: dict | None = None) -> dict:
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run(genbench_cmd() + ["plugins", "--json"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_builtins_come_from_entry_points_of_the_genbench_distribution():
    info = plugins_json()
    vae = next(m for m in info["models"] if m["name"] == "vae")
    assert vae["distribution"] == "genbench" and vae["plugin"] == "vae"
    assert vae["capabilities"] == ["posterior", "reconstruct", "sample"]
    assert {o["name"] for o in vae["options"]} >= {"hidden_dim", "latent_dim", "beta", "kl_warmup_epochs"}
    assert {d["name"] for d in info["datasets"]} == {"mnist", "fashion_mnist"}
    assert {"bce", "kl"} <= {m["name"] for m in info["metrics"]}
    assert info["warnings"] == []


def test_load_filter_limits_plugins():
    assert plugins_json({"GENBENCH_LOAD_PLUGINS": ""})["models"] == []
    only = plugins_json({"GENBENCH_LOAD_PLUGINS": "datasets, vae"})
    # the vae plugin module registers the VAE family; ae and gan stay out
    assert {m["name"] for m in only["models"]} == {"vae", "beta_vae", "conv_vae", "cvae"}
    assert only["metrics"] == [] and {d["name"] for d in only["datasets"]} == {"mnist", "fashion_mnist"}
    by_dist = plugins_json({"GENBENCH_LOAD_PLUGINS": "genbench"})
    assert {m["name"] for m in by_dist["models"]} == {"ae", "vae", "beta_vae", "conv_vae", "cvae", "gan"}


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


def test_duplicate_and_invalid_registrations_are_warnings_and_others_work():
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

    _register("mock", types.SimpleNamespace(register_models=genbench.hookimpl(register_models)))
    try:
        reg = pluginmanager.get_registry()
    finally:
        pluginmanager.pm.unregister(name="mock")
    assert reg.models["vae"].__module__ == "genbench.plugins.vae"  # the first one wins
    assert "mock_tiny" in reg.models and "mock_nosample" not in reg.models
    text = "\n".join(reg.warnings)
    assert "model 'vae' is registered already by plugin 'vae' (genbench" in text
    assert "declares 'sample' but does not implement sample()" in text
    assert "is not a subclass of genbench.Model" in text


def test_a_failing_hook_is_a_warning():
    def register_models(register):
        raise RuntimeError("boom")

    _register("mock", types.SimpleNamespace(register_models=genbench.hookimpl(register_models)))
    try:
        reg = pluginmanager.get_registry()
    finally:
        pluginmanager.pm.unregister(name="mock")
    assert any("register_models failed: RuntimeError: boom" in w for w in reg.warnings)
    assert "vae" in reg.models


def test_misspelt_hook_is_an_error():
    plugin = types.SimpleNamespace(register_model=genbench.hookimpl(lambda register: None))
    _register("mock", plugin)
    try:
        with pytest.raises(PluginError) as info:
            pluginmanager._check_hook_names()
    finally:
        pluginmanager.pm.unregister(name="mock")
    assert "implements unknown hook 'register_model'; did you mean 'register_models'" in str(info.value)
