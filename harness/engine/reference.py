"""Reference statistics: the real side of the sample metrics, computed once and kept.

The real images' features, FID's mean and covariance, the k-NN radii, KID's kernel sums
and the training images' distances depend only on the reference images and the
feature extractor. :class:`StoredCache` keeps them (as any metric's ``ctx.cached``
entries of tensors) in the user's cache folder, one ``.npz`` per entry, under a key
made of the data set, split, image count, the SHA-256 of the images themselves and of
the extractor: a changed extractor, split or file can never reuse a stale entry. Each
entry is written atomically and carries a SHA-256 of its arrays, checked on load; a
damaged one is computed again. Files are plain ``.npz``, read without pickle, and a
whole reference exports to one ``.npz`` another lab can import.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..api import extractor as ext
from ..api.metric import EvalOptions
from ..results import files
from .data import DeviceData

FORMAT = 1  # bump when the meaning of an entry changes: older entries are then never read


def cache_root() -> Path:
    """``$GENBENCH_CACHE``, else ``$XDG_CACHE_HOME/genbench``, else ``~/.cache/genbench``."""
    if os.environ.get("GENBENCH_CACHE"):
        return Path(os.environ["GENBENCH_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "genbench"


def _sha(*tensors: Tensor) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(str(tuple(t.shape)).encode())
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def identity(data: DeviceData, options: EvalOptions) -> dict:
    """What the reference statistics depend on, besides the training images (see
    :class:`StoredCache`); equal identities mean equal statistics."""
    if options.feature_extractor == "inception":
        extractor = {"name": "inception-v3-compat", "sha256": ext.file_sha256(options.feature_extractor_weights_path)
                     if options.feature_extractor_weights_path else None}
    else:
        spec = data.extractor
        extractor = {"name": spec.name if spec else None, "sha256": spec.sha256 if spec else None}
    return {"format": FORMAT, "dataset": data.info.name, "split": data.eval_split, "images": len(data.eval),
            "images_sha256": _sha(data.eval.images, data.eval.labels), "extractor": extractor}


def train_identity(data: DeviceData) -> dict:
    return {"train_images": len(data.train), "train_sha256": _sha(data.train.images)}


class LazySplit:
    """A split read on first use: scoring reads the training images only for a metric
    that uses them (memorization)."""

    def __init__(self, load):
        self._load, self.value = load, None

    @property
    def loaded(self) -> bool:
        return self.value is not None

    def get(self):
        if self.value is None:
            self.value = self._load()
        return self.value

    def __getattr__(self, name):  # images, labels, take, to...
        return getattr(self.get(), name)

    def __len__(self) -> int:
        return len(self.get())


def _persistable_key(key: Any) -> bool:
    if isinstance(key, tuple):
        return all(map(_persistable_key, key))
    return key is None or isinstance(key, (str, int, float, bool))


def _parts(value: Any) -> list[Tensor | None] | None:
    """The tensors of a value that can be kept (a tensor, or a tuple of tensors and None)."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, tuple) and value and all(v is None or isinstance(v, Tensor) for v in value):
        return list(value)
    return None


