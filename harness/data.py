"""Data set plugin interface, IDX files, and the in-memory tensors the loop slices.

A data set plugin only finds and decodes files into one uint8 tensor per split. The
harness does the rest: subsets, the validation split, the single move to the device
and batching by slicing a shuffled index (never per-sample collation).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import socket
import struct
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from .errors import UserError
from .extractor import ExtractorSpec
from .model import Batch, DataInfo, NoOptions

DEBIAN_DATASETS = Path("/usr/share/datasets")
CACHE_DIR = Path("~/.cache/genbench/data")


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """Images as one uint8 tensor (N, C, H, W) and their int64 labels (N,)."""

    images: Tensor
    labels: Tensor

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError("images must be a uint8 tensor of shape (N, C, H, W)")
        if self.labels.shape != (len(self.images),):
            raise ValueError("labels must have shape (N,)")

    def __len__(self) -> int:
        return len(self.images)

    def take(self, index: Tensor | slice) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index])

    def to(self, device: torch.device | str) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device))


class DataNotFound(UserError):
    """No files for a data set in any of the places searched."""


class DataError(UserError):
    """A data file exists but is broken: truncated, not IDX, the wrong shape or count."""


class Dataset:
    """Base class of data set plugins.

    Class attributes:
        name: what users type under ``dataset: name:`` in a suite.
        description: one line for ``genbench plugins``.
        image_shape, class_names: fixed facts about the data.
        Options: a frozen options dataclass for data-set-specific options.

    Implement :meth:`load`. Use :func:`search_roots` for the standard search order
    and :func:`read_idx` for IDX files.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    image_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    class_names: ClassVar[tuple[str, ...]] = ()
    Options: ClassVar[type] = NoOptions
    extractor: ClassVar[ExtractorSpec | None] = None  # the shipped domain feature extractor

    def __init__(self, options=None):
        self.options = options if options is not None else self.Options()

    def load(self, split: str, root: Path | None, download: bool) -> ImageSet:
        """Return the ``"train"`` or ``"test"`` split.

        ``root`` is the suite's ``dataset.root`` (looked at first); ``download`` says
        whether fetching from the internet is allowed as a last resort. Raise
        :class:`DataNotFound` listing every place tried when nothing is found.
        """
        raise NotImplementedError


def search_roots(root: Path | None) -> list[Path]:
    """Where to look, in order: the suite's root, $GENBENCH_DATA, the cache, Debian's folder."""
    roots = [Path(root).expanduser()] if root else []
    env = os.environ.get("GENBENCH_DATA")
    if env:
        roots += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    roots += [CACHE_DIR.expanduser(), DEBIAN_DATASETS]
    return roots


def find_files(filenames: Sequence[str], folders: Sequence[str], root: Path | None,
               tried: list[str]) -> list[Path] | None:
    """Find every file of ``filenames`` (gzipped or not) in one folder of the search order.

    Each root is searched as ``root/<folder>`` for each of ``folders``; the suite's own
    root is also searched as given. Places looked at are appended to ``tried``.
    """
    for i, base in enumerate(search_roots(root)):
        candidates = ([base] if (root and i == 0) else []) + [base / f for f in folders]
        for folder in candidates:
            tried.append(str(folder))
            found = [_with_gz(folder / name) for name in filenames]
            if all(found):
                return found
    return None


def _with_gz(path: Path) -> Path | None:
    for p in (path, path.with_name(path.name + ".gz")):
        if p.is_file():
            return p
    return None


MAX_IDX_BYTES = 4 * 2**30  # what one IDX file may declare; MNIST's largest is 47 MB


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into a NumPy array.

    Raises :class:`DataError` naming the file for anything unreadable or inconsistent.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{path}: broken gzip file ({err or 'truncated'}); download it again") from None
    except OSError as err:
        raise DataError(f"{path}: cannot be read: {err.strerror or err}") from None
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if len(data) < 4 or data[0:2] != b"\x00\x00" or data[2] not in dtypes or data[3] == 0:
        raise DataError(f"{path}: not an IDX file (bad header {data[:4].hex() or 'empty'})")
    ndim, dtype = data[3], np.dtype(dtypes[data[2]])
    if len(data) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header ({ndim} dimensions declared)")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - 4 - 4 * ndim
    if expected > MAX_IDX_BYTES or found != expected:
        raise DataError(f"{path}: header declares shape {tuple(shape)} ({expected} bytes of data), "
                        f"the file holds {found}; truncated or not this format")
    array = np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim)
    return array.reshape(shape).astype(array.dtype.newbyteorder("="))


