"""IDX reading, the data search order, and in-memory batching on the real files."""

from __future__ import annotations

import gzip
import hashlib
import shutil

import pytest
import torch

from genbench._torchvision_compat import ensure_torchvision
from genbench.api.dataset import ImageSet, find_files, read_idx, search_roots
from genbench.api.model import DataInfo
from genbench.errors import UserError
from genbench.engine.data import DeviceData

MD5 = {  # of the uncompressed files, as the original distributions publish them
    ("mnist", "t10k-images-idx3-ubyte"): "2646ac647ad5339dbf082846283269ea",
    ("fashion-mnist", "t10k-labels-idx1-ubyte"): "15d484375f8d13e6eb1aabb0c3f46965",
}


def test_idx_reader_matches_torchvision_on_real_files(data_root, tmp_path):
    ensure_torchvision()  # before any torchvision import (CPU torch next to a CUDA torchvision)
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor  # the reference

    for (folder, name), md5 in MD5.items():
        raw = tmp_path / name
        with gzip.open(data_root / folder / f"{name}.gz", "rb") as src, open(raw, "wb") as dst:
            shutil.copyfileobj(src, dst)
        assert hashlib.md5(raw.read_bytes()).hexdigest() == md5
        ours_gz = read_idx(data_root / folder / f"{name}.gz")
        ours_raw = read_idx(raw)
        reference = read_sn3_pascalvincent_tensor(str(raw), strict=False).numpy()
        assert (ours_gz == reference).all() and (ours_raw == reference).all()
        assert ours_gz.shape == reference.shape


def test_known_statistics_of_the_training_images(registry):
    train = registry.datasets["mnist"]().load("train", None, download=False)
    assert train.images.shape == (60000, 1, 28, 28) and train.images.dtype == torch.uint8
    x = train.images.float() / 255
    assert abs(x.mean().item() - 0.1307) < 1e-4 and abs(x.std().item() - 0.3081) < 1e-4
    fashion = registry.datasets["fashion_mnist"]().load("test", None, download=False)
    assert len(fashion) == 10000 and torch.bincount(fashion.labels).tolist() == [1000] * 10


