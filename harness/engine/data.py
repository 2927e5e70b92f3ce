"""The suite's data on the device: loaded once, split, subset, and sliced into batches.

The harness does this for every data set plugin: subsets, the validation split, the
single move to the device and batching by slicing a shuffled index (never per-sample
collation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import torch

from ..api.dataset import DataError, Dataset, ImageSet, to_float
from ..api.extractor import ExtractorSpec
from ..api.model import Batch, DataInfo
from ..errors import UserError


@dataclasses.dataclass
class DeviceData:
    """The data of one suite, held on the device for the whole suite."""

    info: DataInfo
    train: ImageSet
    eval: ImageSet
    eval_split: str
    extractor: ExtractorSpec | None = None
    cache: dict = dataclasses.field(default_factory=dict)  # per-suite results, e.g. real features
    validation: ImageSet | None = None  # the held-out split, when the suite sets one

    def to(self, device: torch.device | str) -> DeviceData:
        """The same data on ``device`` (with an empty cache: cached results stay where they were made)."""
        held = self.validation.to(device) if self.validation is not None else None
        return dataclasses.replace(self, train=self.train.to(device), eval=self.eval.to(device), cache={},
                                   validation=held)

    def scored_on(self, split: str) -> DeviceData:
        """This data with ``split`` as the one runs are scored on (one view per split, so
        its cached real features are computed once)."""
        if split == self.eval_split:
            return self
        if split != "validation" or self.validation is None:
            raise ValueError(f"no {split} split in this data")
        view = self.cache.get("view:validation")
        if view is None:
            view = dataclasses.replace(self, eval=self.validation, eval_split="validation", cache={})
            self.cache["view:validation"] = view
        return view

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


VALIDATION_SEED = 1234  # fixed, so every run and seed shares one validation split
POOLED_SEED = 4321  # likewise for the re-split of pooled train and test images


def stratified_holdout(labels: torch.Tensor, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of ``size`` images held out with each class in its share of ``labels``
    (largest remainders round the shares to whole images), and of the rest; both in one
    seeded random order, so the split is the same for every run, seed and model."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    classes, counts = labels.unique(return_counts=True)
    exact = counts.double() * size / len(labels)
    quota = exact.floor().long()
    short = size - int(quota.sum())
    quota[torch.argsort(exact - quota, descending=True, stable=True)[:short]] += 1
    held = torch.zeros(len(labels), dtype=torch.bool)
    shuffled = labels[order]
    for c, q in zip(classes.tolist(), quota.tolist()):
        held[order[shuffled == c][:q]] = True
    return order[held[order]], order[~held[order]]


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
    _check_factors(dataset, split, images)
    return images


def _check_factors(dataset: Dataset, split: str, images: ImageSet) -> None:
    """Each image's factor levels, present exactly when the data set declares factors."""
    where = f"data set '{dataset.name}' ({split})"
    if not dataset.factors:
        if images.factors is not None:
            raise DataError(f"{where}: load() returned factors but the data set declares none "
                            f"(set the class attribute factors)")
        return
    if images.factors is None or images.factors.shape[1] != len(dataset.factors):
        found = "none" if images.factors is None else f"{images.factors.shape[1]} per image"
        raise DataError(f"{where}: expected {len(dataset.factors)} factor levels per image "
                        f"({', '.join(f.name for f in dataset.factors)}), found {found}")
    levels = torch.tensor([f.levels for f in dataset.factors])
    bad = (images.factors < 0) | (images.factors >= levels.to(images.factors.device))
    if bool(bad.any()):
        k = int(bad.any(0).nonzero()[0])
        factor = dataset.factors[k]
        raise DataError(f"{where}: factor '{factor.name}' levels must be 0..{factor.levels - 1}, "
                        f"found {int(images.factors[:, k].min())}..{int(images.factors[:, k].max())}")


def pooled_split(train: ImageSet, test: ImageSet, size: int) -> tuple[ImageSet, ImageSet]:
    """Train and test re-split from all their images: ``size`` held out as the new test
    split, class-stratified, the rest to train (a protocol some papers and notebooks use)."""
    factors = None if train.factors is None else torch.cat([train.factors, test.factors])
    pooled = ImageSet(torch.cat([train.images, test.images]), torch.cat([train.labels, test.labels]), factors)
    if size >= len(pooled):
        raise UserError(f"dataset.pooled_test: {size} is not below the {len(pooled)} pooled train and test images")
    held, kept = stratified_holdout(pooled.labels, size, POOLED_SEED)
    return pooled.take(kept), pooled.take(held)


def prepare(dataset: Dataset, config, device: torch.device, download: bool = True) -> DeviceData:
    """Load a suite's data once: split, subset, move to the device."""
    root = Path(config.root) if config.root else None
    train = load_split(dataset, "train", root, download)
    eval_set = load_split(dataset, "test", root, download)
    if train.images.shape[1:] != eval_set.images.shape[1:]:
        raise DataError(f"data set '{dataset.name}': train images are {tuple(train.images.shape[1:])}, "
                        f"test images {tuple(eval_set.images.shape[1:])}")
    if config.pooled_test:
        train, eval_set = pooled_split(train, eval_set, config.pooled_test)
    validation = None
    if config.validation:
        if config.validation >= len(train):
            raise UserError(f"dataset.validation: {config.validation} is not below the "
                            f"{len(train)} training images")
        held, kept = stratified_holdout(train.labels, config.validation, VALIDATION_SEED)
        validation, train = train.take(held), train.take(kept)
        if config.eval_split == "validation":
            eval_set = validation
    if config.subset:
        train = train.take(slice(0, config.subset))
    if config.test_subset:
        eval_set = eval_set.take(slice(0, config.test_subset))
    info = DataInfo(name=dataset.name, image_shape=tuple(train.images.shape[1:]),
                    num_classes=len(dataset.class_names) or int(train.labels.max()) + 1,
                    class_names=tuple(dataset.class_names), train_size=len(train),
                    factors=tuple(dataset.factors))
    eval_set = eval_set.to(device)
    if validation is not None:  # one copy on the device when it is also the eval split
        validation = eval_set if config.eval_split == "validation" else validation.to(device)
    return DeviceData(info, train.to(device), eval_set, config.eval_split, dataset.extractor,
                      validation=validation)
