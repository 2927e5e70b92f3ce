"""CIFAR-10, SVHN, downsampled ImageNet and CelebA 64, each read from small files this test
writes in the data set's exact official format (issue 29, item 3)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from genbench.api import DataError
from genbench.plugins.standard import SVHN, CelebA64, CIFAR10, ImageNet32, ImageNet64
from genbench.testing import check_dataset


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    from genbench.api import dataset

    monkeypatch.setenv("GENBENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(dataset, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setattr(dataset, "DEBIAN_DATASETS", tmp_path / "none")
    return tmp_path / "data"


def cifar_records(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    return images, labels


def write_cifar(folder, per_file=7):
    folder.mkdir(parents=True)
    written = {}
    for i, name in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
        images, labels = cifar_records(per_file, i)
        # the official layout: a label byte, then the red, green and blue 32x32 planes
        np.concatenate([labels[:, None], images.reshape(per_file, -1)], axis=1).tofile(folder / name)
        written[name] = (images, labels)
    return written


def test_cifar10_binary_version(data_dir):
    written = write_cifar(data_dir / "cifar10" / "cifar-10-batches-bin")
    check_dataset(CIFAR10)
    test = CIFAR10().load("test", None, False)
    images, labels = written["test_batch.bin"]
    assert torch.equal(test.images, torch.from_numpy(images)) and test.labels.tolist() == labels.tolist()
    assert len(CIFAR10().load("train", None, False)) == 35
    bad = data_dir / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin"
    bad.write_bytes(bad.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"test_batch.bin: 21,506 bytes is not a whole number of CIFAR-10 records"):
        CIFAR10().load("test", None, False)


def test_cifar10_missing_says_where_it_looked(data_dir):
    with pytest.raises(Exception, match=r"no cifar10 data \(test split\) found; looked in: .*cifar-10-batches-bin"):
        CIFAR10().load("test", None, False)


def test_svhn_mat_files(data_dir):
    folder = data_dir / "svhn"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 9), ("test", 5)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # SVHN's own layout: H x W x C x N
        y = np.array([[10], [1], [2], [3], [4], [5], [6], [7], [9]][:n], dtype=np.uint8)  # 10 stands for 0
        scipy.io.savemat(folder / f"{split}_32x32.mat", {"X": x, "y": y})
    check_dataset(SVHN)
    test = SVHN().load("test", None, False)
    x = scipy.io.loadmat(folder / "test_32x32.mat")["X"]
    assert test.labels.tolist() == [0, 1, 2, 3, 4]
    assert torch.equal(test.images[2, 1], torch.from_numpy(x[:, :, 1, 2]))  # image 2, green
    scipy.io.savemat(folder / "test_32x32.mat", {"images": x})
    with pytest.raises(DataError, match=r"test_32x32.mat: expected an array X of uint8 32 x 32 x 3 x N, found none"):
        SVHN().load("test", None, False)


@pytest.mark.parametrize("cls", [ImageNet32, ImageNet64])
def test_downsampled_imagenet_npz_batches(data_dir, cls):
    c, h, w = cls.image_shape
    folder = data_dir / cls.name
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train_data_batch_1.npz", 6), ("train_data_batch_2.npz", 4), ("val_data.npz", 3)):
        data = rng.integers(0, 256, (n, c * h * w), dtype=np.uint8)
        np.savez(folder / name, data=data, labels=list(range(1, n + 1)), mean=data.mean(0))
    options = cls.Options(train_batches=2)
    check_dataset(cls, options)
    val = cls(options).load("test", None, False)
    data = np.load(folder / "val_data.npz")["data"]
    assert val.labels.tolist() == [0, 1, 2]  # stored 1-based
    assert torch.equal(val.images[1], torch.from_numpy(data[1].reshape(c, h, w)))
    assert len(cls(cls.Options(train_batches=1)).load("train", None, False)) == 6
    np.savez(folder / "val_data.npz", data=np.array([{"x": 1}] * 3, dtype=object), labels=[1, 2, 3])
    with pytest.raises(DataError, match=r"val_data.npz: not a readable .npz of arrays"):
        cls(options).load("test", None, False)


def test_celeba64_crop_resize_and_partition(data_dir):
    folder = data_dir / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    lines = []
    for i in range(6):
        im = np.zeros((218, 178, 3), dtype=np.uint8)  # the aligned faces: 178 wide, 218 high
        im[39:179, 19:159] = 40 * i  # exactly the centre 140 x 140
        name = f"{i + 1:06d}.jpg"
        Image.fromarray(im).save(folder / "img_align_celeba" / name, quality=100)
        lines.append(f"{name} {(0, 0, 0, 1, 2, 2)[i]}")
    (folder / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    check_dataset(CelebA64)
    test = CelebA64().load("test", None, False)
    assert test.images.shape == (2, 3, 64, 64) and len(CelebA64().load("train", None, False)) == 3
    # only the centre crop is kept: every pixel of image 5 is its value 160 (to JPEG's rounding)
    assert (test.images[0].int() - 160).abs().max() <= 3
    (folder / "img_align_celeba" / "000006.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"000006.jpg: not a readable image"):
        CelebA64().load("test", None, False)
