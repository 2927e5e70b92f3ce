"""Sending a suite's lifecycle events to the loggers it selected.

A logger is an extra: one that raises is switched off for the rest of the suite with
one warning, and the runs go on. Loggers work while the budget clock is paused (the
training loop pauses it around its callbacks), so tracking never costs a run budget.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from rich.console import Console

from .. import messages
from ..api.logger import Logger, RunInfo, SuiteInfo
from .config import RunSpec, Suite
from .pluginmanager import Registry


class Tracking:
    """The suite's loggers, each called inside a guard."""

    def __init__(self, suite: Suite, registry: Registry, console: Console):
        self.console = console
        self.loggers: list[Logger] = []
        for name, options in suite.loggers:
            self._guard(name, "start", lambda cls=registry.loggers[name], o=options: self.loggers.append(cls(o)))

    def __bool__(self) -> bool:
        return bool(self.loggers)

    def _guard(self, name: str, event: str, call) -> bool:
        try:
            call()
            return True
        except KeyboardInterrupt:
            raise
        except Exception as err:  # a tracker's failure must not cost a run
            self.console.print(messages.warning(
                f"logger '{name}' failed in {event}: {type(err).__name__}: {err}; it is switched off for the "
                f"rest of the suite (results are unaffected)"), soft_wrap=True)
            self.console.print(messages.escape(traceback.format_exc(limit=-3)), style="dim", soft_wrap=True)
            return False

    def emit(self, event: str, *args) -> None:
        """Call ``event`` on every logger still on; a logger that raises is switched off."""
        for logger in list(self.loggers):
            if not self._guard(logger.name, event, lambda lg=logger: getattr(lg, event)(*args)):
                self.loggers.remove(logger)
                self._guard(logger.name, "close", logger.close)

    def close(self) -> None:
        for logger in self.loggers:
            self._guard(logger.name, "close", logger.close)
        self.loggers = []


def suite_info(suite: Suite, out: Path, resolved: dict) -> SuiteInfo:
    return SuiteInfo(suite.name, suite.description, out, resolved, len(suite.runs))


def run_info(suite: Suite, run: RunSpec, run_id: str, run_dir: Path) -> RunInfo:
    settings = {"dataset": suite.dataset_dict(), "budget": suite.budget.limits(), "batch_size": suite.batch_size}
    return RunInfo(run_id, run.label, run.model, run.seed, run.options_dict(), run_dir, settings)