def torchvision_download(cls_name: str, root: Path, tried: list[str], timeout: float = 20.0) -> bool:
    """Try torchvision's downloader into ``root``; False (and a note in ``tried``) offline."""
    from ._torchvision_compat import ensure_torchvision

    datasets = ensure_torchvision().datasets
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # fail fast on a machine without internet
    try:
        for train in (True, False):
            getattr(datasets, cls_name)(root=str(root), train=train, download=True)
        return True
    except Exception as err:  # any network or mirror failure: report, don't crash
        tried.append(f"torchvision download into {root} ({type(err).__name__})")
        return False
    finally:
        socket.setdefaulttimeout(old)


@dataclasses.dataclass
class DeviceData:
    """The data of one suite, held on the device for the whole suite."""

    info: DataInfo
    train: ImageSet
    eval: ImageSet
    eval_split: str
    extractor: ExtractorSpec | None = None
    cache: dict = dataclasses.field(default_factory=dict)  # per-suite results, e.g. real features

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[Batch]:
        """One epoch of shuffled batches, sliced from the device tensors.

        The last, smaller batch is kept so every image is seen once per epoch.
        """
        n = len(self.train)
        order = torch.randperm(n, generator=generator, device=generator.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield Batch(to_float(self.train.images[idx]), self.train.labels[idx])

    def eval_batches(self, batch_size: int = 1000) -> Iterator[Batch]:
        for start in range(0, len(self.eval), batch_size):
            part = slice(start, start + batch_size)
            yield Batch(to_float(self.eval.images[part]), self.eval.labels[part])


def to_float(images: Tensor) -> Tensor:
    """uint8 images to floats in [0, 1]."""
    return images.to(torch.float32).div_(255.0)


VALIDATION_SEED = 1234  # fixed, so every run and seed shares one validation split


def load_split(dataset: Dataset, split: str, root: Path | None, download: bool) -> ImageSet:
    """One split from a data set plugin; any failure is one line naming the data set."""
    try:
        images = dataset.load(split, root, download)
    except UserError:
        raise
    except Exception as err:  # a plugin's bug or a file it could not handle: no traceback
        raise DataError(f"data set '{dataset.name}': the {split} split could not be loaded: "
                        f"{type(err).__name__}: {err}") from None
    if not isinstance(images, ImageSet):
        raise DataError(f"data set '{dataset.name}': load() returned {type(images).__name__}, not an ImageSet")
    if dataset.class_names and len(images) and not (
            0 <= int(images.labels.min()) and int(images.labels.max()) < len(dataset.class_names)):
        raise DataError(f"data set '{dataset.name}' ({split}): labels outside 0..{len(dataset.class_names) - 1}")
    if not len(images):
        raise DataError(f"data set '{dataset.name}': the {split} split is empty")
    return images


def prepare(dataset: Dataset, config, device: torch.device, download: bool = True) -> DeviceData:
    """Load a suite's data once: split, subset, move to the device."""
    root = Path(config.root) if config.root else None
    train = load_split(dataset, "train", root, download)
    eval_set = load_split(dataset, "test", root, download)
    if train.images.shape[1:] != eval_set.images.shape[1:]:
        raise DataError(f"data set '{dataset.name}': train images are {tuple(train.images.shape[1:])}, "
                        f"test images {tuple(eval_set.images.shape[1:])}")
    if config.validation:
        if config.validation >= len(train):
            raise UserError(f"dataset.validation: {config.validation} is not below the "
                            f"{len(train)} training images")
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(VALIDATION_SEED))
        validation, train = train.take(order[:config.validation]), train.take(order[config.validation:])
        if config.eval_split == "validation":
            eval_set = validation
    if config.subset:
        train = train.take(slice(0, config.subset))
    if config.test_subset:
        eval_set = eval_set.take(slice(0, config.test_subset))
    info = DataInfo(name=dataset.name, image_shape=tuple(train.images.shape[1:]),
                    num_classes=len(dataset.class_names) or int(train.labels.max()) + 1,
                    class_names=tuple(dataset.class_names), train_size=len(train))
    return DeviceData(info, train.to(device), eval_set.to(device), config.eval_split, dataset.extractor)
