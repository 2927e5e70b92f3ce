"""The writer of a results folder: hands runs to an executor and records what comes back.

Only this process writes the folder: each run's files, then its record (which marks it
finished), then the tables and its figures, as each run comes back. The search's trials
and the final runs both go through :meth:`Driver.run`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape

from .. import messages
from ..api.logger import RunInfo
from ..render import figures, report
from ..results import files, record, store
from . import snapshot, speed
from .config import RunSpec, Suite
from .data import DeviceData
from .execute import RunOutput, new_record
from .executors import Task, WorkerDied
from .pluginmanager import Registry
from .progress import SuiteProgress
from .tracking import Tracking, run_info

RUN_FILES = ("model.pt", snapshot.SNAPSHOT, "samples.npz", "error.log")  # what execute_run makes; nothing else lands


class Driver:
    """Runs lists of runs on one executor, for one results folder.

    ``done`` maps (label, seed, configuration hash) to the records of runs not to run
    again; ``annotate(run, record)``, when set, adds fields to a record before it is
    written; ``on_record(run, record)`` hears of every record, done before or new.
    """

    def __init__(self, suite: Suite, registry: Registry, out: Path, console: Console, data: DeviceData,
                 tracking: Tracking, peak: float, executor, done: dict[tuple, dict]):
        self.suite, self.registry, self.out, self.console = suite, registry, out, console
        self.data, self.tracking, self.peak, self.executor, self.done = data, tracking, peak, executor, done
        self.annotate: Callable[[RunSpec, dict], None] | None = None
        self.fastest: dict[str, float] = {}  # label -> best images/s so far, to spot a crowded-out run
        for rec in done.values():
            _note_speed(self.fastest, rec)

    def run(self, runs: list[RunSpec], stage: str | None = None,
            on_record: Callable[[RunSpec, dict], None] | None = None) -> tuple[list[dict], int]:
        """Train, score and record every run of ``runs`` not done yet; return the records of
        all of them (in order) and how many new ones failed."""
        suite, out, console = self.suite, self.out, self.console
        tasks, kept = [], {}
        for i, run in enumerate(runs, 1):
            old = self.done.get((run.label, run.seed, suite.run_hash(run)))
            if old is not None:
                console.print(f"[dim]{i}/{len(runs)} {escape(run.label)} seed {run.seed}: done already, skipped[/]")
                if old["status"] == "ok":
                    _finish_figures(out, old, console)
                kept[i] = old
                if on_record:
                    on_record(run, old)
                continue
            tasks.append(Task(i, run, suite.run_id(run)))
        if stage and runs:
            console.print(f"[bold]{escape(stage)}[/]: {len(runs)} runs, {len(runs) - len(tasks)} done already")
        failed = 0
        infos: dict[str, RunInfo] = {}
        beside = Beside()
        if not tasks:
            return [kept[i] for i in sorted(kept)], 0
        with SuiteProgress(console, len(runs), len(tasks), self.executor.workers) as display:
            def on_event(task: Task, kind: str, payload: dict) -> None:
                if kind == "start":
                    infos[task.run_id] = run_info(suite, task.run, task.run_id, out / "runs" / task.run_id)
                    self.tracking.emit("on_run_start", infos[task.run_id])
                    beside.start(task.run_id)
                    display.start(task)
                elif kind == "progress":
                    display.update(task, payload)
                elif kind == "retry":
                    beside.stop(task.run_id)
                    display.retry(task, payload.get("reason", ""))
                elif kind in ("train_log", "eval_log") and task.run_id in infos:
                    self.tracking.emit(f"on_{kind}", infos[task.run_id], payload["step"],
                                       {k: v for k, v in payload.items() if k != "step"})

            for task, output in self.executor.run(tasks, on_event, self.data):
                rec = self._record(task, output, beside)
                failed += rec["status"] != "ok"
                run_dir = out / "runs" / task.run_id
                display.finish(task, rec, _outcome(display.name(task), rec, run_dir))
                results = store.load(out)
                report.write_tables(results)
                if rec["status"] == "ok":
                    report_step(console, "figures", lambda: report.draw_run(results, rec))
                info = infos.get(task.run_id) or run_info(suite, task.run, task.run_id, run_dir)
                self.tracking.emit("on_run_end", info, rec, sorted(run_dir.glob("*.png")))
                kept[task.index] = rec
                if on_record:
                    on_record(task.run, rec)
        return [kept[i] for i in sorted(kept)], failed

    def _record(self, task: Task, output, beside: Beside) -> dict:
        """Write one run's files, then its record; warn about contention."""
        if isinstance(output, WorkerDied):
            output = RunOutput(dict(new_record(self.suite, task.run, task.run_id, self.data,
                                               torch.device(self.executor.device)),
                                    status="failed", error=f"WorkerDied: {output}", finished=record.utc_now()))
        rec = output.record
        rec["parallel"] = {"workers": self.executor.workers, "ran_beside": beside.stop(task.run_id)}
        if self.annotate is not None:
            self.annotate(task.run, rec)
        run_dir = self.out / "runs" / task.run_id
        for name, content in output.files.items():
            if name in RUN_FILES:
                files.write_bytes(run_dir / name, content)
        for warning in output.warnings:
            self.console.print(messages.warning(warning))
        if rec["status"] == "ok":
            achieved = (rec.get("throughput") or {}).get("flops_per_second") or 0
            if self.peak and achieved > self.peak:  # the yardstick read low: measure it again
                self.peak = max(self.peak, speed.matmul_peak(torch.device(self.executor.device)))
            reasons = speed.judge(rec, self.peak, self.fastest.get(task.run.label))
            if reasons:
                what = ("its scores reflect the load" if "seconds" in self.suite.budget.limits()
                        else "its scores stand, its timings (train s, img/s, % peak) do not")
                self.console.print(messages.warning(
                    f"{task.run.label} seed {task.run.seed} looks contended: {'; '.join(reasons)}; "
                    f"{what}; {speed.HINT}"), soft_wrap=True)
            _note_speed(self.fastest, rec)
        record.write_json(run_dir / record.RECORD, rec)
        return rec


