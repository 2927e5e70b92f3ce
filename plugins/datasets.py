"""Built-in data sets: MNIST and Fashion-MNIST from IDX files."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

import genbench
from genbench.api import CACHE_DIR, DataError, DataNotFound, ExtractorSpec, find_files, read_idx, torchvision_download

# Domain feature extractors made by `genbench extractor train DATASET --out weights/DATASET_v2.pt`
# (6 epochs, DomainNetV2: classifier and autoencoder); the hashes pin them.
WEIGHTS = Path(__file__).parent / "weights"
MNIST_SHA256 = "5011c78f47299d7e6afb9a77e4521099ffcafc4b39485d80c5f64d02effed2a2"
FASHION_SHA256 = "3daf18479ce8e5f36536facbf2314c64d9737c2b09593b066f3cdc01601aef38"

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class IdxDataset(genbench.Dataset):
    """A 28x28 grey-scale data set stored as the four standard IDX files."""

    folders: ClassVar[tuple[str, ...]] = ()   # sub-folders of each search root
    torchvision_name: ClassVar[str] = ""      # torchvision.datasets class for downloads
    hint: ClassVar[str] = ""

    def load(self, split: str, root: Path | None, download: bool) -> genbench.ImageSet:
        tried: list[str] = []
        found = find_files(_FILES[split], self.folders, root, tried)
        if found is None and download:
            if torchvision_download(self.torchvision_name, CACHE_DIR.expanduser(), tried):
                found = find_files(_FILES[split], self.folders, root, tried)
        if found is None:
            raise DataNotFound(
                f"no {self.name} data ({split} split) found; looked in: {', '.join(tried)}; "
                f"set GENBENCH_DATA or dataset.root to a folder holding {'/'.join(self.folders[:1])}/"
                f"{_FILES[split][0]}[.gz]{self.hint}")
        images, labels = read_idx(found[0]), read_idx(found[1])
        if images.ndim != 3 or images.shape[1:] != self.image_shape[1:] or images.dtype != np.uint8:
            raise DataError(f"{found[0]}: expected {self.name} images of shape (N, "
                            f"{self.image_shape[1]}, {self.image_shape[2]}) as bytes, found "
                            f"{images.dtype} {images.shape}")
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{found[1]}: expected {len(images)} labels (one per image in "
                            f"{found[0].name}), found shape {labels.shape}")
        if len(labels) and not (0 <= labels.min() and labels.max() < len(self.class_names)):
            raise DataError(f"{found[1]}: labels must be 0..{len(self.class_names) - 1}, "
                            f"found {labels.min()}..{labels.max()}")
        return genbench.ImageSet(torch.from_numpy(images.copy()).unsqueeze(1),
                                 torch.from_numpy(labels.astype(np.int64)))


class MNIST(IdxDataset):
    name = "mnist"
    description = "MNIST handwritten digits, 60k train / 10k test, 28x28 grey"
    class_names = tuple(str(i) for i in range(10))
    folders = ("mnist", "MNIST/raw")
    torchvision_name = "MNIST"
    extractor = ExtractorSpec(WEIGHTS / "mnist_v2.pt", MNIST_SHA256, architecture="v2")
    hint = (" (no Debian package holds MNIST: online, `genbench run` downloads it through torchvision, which "
            "checks each file's MD5, into ~/.cache/genbench/data; offline, copy the four IDX files "
            "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
            "t10k-labels-idx1-ubyte.gz) from a machine that has them into $GENBENCH_DATA/mnist/)")


class FashionMNIST(IdxDataset):
    name = "fashion_mnist"
    description = "Fashion-MNIST (Zalando) clothing, 60k train / 10k test, 28x28 grey"
    class_names = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    folders = ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw")
    torchvision_name = "FashionMNIST"
    extractor = ExtractorSpec(WEIGHTS / "fashion_mnist_v2.pt", FASHION_SHA256, architecture="v2")
    hint = " (Debian: apt-get install dataset-fashion-mnist)"


@genbench.hookimpl
def register_datasets(register):
    register(MNIST)
    register(FashionMNIST)
