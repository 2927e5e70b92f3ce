"""The live display of a suite: one line for the whole suite, one bar per running run.

The suite line reads ``done 3 · running 2 · failed 0 · waiting 13 · about 4:10 left``;
the estimate is the mean wall time of the runs finished so far, times the runs left,
over the runs that execute at once. Serial and parallel suites show the same display.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from .. import messages


class SuiteProgress:
    def __init__(self, console: Console, total: int, todo: int, workers: int):
        self.console, self.total, self.workers = console, total, workers
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                 TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)
        self.counts = {"done": 0, "running": 0, "failed": 0, "waiting": todo}
        self.todo = todo
        self.bars: dict[str, TaskID] = {}
        self.started: dict[str, float] = {}
        self.durations: list[float] = []
        self.suite_bar = self.progress.add_task("suite", total=max(todo, 1), info=self._summary())

    def __enter__(self) -> SuiteProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def name(self, task) -> str:
        return f"{task.index}/{self.total} {task.run.label} seed {task.run.seed}"

    def start(self, task) -> None:
        self.counts["waiting"] -= 1
        self.counts["running"] += 1
        self.started[task.run_id] = time.monotonic()
        self.bars[task.run_id] = self.progress.add_task(escape(self.name(task)), total=1.0, info="starting")
        self._refresh()

    def update(self, task, payload: dict) -> None:
        bar = self.bars.get(task.run_id)
        if bar is not None:
            self.progress.update(bar, completed=float(payload.get("fraction", 0.0)),
                                 info=escape(str(payload.get("info", ""))))

    def retry(self, task, reason: str) -> None:
        self._drop(task)
        self.counts["waiting"] += 1
        self.console.print(messages.warning(f"{self.name(task)}: its worker process {reason}; retrying it once"),
                           soft_wrap=True)
        self._refresh()

    def finish(self, task, rec: dict, line: str) -> None:
        if task.run_id in self.started:
            self.durations.append(time.monotonic() - self.started[task.run_id])
        if not self._drop(task):  # ended without a start: its worker died before it began
            self.counts["waiting"] -= 1
        self.counts["failed" if rec.get("status") != "ok" else "done"] += 1
        self.console.print(line, soft_wrap=True)
        self.progress.update(self.suite_bar, completed=self.counts["done"] + self.counts["failed"])
        self._refresh()

    def _drop(self, task) -> bool:
        """Remove a run's bar; whether it had one (was running)."""
        self.started.pop(task.run_id, None)
        bar = self.bars.pop(task.run_id, None)
        if bar is None:
            return False
        self.progress.remove_task(bar)
        self.counts["running"] -= 1
        return True

    def _refresh(self) -> None:
        self.progress.update(self.suite_bar, info=self._summary())

    def _summary(self) -> str:
        c = self.counts
        text = f"done {c['done']} · running {c['running']} · failed {c['failed']} · waiting {max(c['waiting'], 0)}"
        left = c["running"] + max(c["waiting"], 0)
        if self.durations and left:
            seconds = sum(self.durations) / len(self.durations) * left / max(1, min(self.workers, left))
            text += f" · about {int(seconds // 60)}:{int(seconds % 60):02d} left"
        return text
