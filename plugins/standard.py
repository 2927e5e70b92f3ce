"""The colour data sets generative models are compared on, each from its official format.

Nothing is unpickled: CIFAR-10 is read from its binary version (fixed 3,073-byte
records), SVHN from its MATLAB files through SciPy, downsampled ImageNet from its
``.npz`` batches with ``allow_pickle=False``, CelebA from its aligned JPEGs through
Pillow. Files are found through the usual search (``dataset.root``, ``$GENBENCH_DATA``,
the cache, ``/usr/share/datasets``); with ``download: true`` and a connection, CIFAR-10
and SVHN are fetched with torchvision's utilities, checksums checked.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

import genbench
from genbench.api import CACHE_DIR, DataError, DataNotFound, cached_arrays, download_archive, search_roots

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/{split}_32x32.mat"
SVHN_MD5 = {"train": "e26dedcc434d2e4c54c9b2d4a06d8373", "test": "eb5a983be6a315427106f1b164d9cef3"}


def locate(folders: tuple[str, ...], names: list[str], root: Path | None, tried: list[str]) -> Path | None:
    """The first folder (``root/<folder>`` of the search order) that holds every one of ``names``."""
    for i, base in enumerate(search_roots(root)):
        for folder in ([base] if root and i == 0 else []) + [base / f for f in folders]:
            tried.append(str(folder))
            if all((folder / n).is_file() for n in names):
                return folder
    return None


def not_found(dataset: str, split: str, names: list[str], folders: tuple[str, ...], tried: list[str],
              extra: str = "") -> DataNotFound:
    return DataNotFound(f"no {dataset} data ({split} split) found; looked in: {', '.join(tried)}; put "
                        f"{', '.join(names[:3])}{'...' if len(names) > 3 else ''} in $GENBENCH_DATA/{folders[0]}/"
                        f"{extra}")


# CIFAR-10 ---------------------------------------------------------------------------

def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One file of CIFAR-10's binary version: records of a label byte and 3,072 pixel bytes
    (the red, green and blue 32x32 planes). Read with NumPy: there is no library reader
    of this version (torchvision reads the pickled one, which genbench never unpickles)."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % 3073:
        raise DataError(f"{path}: {raw.size:,} bytes is not a whole number of CIFAR-10 records (3,073 bytes each)")
    records = raw.reshape(-1, 3073)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"{path}: labels must be 0..9, found {labels.max()}; is this the CIFAR-10 binary version?")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


class CIFAR10(genbench.Dataset):
    name = "cifar10"
    description = "CIFAR-10: 60,000 colour images of 10 classes, 3x32x32 (binary version)"
    image_shape = (3, 32, 32)
    class_names = CIFAR10_CLASSES
    folders: ClassVar[tuple[str, ...]] = ("cifar10/cifar-10-batches-bin", "cifar-10-batches-bin", "cifar10")
    files = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}

    def load(self, split, root, download):
        tried: list[str] = []
        names = self.files[split]
        folder = locate(self.folders, names, root, tried)
        if folder is None and download:
            if download_archive(CIFAR10_URL, CACHE_DIR.expanduser() / "cifar10", CIFAR10_MD5, tried):
                folder = locate(self.folders, names, root, tried)
        if folder is None:
            raise not_found(self.name, split, names, self.folders, tried,
                            f" (the binary version, {CIFAR10_URL})")
        parts = [read_cifar_batch(folder / n) for n in names]
        return genbench.ImageSet(torch.from_numpy(np.concatenate([p[0] for p in parts])),
                                 torch.from_numpy(np.concatenate([p[1] for p in parts])))


# SVHN -------------------------------------------------------------------------------

class SVHN(genbench.Dataset):
    name = "svhn"
    description = "SVHN: house-number digits, 3x32x32 (cropped digits, .mat files; 'extra' not used)"
    image_shape = (3, 32, 32)
    class_names = tuple(str(d) for d in range(10))
    folders: ClassVar[tuple[str, ...]] = ("svhn", "SVHN")

    def load(self, split, root, download):
        from scipy.io import loadmat

        tried: list[str] = []
        name = f"{split}_32x32.mat"
        folder = locate(self.folders, [name], root, tried)
        if folder is None and download:
            target = CACHE_DIR.expanduser() / "svhn"
            if download_archive(SVHN_URL.format(split=split), target, SVHN_MD5[split], tried, extract=False):
                folder = locate(self.folders, [name], root, tried)
        if folder is None:
            raise not_found(self.name, split, [name], self.folders, tried)
        path = folder / name
        try:
            mat = loadmat(path, variable_names=["X", "y"])
        except Exception as err:  # not a MATLAB file, or a damaged one
            raise DataError(f"{path}: not a readable .mat file: {err}") from None
        x, y = mat.get("X"), mat.get("y")
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
            raise DataError(f"{path}: expected an array X of uint8 32 x 32 x 3 x N, found "
                            f"{'none' if x is None else f'{x.dtype} {x.shape}'}")
        if not isinstance(y, np.ndarray) or y.size != x.shape[3] or not np.issubdtype(y.dtype, np.number):
            raise DataError(f"{path}: expected {x.shape[3]} labels in an array y")
        labels = y.reshape(-1).astype(np.int64) % 10  # SVHN writes the digit 0 as 10
        if labels.min() < 0 or y.max() > 10:
            raise DataError(f"{path}: labels must be 1..10")
        return genbench.ImageSet(torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1))),
                                 torch.from_numpy(labels))


# Downsampled ImageNet ----------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ImageNetOptions:
    train_batches: int = genbench.option(10, "training batches read (train_data_batch_1..N of 10, about "
                                         "128,000 images each)", min=1, max=10)


class ImageNet32(genbench.Dataset):
    name = "imagenet32"
    description = "downsampled ImageNet (Chrabaszcz et al. 2017), 3x32x32, 1,000 classes, .npz batches"
    image_shape = (3, 32, 32)
    folders: ClassVar[tuple[str, ...]] = ("imagenet32", "Imagenet32_train_npz", "Imagenet32_val_npz")
    Options = ImageNetOptions

    def load(self, split, root, download):
        names = ([f"train_data_batch_{i}.npz" for i in range(1, self.options.train_batches + 1)]
                 if split == "train" else ["val_data.npz"])
        tried: list[str] = []
        folders = [locate(self.folders, [n], root, tried) for n in names]
        missing = [n for n, f in zip(names, folders) if f is None]
        if missing:
            raise not_found(self.name, split, missing, self.folders, tried,
                            " (from image-net.org's downsampled ImageNet, npz format)")
        parts = [self._batch(folder / n) for folder, n in zip(folders, names)]
        return genbench.ImageSet(torch.from_numpy(np.concatenate([p[0] for p in parts])),
                                 torch.from_numpy(np.concatenate([p[1] for p in parts])))

    def _batch(self, path: Path) -> tuple[np.ndarray, np.ndarray]:
        c, h, w = self.image_shape
        try:
            with np.load(path, allow_pickle=False) as npz:
                data, labels = npz["data"], npz["labels"]
        except KeyError as err:
            raise DataError(f"{path}: holds no {err} array; expected 'data' and 'labels'") from None
        except Exception as err:  # object arrays, a pickle, a damaged zip
            raise DataError(f"{path}: not a readable .npz of arrays: {err}") from None
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != c * h * w:
            raise DataError(f"{path}: expected data of uint8 N x {c * h * w}, found {data.dtype} {data.shape}")
        labels = np.asarray(labels).reshape(-1).astype(np.int64) - 1  # stored as 1..1000
        if len(labels) != len(data) or labels.min() < 0 or labels.max() > 999:
            raise DataError(f"{path}: expected {len(data)} labels in 1..1000")
        return data.reshape(-1, c, h, w), labels


class ImageNet64(ImageNet32):
    name = "imagenet64"
    description = "downsampled ImageNet (Chrabaszcz et al. 2017), 3x64x64, 1,000 classes, .npz batches"
    image_shape = (3, 64, 64)
    folders: ClassVar[tuple[str, ...]] = ("imagenet64", "Imagenet64_train_npz", "Imagenet64_val_npz")


# CelebA 64 -------------------------------------------------------------------------

CELEBA_CROP = 140  # the usual centre crop of the 178 x 218 aligned faces, then resized to 64


def celeba_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode != "RGB":
                raise DataError(f"{path}: image mode {im.mode}; CelebA's aligned images are RGB")
            w, h = im.size
            left, top = (w - CELEBA_CROP) // 2, (h - CELEBA_CROP) // 2
            im = im.crop((left, top, left + CELEBA_CROP, top + CELEBA_CROP))
            return np.asarray(im.resize((64, 64), Image.Resampling.BICUBIC), dtype=np.uint8).transpose(2, 0, 1)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError) as err:
        raise DataError(f"{path}: not a readable image: {err}") from None


class CelebA64(genbench.Dataset):
    name = "celeba64"
    description = "CelebA aligned faces, 140-pixel centre crop resized to 3x64x64; the official partition"
    image_shape = (3, 64, 64)
    folders: ClassVar[tuple[str, ...]] = ("celeba",)
    PARTITION = {"train": "0", "test": "2"}  # 1 (validation) is left out, as in most papers

    def load(self, split, root, download):
        tried: list[str] = []
        folder = locate(self.folders, ["list_eval_partition.txt"], root, tried)
        if folder is None or not (folder / "img_align_celeba").is_dir():
            raise not_found(self.name, split, ["list_eval_partition.txt", "img_align_celeba/"], self.folders, tried)
        names = []
        for number, line in enumerate((folder / "list_eval_partition.txt").read_text().splitlines(), 1):
            parts = line.split()
            if len(parts) != 2 or parts[1] not in "012":
                raise DataError(f"{folder / 'list_eval_partition.txt'}: line {number} is not 'IMAGE PARTITION'")
            if parts[1] == self.PARTITION[split]:
                names.append(parts[0])
        paths = [folder / "img_align_celeba" / n for n in names]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DataError(f"{missing[0]}: listed in list_eval_partition.txt but missing ({len(missing)} in all)")
        key = hashlib.sha256("".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns};" for p in paths)
                             .encode()).hexdigest()[:32]
        arrays = cached_arrays("celeba64", f"{split}-{key}",
                               lambda: {"images": np.stack([celeba_image(p) for p in paths])})
        images = torch.from_numpy(arrays["images"])
        return genbench.ImageSet(images, torch.zeros(len(images), dtype=torch.int64))


@genbench.hookimpl
def register_datasets(register):
    for cls in (CIFAR10, SVHN, ImageNet32, ImageNet64, CelebA64):
        register(cls)
