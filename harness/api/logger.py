"""The logger plugin interface: experiment trackers that follow a suite as it runs.

A logger receives lifecycle events (Lightning's callbacks are the model): the suite
starts, each run starts, logs its training losses, is scored during training, ends,
and the suite ends. It never changes what is trained or scored: the harness pauses the
budget clock while a logger works, and a logger that raises is switched off for the
rest of the suite with a warning, while the runs go on.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar

from .model import NoOptions


@dataclasses.dataclass(frozen=True)
class SuiteInfo:
    """What a logger learns when a suite starts.

    Attributes:
        name: the suite's name.
        description: its one-line description.
        out: the results folder (a logger may keep its files inside it).
        settings: the resolved suite, as written to ``suite.yaml`` (plain data).
        runs: how many runs the suite has (runs finished earlier, on --resume, included).
    """

    name: str
    description: str
    out: Path
    settings: dict
    runs: int


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """One run, as every run event names it.

    Attributes:
        run_id: the run's folder name under ``runs/``; unique in the results folder.
        label: its configuration's name on the leaderboard.
        model: the registered model name.
        seed: the run's seed.
        options: the model's resolved options (plain data).
        run_dir: the run's folder (its record, figures and ``model.pt`` end up there).
        settings: data set, budget and batch size of the run (plain data).
    """

    run_id: str
    label: str
    model: str
    seed: int
    options: dict
    run_dir: Path
    settings: dict


class Logger:
    """Base class of an experiment-tracker plugin; override the events you need.

    Class attributes:
        name: what suites list under ``loggers:``.
        description: one line for ``genbench plugins``.
        Options: a dataclass of the logger's settings (fields declared with
            :func:`genbench.option`); a suite sets them as ``loggers: [{name: x, key: value}]``.
        requires: importable modules the logger needs; ``genbench validate`` refuses a
            suite that selects the logger while one is missing, naming ``extra``.
        extra: how to install them, e.g. ``"genbench[tensorboard]"``.

    Events arrive in this order: ``on_suite_start``; for each run ``on_run_start``,
    ``on_train_log`` and ``on_eval_log`` (interleaved, in training order), ``on_run_end``;
    ``on_suite_end``; and ``close``, which comes even when the suite stops early. Runs skipped on --resume send no events. Every value passed is
    plain data (numbers, strings, lists, mappings) or a path; nothing needs torch.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str] = ""

    def __init__(self, options: Any):
        self.options = options

    def on_suite_start(self, suite: SuiteInfo) -> None:
        """The suite is about to train its first run; its results folder exists."""

    def on_run_start(self, run: RunInfo) -> None:
        """A run is about to train."""

    def on_train_log(self, run: RunInfo, step: int, values: dict[str, float]) -> None:
        """Mean training losses over a logging window ending at optimisation ``step``.

        ``values`` holds the model's loss components plus ``epoch`` and ``seconds``
        (training time on the budget clock).
        """

    def on_eval_log(self, run: RunInfo, step: int, scores: dict[str, float | None]) -> None:
        """Scores of the suite's ``evaluation.curve_metrics`` during training, at ``step``
        (on ``evaluation.curve_images`` images; ``epoch`` and ``seconds`` included)."""

    def on_run_end(self, run: RunInfo, record: dict, figures: list[Path]) -> None:
        """A run has finished (``record["status"]`` is ``"ok"``) or failed (``"failed"``).

        ``record`` is the run's ``record.json`` as written: final scores under
        ``"metrics"``, budget used, errors. ``figures`` are the run's PNG files.
        """

    def on_suite_end(self, out: Path, files: list[Path]) -> None:
        """Every run is done; ``files`` are the suite's tables, figures and report.html."""

    def close(self) -> None:
        """Always called last, also when the suite stops early (Ctrl-C, a full disk): flush
        and release files and connections, and mark what is still open as stopped."""
