"""Shared fixtures. Tests use the real MNIST / Fashion-MNIST files from ../shared/data
(or $GENBENCH_DATA), never synthetic stand-ins for them."""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
if "GENBENCH_DATA" not in os.environ and DEFAULT_DATA.is_dir():
    os.environ["GENBENCH_DATA"] = str(DEFAULT_DATA)
DATA = Path(os.environ.get("GENBENCH_DATA", DEFAULT_DATA))
# Reference statistics are cached per user; the tests' go to a folder of their own.
os.environ.setdefault("GENBENCH_CACHE", tempfile.mkdtemp(prefix="genbench-test-cache-"))


def pytest_collection_modifyitems(config, items):
    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA / "mnist").is_dir():
        pytest.fail(f"test data not found in {DATA}; set GENBENCH_DATA to the folder holding mnist/")
    return DATA


@pytest.fixture(scope="session")
def registry():
    from genbench.engine.pluginmanager import get_registry

    return get_registry()


@pytest.fixture
def write_suite(tmp_path):
    """Write a suite file from YAML text and return its path."""
    def write(text: str, name: str = "suite.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path
    return write


def genbench_cmd() -> list[str]:
    return [sys.executable, "-m", "genbench"]


TINY = """
name: tiny
dataset: {name: mnist, subset: 512, test_subset: 256}
budget: {steps: 8}
seeds: [0]
batch_size: 64
runs:
  - model: vae
    options: {hidden_dim: 64, latent_dim: 4}
"""


@pytest.fixture(scope="session")
def finished_folder(tmp_path_factory, data_root) -> Path:
    """A real results folder of one tiny finished run (copy it before changing it)."""
    from genbench.cli import main

    out = tmp_path_factory.mktemp("finished") / "out"
    suite = out.parent / "tiny.yaml"
    suite.write_text(textwrap.dedent(TINY))
    assert main(["run", str(suite), "--out", str(out), "--device", "cpu"]) == 0
    return out


@pytest.fixture
def results_copy(finished_folder, tmp_path) -> Path:
    import shutil

    out = tmp_path / "results"
    shutil.copytree(finished_folder, out)
    return out


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs (a real full disk or read-only folder); skipped where mount is not allowed."""
    import subprocess

    mounted = []

    def mount(name: str, size: str = "1m", readonly: bool = False) -> Path:
        point = tmp_path / name
        point.mkdir()
        opts = f"size={size}" + (",ro" if readonly else "")
        if subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)],
                          capture_output=True).returncode != 0:
            pytest.skip("mounting a tmpfs is not permitted here")
        mounted.append(point)
        return point

    def remount(point: Path, opts: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{opts}", str(point)], check=True, capture_output=True)

    mount.remount = remount
    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


@pytest.fixture
def mock_plugins():
    """``mock_plugins(name, register_models=fn, ...)`` registers hook implementations as a
    plugin for one test; every one is unregistered after it, pass or fail."""
    from genbench.engine import pluginmanager

    names = []

    def register(name: str, **hooks):
        names.append(name)
        return register_mock(name, **hooks)
    yield register
    for name in names:
        pluginmanager.pm.unregister(name=name)


def register_mock(name: str, **hooks):
    """Register hook implementations under ``name``; returns the plugin (unregister it after)."""
    import types

    from genbench import hookimpl
    from genbench.engine import pluginmanager

    plugin = types.SimpleNamespace(**{hook: hookimpl(fn) for hook, fn in hooks.items()})
    pluginmanager.pm.register(plugin, name=name)
    return plugin


class Synthetic:
    """A tiny procedurally generated data set: 3x16x16 colour images, 4 classes.

    Class c lights up quadrant c in channel c % 3, over seeded noise, so a small network
    learns it in one epoch; for fast unit tests that need no MNIST files.
    """

    @staticmethod
    def make(n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        labels = torch.arange(n) % 4
        images = torch.randint(0, 60, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
        for c in range(4):
            rows, cols = divmod(c, 2)
            images[labels == c, c % 3, rows * 8:rows * 8 + 8, cols * 8:cols * 8 + 8] += 180
        return images, labels


@pytest.fixture
def synthetic_dataset():
    """Register the synthetic data set as a plugin named 'synthetic' for one test."""
    from genbench.api import Dataset, ImageSet
    from genbench.engine import pluginmanager

    class SyntheticDataset(Dataset):
        name = "synthetic"
        description = "procedural 3x16x16 images, 4 classes (tests only)"
        image_shape = (3, 16, 16)
        class_names = ("a", "b", "c", "d")

        def load(self, split, root, download):
            images, labels = Synthetic.make(2048 if split == "train" else 512, 0 if split == "train" else 1)
            return ImageSet(images, labels)

    register_mock("mock_synthetic", register_datasets=lambda register: register(SyntheticDataset))
    try:
        yield SyntheticDataset
    finally:
        pluginmanager.pm.unregister(name="mock_synthetic")