class Beside:
    """How many other runs ran at the same time as each run, at most."""

    def __init__(self):
        self.running: dict[str, int] = {}

    def start(self, run_id: str) -> None:
        self.running[run_id] = 0
        for other in self.running:
            self.running[other] = max(self.running[other], len(self.running) - 1)

    def stop(self, run_id: str) -> int:
        return self.running.pop(run_id, 0)


def _outcome(name: str, rec: dict, run_dir: Path) -> str:
    """The line printed when a run comes back."""
    if rec["status"] != "ok":
        where = f" (traceback in {run_dir / 'error.log'})" if (run_dir / "error.log").is_file() else ""
        return f"{escape(name)}: [red]failed[/]: {escape(rec.get('error', ''))}{escape(where)}"
    shown_ = ", ".join(f"{k} {v:.3f}" for k, v in rec["metrics"].items() if v is not None)
    return f"{escape(name)}: {escape(shown_) or 'no applicable metrics'} (eval {rec['eval_seconds']:.1f} s)"


def _note_speed(fastest: dict[str, float], rec: dict) -> None:
    ips = (rec.get("throughput") or {}).get("images_per_second")
    if isinstance(ips, (int, float)) and not rec.get("contended") and rec.get("status") == "ok":
        fastest[rec["label"]] = max(fastest.get(rec["label"], 0.0), float(ips))


def _finish_figures(out: Path, rec: dict, console: Console) -> None:
    """Draw what a finished run lacks (a process killed right after its record was written)."""
    results = store.Results(out, {}, {}, [rec])
    missing = [p for p in figures.run_figure_paths(results.run_dir(rec), rec, results.snapshot(rec))
               if not p.is_file()]
    if missing:
        console.print(f"  [dim]drawing its {len(missing)} missing figure(s)[/]")
        report_step(console, "figures", lambda: report.draw_run(results, rec))


def report_step(console: Console, what: str, fn) -> None:
    """Figures and pages are extras: a bug there must not fail a finished run.

    A file that cannot be written is not a bug: it stops the suite (OutputError).
    """
    try:
        fn()
    except files.OutputError:
        raise
    except Exception as err:
        console.print(messages.warning(f"could not write the {what}: {type(err).__name__}: {err} "
                                       f"(rebuild with `genbench report`)"))
