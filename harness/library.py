"""genbench from Python: score sample sets, run suites, read results folders.

The command line calls these same functions (``genbench score`` -> :func:`score_sets`,
``genbench run`` -> :func:`run_suite`), so a notebook gets the numbers the CLI prints.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .errors import UserError, did_you_mean


@dataclasses.dataclass(frozen=True)
class ScoreResult:
    """One sample set's scores.

    Attributes:
        label, seed: the configuration and seed the set stands for.
        scores: metric name -> value (None where a metric failed or was not finite).
        details: per-metric extras, the feature extractor's name and SHA-256.
        record: the whole record, as ``record.json`` keeps it.
    """

    label: str
    seed: int
    scores: dict[str, float | None]
    details: dict[str, Any]
    record: dict

    def __getitem__(self, metric: str) -> float | None:
        return self.scores[metric]


@dataclasses.dataclass(frozen=True)
class Tables:
    """A results folder as pandas tables.

    Attributes:
        folder: where it is.
        runs: one row per run or scored set (the columns of ``results.csv``).
        leaderboard: one row per configuration, best first: ``seeds`` and, per metric,
            the mean over seeds, ``<metric>_ci95`` (the 95% CI half-width, NaN for one
            seed) and ``<metric>_tied`` (not significantly different from the best).
        records: the run records as dicts.
        warnings: files skipped or runs kept apart, one line each.
        exit_code: for :func:`run_suite`: 0, or 1 when a run failed.
    """

    folder: Path
    runs: pd.DataFrame
    leaderboard: pd.DataFrame
    records: list[dict]
    warnings: list[str]
    exit_code: int = 0


def _registry():
    from .engine.pluginmanager import get_registry

    return get_registry()


def load_results(folder: str | Path) -> Tables:
    """Read a folder written by ``genbench run`` or ``genbench score``.

    >>> tables = genbench.load_results("results/fashion")   # doctest: +SKIP
    >>> tables.leaderboard[["label", "fid", "fid_ci95"]]      # doctest: +SKIP
    """
    from .results import record, store

    results = store.load(Path(folder))
    board = results.board()
    rows = []
    for row in board.rows:
        entry = {"label": row.label, "model": row.model, "seeds": row.seeds}
        for metric, cell in row.cells.items():
            entry[metric] = cell.summary.mean
            entry[f"{metric}_ci95"] = cell.summary.half_width
            entry[f"{metric}_tied"] = cell.best or cell.tied
        rows.append(entry)
    return Tables(results.out, record.results_frame(results.records), pd.DataFrame(rows), results.records,
                  list(results.warnings))


def run_suite(suite: str | Path | dict, out: str | Path | None = None, *, device: str = "auto",
              threads: int | None = None, workers: int | None = None, resume: bool = False,
              console=None, **executor) -> Tables:
    """Train and score every run of a suite (a file, or the same content as a dict); return
    its results folder as tables (``exit_code`` 1 when a run failed).

    >>> tables = genbench.run_suite("suites/quick.yaml", out="results/quick")  # doctest: +SKIP
    """
    from .engine import runner
    from .results.files import slug

    registry = _registry()
    if not isinstance(suite, (str, Path, dict)):  # the CLI's, already loaded and checked
        loaded = suite
    else:
        loaded = _load(suite, registry)
    out = Path(out) if out is not None else Path("results") / slug(loaded.name)
    code = runner.run_suite(loaded, registry, out, device, resume, console=console, threads=threads,
                            workers=workers, **executor)
    return dataclasses.replace(load_results(out), exit_code=code)


def _load(suite, registry):
    from .engine.config import load_suite
    from .results import files

    with tempfile.TemporaryDirectory() as scratch:
        if isinstance(suite, dict):
            path = Path(scratch) / "suite.yaml"
            files.write_text(path, yaml.safe_dump(suite, sort_keys=False))
        else:
            path = Path(suite)
        return load_suite(path, registry)


def score_sets(samples: Sequence[Any], dataset: str, metrics: Sequence[str] | None = None, *,
               labels: Any = None, group: str | None = None, split: str = "test", extractor: str = "domain",
               extractor_weights: str | None = None, options: dict[str, dict] | None = None,
               real_images: int | None = None, cache: bool = True, reference: str | Path | None = None,
               export_reference: str | Path | None = None, device: str = "cpu", out: str | Path | None = None,
               say: Callable[[str], None] | None = None) -> list[ScoreResult]:
    """Score several sample sets (paths, glob patterns, NumPy arrays or tensors) against
    ``dataset``; with ``out``, write a results folder like ``genbench run``'s.

    Files named ``NAME-seed<k>`` are seed k of configuration NAME; ``group`` makes all
    sets seeds of one configuration. ``labels`` (a file, array or tensor: one class per
    sample) go to every set without labels of its own. ``options`` set metric options,
    e.g. ``{"kid": {"subset_size": 500}}``. ``extractor`` is ``"domain"`` (the data
    set's shipped extractor), ``"inception"`` (with ``extractor_weights``, a local file)
    or the path of a file ``genbench extractor train`` wrote. Nothing is written unless
    every set scores.
    """
    from .engine import samplefiles, score

    registry = _registry()
    if dataset not in registry.datasets:
        raise UserError(f"--dataset: '{dataset}' is not installed{did_you_mean(dataset, registry.datasets)}")
    cls = registry.datasets[dataset]
    shape, classes = tuple(cls.image_shape), len(cls.class_names) or None
    settings = score.Settings(dataset, split, tuple(metrics or ()), dict(options or {}), extractor, extractor_weights,
                              real_images, cache, Path(reference) if reference else None, device)
    if out is not None:
        _check_empty(Path(out))
    # paths and globs become files, named as configurations and seeds; arrays stay as they are
    items = [p for s in samples for p in (samplefiles.expand([str(s)]) if isinstance(s, (str, Path)) else [s])]
    named = iter(samplefiles.named_sets([p for p in items if isinstance(p, Path)], group))
    sets = []
    for i, item in enumerate(items):
        if isinstance(item, Path):
            path, label, seed = next(named)
            sets.append(samplefiles.open_set(path, shape, label, seed))
        else:
            label = group or ("samples" if len(items) == 1 else f"samples{i}")
            sets.append(samplefiles.from_memory(item, shape, label, i if group else 0))
    if not sets:
        raise UserError("no sample sets given")
    for s in sets:
        if s.labels is None and labels is not None:
            s.labels = (samplefiles.read_labels(Path(labels), s.count, classes or 0) if isinstance(labels, (str, Path))
                        else samplefiles.check_labels(labels, s.count, "labels", classes))
    records = score.score_all(registry, settings, sets, Path(out) if out is not None else None,
                              Path(export_reference) if export_reference else None, say or (lambda line: None))
    return [ScoreResult(r["label"], r["seed"], r["metrics"], r["metric_details"], r) for r in records]


def _check_empty(out: Path) -> None:
    from .results import record

    if out.exists() and (not out.is_dir() or record.read_records(out)):
        raise UserError(f"--out {out}: already holds results; choose another folder")


def score(samples: Any, dataset: str, metrics: Sequence[str] | None = None, **kwargs) -> ScoreResult:
    """Score one sample set (a path, a NumPy array or a tensor of images, uint8 in 0..255
    or floats in [0, 1]) against ``dataset``'s test split; see :func:`score_sets` for
    the keyword arguments.

    >>> result = genbench.score(images, dataset="fashion_mnist", metrics=["fid", "kid"])  # doctest: +SKIP
    >>> result.scores["fid"], result.details["feature_extractor"]["sha256"]              # doctest: +SKIP
    """
    return score_sets([samples], dataset, metrics, **kwargs)[0]
