"""The sections of a suite file, as written: what each field means, its default and bounds.

``config`` validates a file against these and expands it into a :class:`~.config.Suite`.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional, Union

from ..api.options import option


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    name: str = option(help="registered data set name, e.g. mnist or fashion_mnist")
    root: Optional[str] = option(None, "folder looked at first for the data files")
    subset: Optional[int] = option(None, "use only the first N training images", min=1)
    test_subset: Optional[int] = option(None, "evaluate on only the first N images", min=1)
    pooled_test: int = option(0, "pool the train and test splits and hold out N images, class-stratified, "
                              "as the test split (e.g. 7000 of MNIST's 70,000); 0 keeps the data set's split",
                              min=0)
    validation: int = option(0, "hold out N training images as a validation split (fixed, class-stratified)",
                             min=0)
    eval_split: Literal["test", "validation"] = option("test", "the split runs are scored on")
    download: bool = option(True, "allow a torchvision download when no local copy is found")
    options: dict = option(default_factory=dict, help="data-set-specific options")


@dataclasses.dataclass(frozen=True)
class BudgetConfig:
    seconds: Optional[float] = option(None, "training wall-clock seconds (evaluation excluded); means "
                                      "'on this machine, at this load'")
    flops: Optional[float] = option(None, "floating-point operations of training (matmuls and convolutions, "
                                    "forward and backward); the same on every machine, e.g. 5e12")
    steps: Optional[int] = option(None, "optimisation steps")
    epochs: Optional[float] = option(None, "passes over the training split")

    def limits(self) -> dict[str, float]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class ReportOptions:
    """The suite's ``report:`` section: how figures are drawn (never what is trained)."""

    latent_projection: Literal["pca", "tsne"] = option(
        "pca", "how latents above 2-D are drawn in 2-D: PCA, or t-SNE (needs scikit-learn: genbench[tsne])")
    latent_points: int = option(2000, "test images in the latent scatter plot", min=10)


@dataclasses.dataclass(frozen=True)
class RunEntry:
    model: str = option(help="registered model name")
    label: Optional[str] = option(None, "name on the leaderboard (default: model and options)")
    options: dict = option(default_factory=dict, help="model options")
    sweep: dict = option(default_factory=dict, help="option -> list of values; one run per combination")
    search: dict = option(default_factory=dict, help="option -> distribution ({loguniform|uniform|int: [lo, hi]} "
                          "or {choice: [...]}); tuned with the suite's trials on the validation split")
    search_metric: Optional[str] = option(None, "the metric this entry's trials are scored by "
                                          "(default: the suite's search_metric)")
    training: dict = option(default_factory=dict, help="this entry's training settings (precision, compile), "
                            "over the suite's training:")


@dataclasses.dataclass(frozen=True)
class SuiteFile:
    """The top level of a suite file, as written."""

    name: str = option(help="suite name; also the default results folder")
    # dataset, budget and runs are checked in detail by their own dataclasses below.
    dataset: dict = option(help="the data set every run trains and is scored on (DatasetConfig)")
    budget: dict = option(help="the equal budget each run gets; the first limit reached ends training")
    runs: list = option(help="the models to compare (RunEntry each)")
    description: str = option("", "one line for reports")
    seeds: tuple[int, ...] = option((0,), "one run per seed per configuration", min=0, max=2**63 - 1)
    batch_size: int = option(128, "training batch size", min=1)
    metrics: tuple[Union[str, dict], ...] = option(
        ("bce", "kl"), "metrics to compute: a registered name, or {name: NAME, option: value, ...}")
    primary_metric: Optional[str] = option(None, "leaderboard sort key (default: first metric)")
    save_models: bool = option(True, "save each trained model's state as model.pt")
    loggers: tuple[Union[str, dict], ...] = option(
        (), "experiment trackers that follow the runs: a registered name, or {name: NAME, option: value}")
    evaluation: dict = option(default_factory=dict, help="evaluation options (EvalOptions)")
    training: dict = option(default_factory=dict, help="precision and compilation of training (TrainingOptions)")
    report: dict = option(default_factory=dict, help="figure options (ReportOptions)")
    trials: Optional[int] = option(None, "trials of every searched run entry (the equal tuning budget)", min=1,
                                   max=10_000)
    sampler: Literal["random", "tpe"] = option("random", "how trials are drawn: Optuna's RandomSampler or "
                                               "TPESampler")
    search_metric: Optional[str] = option(None, "the metric trials are scored by on the validation split "
                                          "(default: primary_metric)")
    search_seed: int = option(1000, "trial n trains with seed search_seed + n; the samplers' streams "
                              "derive from it too", min=0, max=2**62)