def test_search_order_root_env_cache_debian(tmp_path, monkeypatch):
    monkeypatch.setenv("GENBENCH_DATA", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    roots = search_roots(tmp_path / "suite_root")
    assert roots == [tmp_path / "suite_root", tmp_path / "a", tmp_path / "b",
                     tmp_path / "home/.cache/genbench/data", __import__("pathlib").Path("/usr/share/datasets")]


def test_find_files_prefers_earlier_roots_and_accepts_plain_files(tmp_path, monkeypatch, data_root):
    monkeypatch.setenv("GENBENCH_DATA", str(data_root))
    monkeypatch.setenv("HOME", str(tmp_path))
    names = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    tried: list[str] = []
    found = find_files(names, ("mnist",), None, tried)
    assert found[0] == data_root / "mnist" / "t10k-images-idx3-ubyte.gz"
    # an uncompressed copy in the suite's own root wins over $GENBENCH_DATA
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in names:
        with gzip.open(data_root / "mnist" / f"{name}.gz") as src:
            (mine / name).write_bytes(src.read())
    found = find_files(names, ("mnist",), mine, [])
    assert found == [mine / n for n in names]


def _device_data(n: int) -> DeviceData:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    train = ImageSet(images, torch.arange(n) % 10)
    info = DataInfo("t", (1, 2, 2), 10, (), n)
    return DeviceData(info, train, train, "test")


def test_batches_are_slices_covering_each_image_once_per_epoch():
    data = _device_data(250)
    gen = torch.Generator().manual_seed(0)
    batches = list(data.batches(64, gen))
    assert [len(b.x) for b in batches] == [64, 64, 64, 58]
    seen = torch.cat([b.x[:, 0, 0, 0] * 255 for b in batches]).round().long()
    assert sorted(seen.tolist()) == list(range(250))
    assert all(b.x.dtype == torch.float32 and b.x.max() <= 1 for b in batches)
    assert all((b.y == (b.x[:, 0, 0, 0] * 255).round().long() % 10).all() for b in batches)
    again = torch.cat([b.x for b in data.batches(64, gen)])
    assert not torch.equal(again, torch.cat([b.x for b in batches]))  # reshuffled each epoch


def test_prepare_subsets_and_validation_split(registry, write_suite):
    from genbench.engine.config import load_suite
    from genbench.engine.runner import load_data

    suite = load_suite(write_suite("""
        name: v
        dataset: {name: fashion_mnist, validation: 5000, eval_split: validation, subset: 1000}
        budget: {steps: 1}
        runs: [{model: vae}]
    """), registry)
    data = load_data(suite, registry, torch.device("cpu"), download=False)
    assert len(data.train) == 1000 and len(data.eval) == 5000 and data.eval_split == "validation"
    assert data.info.train_size == 1000 and data.info.class_names[9] == "Ankle boot"
    again = load_data(suite, registry, torch.device("cpu"), download=False)
    assert torch.equal(data.eval.images, again.eval.images)  # the split is fixed
    assert torch.bincount(data.eval.labels).tolist() == [500] * 10  # and stratified: 6,000 of each class


def test_pooled_test_split_is_the_reference_protocol(registry, write_suite):
    """MNIST's 70,000 images pooled and re-split 63,000 / 7,000, class-stratified."""
    from genbench.engine.config import load_suite
    from genbench.engine.runner import load_data

    suite = load_suite(write_suite("""
        name: p
        dataset: {name: mnist, pooled_test: 7000}
        budget: {steps: 1}
        runs: [{model: vae}]
    """), registry)
    data = load_data(suite, registry, torch.device("cpu"), download=False)
    assert len(data.train) == 63000 and len(data.eval) == 7000 and data.info.train_size == 63000
    train = registry.datasets["mnist"]().load("train", None, False)
    test = registry.datasets["mnist"]().load("test", None, False)
    everything = torch.cat([train.labels, test.labels])
    expected = torch.bincount(everything).double() * 7000 / 70000
    assert (torch.bincount(data.eval.labels).double() - expected).abs().max() < 1  # stratified
    # a partition of the pooled images: pixel sums add up, and both halves hold former test images
    total = int(train.images.sum()) + int(test.images.sum())
    assert int(data.train.images.sum()) + int(data.eval.images.sum()) == total
    test_sums = set(test.images.flatten(1).sum(1).tolist())
    assert 0 < sum(v in test_sums for v in data.train.images.flatten(1).sum(1).tolist())
    assert torch.equal(data.eval.images, load_data(suite, registry, torch.device("cpu"), download=False).eval.images)
    too_big = load_suite(write_suite("""
        name: p
        dataset: {name: mnist, pooled_test: 70000}
        budget: {steps: 1}
        runs: [{model: vae}]
    """), registry)
    with pytest.raises(UserError, match="pooled_test: 70000 is not below the 70000 pooled"):
        load_data(too_big, registry, torch.device("cpu"), download=False)


def test_the_validation_split_is_class_stratified_exact_and_fixed():
    from genbench.engine.data import stratified_holdout

    g = torch.Generator().manual_seed(0)
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate([500, 300, 150, 49, 1])])[torch.randperm(1000, generator=g)]
    held, kept = stratified_holdout(labels, 101, seed=1234)
    assert len(held) == 101 and len(kept) == 899
    assert sorted(torch.cat([held, kept]).tolist()) == list(range(1000))  # a partition
    counts = torch.bincount(labels[held], minlength=5)
    exact = torch.tensor([500, 300, 150, 49, 1]) * 101 / 1000
    assert torch.all((counts - exact).abs() < 1)  # each class within one image of its share
    again = stratified_holdout(labels, 101, seed=1234)
    assert torch.equal(held, again[0]) and torch.equal(kept, again[1])
    assert not torch.equal(held, stratified_holdout(labels, 101, seed=7)[0])