def _digest(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(arrays):
        h.update(name.encode() + str(arrays[name].dtype).encode() + str(arrays[name].shape).encode())
        h.update(np.ascontiguousarray(arrays[name]).tobytes())
    return h.hexdigest()


def pack(entries: dict[str, tuple[bool, list[Tensor | None]]], ident: dict) -> bytes:
    """Entries (key text -> (tuple?, tensors)) as the bytes of one checked ``.npz``."""
    arrays, layout = {}, {}
    for i, (key, (is_tuple, parts)) in enumerate(sorted(entries.items())):
        names = []
        for j, part in enumerate(parts):
            names.append(None if part is None else f"e{i}_{j}")
            if part is not None:
                arrays[f"e{i}_{j}"] = part.detach().cpu().numpy()
        layout[key] = {"tuple": is_tuple, "arrays": names}
    meta = {"identity": ident, "entries": layout}
    arrays["meta"] = np.array(json.dumps({**meta, "sha256": _digest(meta, arrays)}))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


class BadReference(ValueError):
    pass


def unpack(data: bytes | Path, device: torch.device | str = "cpu") -> tuple[dict, dict[str, Any]]:
    """(identity, key text -> value) of a packed ``.npz``, after checking its SHA-256."""
    try:
        with np.load(io.BytesIO(data) if isinstance(data, bytes) else data, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
        meta = json.loads(str(arrays.pop("meta")))
        expected = meta.pop("sha256")
        if _digest(meta, arrays) != expected:
            raise BadReference("its arrays do not match their SHA-256 (damaged or edited)")
        values = {}
        for key, entry in meta["entries"].items():
            parts = [None if n is None else torch.from_numpy(arrays[n]).to(device) for n in entry["arrays"]]
            values[key] = tuple(parts) if entry["tuple"] else parts[0]
        return meta["identity"], values
    except BadReference:
        raise
    except Exception as err:  # any damage (a bad zip, a bad array, bad JSON): the file is not used
        raise BadReference(f"not a genbench reference file: {type(err).__name__}: {err}") from None


class StoredCache(dict):
    """A suite's ``data.cache`` whose tensor entries are also kept on disk.

    Used as the ``cache`` of :class:`DeviceData`: an entry missing in memory is looked
    up in ``folder`` before it is computed, and a computed one is written there.

    ``train`` gives the training images' identity, and ``train_used`` whether they have
    been read. An entry written after they were read carries their identity too, and
    is used only where it matches; an entry written before cannot depend on them.
    """

    def __init__(self, folder: Path | None, ident: dict, warnings: list[str] | None = None,
                 train=None, train_used=lambda: False):
        super().__init__()
        self.folder, self.base = folder, ident
        self._train, self._train_used = train, train_used
        self.key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]
        self._train_identity: dict | None = None
        self.warnings = warnings if warnings is not None else []
        self.hits: list[str] = []  # the entries read from disk, by key text
        self.imported: dict[str, Any] = {}  # key text -> value, from an imported reference

    @property
    def identity(self) -> dict:
        """The base identity, with the training images' once they have been read."""
        if self._train is None or not self._train_used():
            return self.base
        if self._train_identity is None:
            self._train_identity = self._train()
        return {**self.base, **self._train_identity}

    def _matches(self, ident: dict) -> bool:
        if "train_sha256" in ident and self._train is not None:
            if self._train_identity is None:
                self._train_identity = self._train()  # reads the training images
            return ident == {**self.base, **self._train_identity}
        return ident == self.base

    def _path(self, key: Any) -> Path | None:
        if self.folder is None or not _persistable_key(key):
            return None
        return self.folder / self.key / (hashlib.sha256(repr(key).encode()).hexdigest()[:32] + ".npz")

    def __contains__(self, key) -> bool:
        if super().__contains__(key):
            return True
        if repr(key) in self.imported and _persistable_key(key):
            super().__setitem__(key, self.imported[repr(key)])
            return True
        path = self._path(key)
        if path is None or not path.is_file():
            return False
        try:
            ident, values = unpack(path)
            if not self._matches(ident) or repr(key) not in values:
                raise BadReference("its key is not this reference's")
        except BadReference as err:
            self.warnings.append(f"{path}: {err}; computed again")
            return False
        super().__setitem__(key, values[repr(key)])
        self.hits.append(repr(key))
        return True

    def __getitem__(self, key):
        if not super().__contains__(key):
            self.__contains__(key)  # loads it from disk, or from an imported reference
        return super().__getitem__(key)

    def get(self, key, default=None):
        return self[key] if key in self else default

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        path, parts = self._path(key), _parts(value)
        if path is not None and parts is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            files.write_bytes(path, pack({repr(key): (isinstance(value, tuple), parts)}, self.identity))

    def entries(self) -> dict[str, tuple[bool, list]]:
        """What can be exported: every kept entry in memory."""
        out = {}
        for key, value in dict.items(self):
            parts = _parts(value)
            if _persistable_key(key) and parts is not None:
                out[repr(key)] = (isinstance(value, tuple), parts)
        return out

    def load(self, path: Path, device: torch.device | str = "cpu") -> int:
        """Import an exported reference; refused unless it is this one. Returns the entries read."""
        try:
            ident, values = unpack(Path(path), device)
        except BadReference as err:
            raise BadReference(f"{path}: {err}") from None
        if not self._matches(ident):
            mine = {**self.base, **(self._train_identity or {})}
            differ = [k for k in sorted(set(ident) | set(mine), key=str) if ident.get(k) != mine.get(k)]
            raise BadReference(f"{path}: computed for another reference (it differs in {', '.join(differ)}); "
                               f"score against the same data set, split, images and extractor")
        self.imported.update(values)
        return len(values)
