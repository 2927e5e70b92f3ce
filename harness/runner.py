"""Runs a validated suite: data once, then train -> evaluate -> record for each run."""

from __future__ import annotations

import dataclasses
import json
import random
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from . import leaderboard, record, report, snapshot
from .config import RunSpec, Suite
from .data import DeviceData, prepare
from .errors import UserError
from .metrics import check_counts, evaluate, subset_evaluator
from .pluginmanager import Registry
from .train import train


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available here; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def check_out_dir(suite: Suite, out: Path, resume: bool) -> None:
    """Refuse to mix suites in one folder or to overwrite results silently."""
    saved = out / "suite.yaml"
    if not saved.is_file():
        return
    try:
        old = yaml.safe_load(saved.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        old = {}
    new = suite.resolved()
    if resume:
        for key in ("name", "dataset"):
            if old.get(key) != new[key]:
                raise UserError(f"--resume: {out} holds results of a different suite "
                                f"({key} {old.get(key)!r} there, {new[key]!r} in {suite.path}); "
                                f"choose another --out")
    elif record.read_records(out):
        raise UserError(f"{out} already holds results of suite '{old.get('name')}'; pass --resume "
                        f"to continue it, or choose another --out")


def load_data(suite: Suite, registry: Registry, device: torch.device, download: bool = True,
              console: Console | None = None) -> DeviceData:
    """The suite's data on the device, after checking the metrics can use it."""
    dataset = registry.datasets[suite.dataset.name](suite.dataset_options)
    data = prepare(dataset, suite.dataset, device, download=download)
    errors, warnings = check_counts([registry.metrics[m] for m in suite.metrics], suite.evaluation, len(data.eval))
    if errors:
        raise UserError(*[f"{suite.path}: {e}" for e in errors])
    for warning in warnings:
        (console or Console(stderr=True)).print(f"[yellow]genbench: warning:[/] {warning}", highlight=False)
    return data


def run_suite(suite: Suite, registry: Registry, out: Path, device_name: str = "auto",
              resume: bool = False, console: Console | None = None) -> int:
    """Run every run of ``suite`` into ``out``; return the exit status (1 if any run failed)."""
    console = console or Console()
    out = Path(out)
    check_out_dir(suite, out, resume)
    device = pick_device(device_name)
    started = time.perf_counter()
    data = load_data(suite, registry, device, console=console)  # before writing: no data, no files
    console.print(f"[bold]{suite.name}[/]: {len(suite.runs)} runs on {suite.dataset.name} "
                  f"({len(data.train)} train / {len(data.eval)} {data.eval_split} images), "
                  f"device {device}, budget {suite.budget.limits()}")
    record.write_text(out / "suite.yaml", yaml.safe_dump(suite.resolved(), sort_keys=False))
    record.write_json(out / "env.json", record.environment(device, registry.plugin_sources()))
    failed = 0
    for i, run in enumerate(suite.runs, 1):
        run_id = suite.run_id(run)
        run_dir = out / "runs" / run_id
        if resume and _done(run_dir, suite, run):
            console.print(f"[dim]{i}/{len(suite.runs)} {escape(run.label)} seed {run.seed}: done already, skipped[/]")
            continue
        rec = execute_run(suite, run, run_id, run_dir, registry, data, device, console,
                          f"{i}/{len(suite.runs)}")
        failed += rec["status"] != "ok"
        record.write_json(run_dir / record.RECORD, rec)
        results = report.load(out)
        report.write_tables(results)
        if rec["status"] == "ok":
            _report_step(console, "figures", lambda: report.draw_run(results, rec))
    results = report.load(out)
    _report_step(console, "report", lambda: report.build(results, redraw_runs=False))
    board = results.board()
    if not board.empty:
        console.print(leaderboard.rich_table(
            dataclasses.replace(board, title=f"{suite.name}: leaderboard (sorted by {suite.primary_metric})"),
            width=console.width))
    console.print(f"Results in {out}/ after {time.perf_counter() - started:.0f} s: leaderboard.md, "
                  f"results.csv, results.json, figures/, runs/" + (f"; [red]{failed} run(s) failed[/]" if failed else ""))
    if (out / "report.html").is_file():
        console.print(f"Report: {out / 'report.html'}", highlight=False, soft_wrap=True)
    return 1 if failed else 0


def _report_step(console: Console, what: str, fn) -> None:
    """Figures and pages are extras: a bug there must not fail a finished run."""
    try:
        fn()
    except Exception as err:
        console.print(f"  [yellow]genbench: warning:[/] could not write the {what}: "
                      f"{escape(f'{type(err).__name__}: {err}')} (rebuild with `genbench report`)")


def _done(run_dir: Path, suite: Suite, run: RunSpec) -> bool:
    path = run_dir / record.RECORD
    if not path.is_file():
        return False
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return rec.get("status") == "ok" and rec.get("config_hash") == suite.run_hash(run)


def execute_run(suite: Suite, run: RunSpec, run_id: str, run_dir: Path, registry: Registry,
                data: DeviceData, device: torch.device, console: Console, counter: str) -> dict:
    """Train and score one run; a failure becomes a record with status 'failed'."""
    rec = {"run_id": run_id, "label": run.label, "model": run.model, "seed": run.seed,
           "options": run.options_dict(), "dataset": suite.dataset_dict(),
           "eval_split": data.eval_split, "batch_size": suite.batch_size,
           "budget": suite.budget.limits(), "config_hash": suite.run_hash(run),
           "device": str(device), "versions": record.versions(),
           "started": _now(), "status": "running"}
    metrics = [registry.metrics[m] for m in suite.metrics]
    rec["metric_info"] = {m.name: {"unit": m.unit, "higher_is_better": m.higher_is_better,
                                   "requires": sorted(c.value for c in m.requires),
                                   "description": m.description} for m in metrics}
    try:
        seed_everything(run.seed)
        model = registry.models[run.model](run.options, data.info).to(device)
        model.optimizers = model.configure_optimizers()
        score = None
        if suite.evaluation.curve_metrics:
            score = subset_evaluator(model, data, [registry.metrics[m] for m in suite.evaluation.curve_metrics],
                                     suite.evaluation)
        with _progress(console) as progress:
            task = progress.add_task(escape(f"{counter} {run.label} seed {run.seed}"), total=1.0, info="")
            def show(clock, losses):
                shown = " ".join(f"{k} {v:.3g}" for k, v in list(losses.items())[:3])
                progress.update(task, completed=clock.fraction(),
                                info=f"step {clock.steps} {shown} | {clock.left()}")
            result = train(model, data, suite.budget.limits(), suite.batch_size, run.seed, show,
                           score=score, score_every=suite.evaluation.curve_every)
        rec.update(budget_used=result.used, stopped_by=result.stopped_by,
                   final_losses=result.final, history=result.history)
        if score is not None:
            rec.update(eval_history=result.eval_history, curve_seconds=result.eval_seconds,
                       curve_images=min(suite.evaluation.curve_images, len(data.eval)))
        started = time.perf_counter()
        rec["metrics"], details = evaluate(model, data, metrics, suite.evaluation)
        rec["metric_details"] = details
        rec["eval_seconds"] = round(time.perf_counter() - started, 3)
        _report_step(console, "figure snapshot", lambda: snapshot.save(
            run_dir / snapshot.SNAPSHOT, snapshot.take(model, data, run.seed, suite.report.latent_points)))
        if suite.save_models:
            run_dir.mkdir(parents=True, exist_ok=True)
            torch.save({"model": run.model, "options": run.options_dict(),
                        "state_dict": model.state_dict(),
                        "optimizers": {k: o.state_dict() for k, o in model.optimizers.items()}},
                       run_dir / "model.pt")
        rec["status"] = "ok"
        shown = ", ".join(f"{k} {v:.3f}" for k, v in rec["metrics"].items() if v is not None)
        console.print(f"  {shown or 'no applicable metrics'} (eval {rec['eval_seconds']:.1f} s)")
    except KeyboardInterrupt:
        raise
    except Exception as err:  # one broken run must not take the suite down
        rec.update(status="failed", error=f"{type(err).__name__}: {err}")
        record.write_text(run_dir / "error.log", traceback.format_exc())
        console.print(f"  [red]failed[/]: {escape(rec['error'])} (traceback in {run_dir / 'error.log'})")
    rec["finished"] = _now()
    return rec


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
