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
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from .extractor import ExtractorSpec
from .factors import Factor
from .model import NoOptions

DEBIAN_DATASETS = Path("/usr/share/datasets")
CACHE_DIR = Path("~/.cache/genbench/data")


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """Images as one uint8 tensor (N, C, H, W), their int64 labels (N,) and, for a data
    set that declares factors of variation, each image's factor levels (N, factors), int64."""

    images: Tensor
    labels: Tensor
    factors: Tensor | None = None

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError("images must be a uint8 tensor of shape (N, C, H, W)")
        if self.labels.shape != (len(self.images),):
            raise ValueError("labels must have shape (N,)")
        if self.factors is not None and (self.factors.dtype != torch.int64 or self.factors.dim() != 2
                                         or len(self.factors) != len(self.images)):
            raise ValueError("factors must be an int64 tensor of shape (N, number of factors)")

    def __len__(self) -> int:
        return len(self.images)

    def take(self, index: Tensor | slice) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index],
                        None if self.factors is None else self.factors[index])

    def to(self, device: torch.device | str) -> ImageSet:
        return ImageSet(self.images.to(device), self.labels.to(device),
                        None if self.factors is None else self.factors.to(device))


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
        factors: for a data set made from known factors of variation (dSprites), one
            :class:`Factor` per factor; :meth:`load` then returns each image's levels in
            ``ImageSet.factors`` (checked), and disentanglement metrics apply.
        Options: a frozen options dataclass for data-set-specific options.

    Implement :meth:`load`. Use :func:`search_roots` for the standard search order
    and :func:`read_idx` for IDX files.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    image_shape: ClassVar[tuple[int, int, int]] = (1, 28, 28)
    class_names: ClassVar[tuple[str, ...]] = ()
    factors: ClassVar[tuple[Factor, ...]] = ()
    Options: ClassVar[type] = NoOptions
    extractor: ClassVar[ExtractorSpec | None] = None  # the shipped domain feature extractor

    def __init__(self, options=None):
        self.options = options if options is not None else self.Options()

    @classmethod
    def image_shape_of(cls, options) -> tuple[int, int, int]:
        """The (C, H, W) of the images under ``options``: ``image_shape`` unless the
        options choose it (``image_folder``'s ``size`` and ``channels``). ``validate``
        checks every model against it before anything loads."""
        return tuple(cls.image_shape)

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
    from .._torchvision_compat import ensure_torchvision

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


def download_archive(url: str, folder: Path, md5: str, tried: list[str], timeout: float = 20.0,
                     extract: bool = True) -> bool:
    """Download ``url`` into ``folder`` (and extract it) with torchvision's utilities,
    checking its MD5; False (and a note in ``tried``) when offline or on any failure."""
    from .._torchvision_compat import ensure_torchvision

    utils = ensure_torchvision().datasets.utils
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        if extract:
            utils.download_and_extract_archive(url, str(folder), md5=md5)
        else:
            utils.download_url(url, str(folder), md5=md5)
        return True
    except Exception as err:  # any network, mirror or checksum failure: report, don't crash
        tried.append(f"download of {url} into {folder} ({type(err).__name__})")
        return False
    finally:
        socket.setdefaulttimeout(old)


def cached_arrays(kind: str, key: str, build) -> dict[str, np.ndarray]:
    """Arrays a data set decodes once (``build() -> {name: array}``), kept as
    ``~/.cache/genbench/data/<kind>/<key>.npz``. Make ``key`` from everything the arrays
    depend on (files' sizes and modification times, options). The file is written
    atomically and read without pickle; a damaged one is built again, and a cache that
    cannot be written costs time, never a result."""
    import io
    import tempfile

    path = CACHE_DIR.expanduser() / kind / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except Exception:  # damaged: built again and replaced
            pass
    arrays = build()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(buffer.getvalue())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass
    return arrays


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def image_files(folder: Path) -> list[Path]:
    """Every PNG/JPEG file in ``folder`` and its sub-folders, sorted, hidden ones left out.

    A link that leads outside the folder is refused (DataError naming it); an empty
    list is the caller's to refuse, in its own words.
    """
    found, base = [], Path(folder).resolve()
    for p in sorted(Path(folder).rglob("*")):
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            if base not in p.resolve().parents:
                raise DataError(f"{p}: refused: it leads outside {folder}")
            if p.is_file():
                found.append(p)
    return found


def to_float(images: Tensor) -> Tensor:
    """uint8 images to floats in [0, 1]."""
    return images.to(torch.float32).div_(255.0)


