"""Runs a validated suite: data once, then train -> evaluate -> record for each run."""

from __future__ import annotations

import dataclasses
import io
import json
import random
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from .. import messages
from ..api import extractor
from ..api.logger import RunInfo
from ..api.options import as_dict
from ..errors import UserError, shown
from ..render import figures, leaderboard, report
from ..results import files, record, schema, store
from . import precision, snapshot, speed
from .config import RunSpec, Suite, load_suite
from .data import DeviceData, prepare
from .evaluate import check_metrics, evaluate, subset_evaluator
from .pluginmanager import Registry
from .tracking import Tracking, run_info, suite_info
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


# What must match for runs of one folder to be pooled: anything that changes a run's
# numbers. Seeds and configurations may be added on --resume; these may not change.
RESUME_KEYS = ("name", "dataset", "budget", "batch_size", "metrics", "evaluation")
RESUME_VERSIONS = ("genbench", "torch", "torchvision", "torch-fidelity", "numpy")


def check_out_dir(suite: Suite, out: Path, resume: bool, device: torch.device,
                  extractor: str | None = None, records: list[dict] | None = None,
                  registry: Registry | None = None) -> dict:
    """Refuse to mix settings in one folder or to overwrite results silently.

    ``records`` are the folder's run records (read here if not given). Returns the
    resolved suite to save: on --resume, the saved one with this suite's new seeds and
    configurations added. With ``registry``, the saved suite is read as a suite file,
    so one written by an older genbench compares by meaning, not by layout.
    """
    records = record.read_records(out) if records is None else records
    new = suite.resolved()
    saved = out / "suite.yaml"
    if not saved.is_file():
        if records:
            raise UserError(f"{out} holds run records but no suite.yaml, so its settings are unknown; "
                            f"choose another --out")
        return new
    try:
        old = yaml.safe_load(saved.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        old = None
    if not isinstance(old, dict):
        raise UserError(f"{saved}: cannot be read, so the folder's settings are unknown; choose another --out")
    if not resume:
        if records:
            raise UserError(f"{out} already holds results of suite '{old.get('name')}'; pass --resume "
                            f"to continue it, or choose another --out")
        return new
    if registry is not None and resume:
        try:
            old = load_suite(saved, registry, loggers=False).resolved()
        except UserError:
            pass  # compared as written: whatever differs is named below
    if old.get("name") != new["name"]:
        raise UserError(f"--resume: {out} holds results of a different suite (name {old.get('name')!r} there, "
                        f"{new['name']!r} in {suite.path}); choose another --out")
    differ = [f"{key} {shown(a)} there, {shown(b)} in {suite.path}"
              for name in RESUME_KEYS for key, a, b in _differences(name, old.get(name), new[name])]
    env = _read_env(out)
    old_versions = env.get("versions") or {}
    now = record.versions()
    differ += [f"{dist} {old_versions[dist]} there, {now.get(dist)} here" for dist in RESUME_VERSIONS
               if dist in old_versions and old_versions[dist] != now.get(dist)]
    old_device = str(env.get("device", "")).split(":")[0]
    if old_device and old_device != device.type:
        differ.append(f"device {old_device} there, {device.type} here")
    used = {leaderboard.extractor_sha(r) for r in records} - {None}
    if extractor and used - {extractor}:
        differ.append(f"feature extractor sha256 {', '.join(sorted(used))[:16]}... there, {extractor[:16]}... here")
    if differ:
        raise UserError(f"--resume: {out} was run with other settings, and runs of different settings "
                        f"are never pooled: {'; '.join(differ)}; run the suite as it was, or choose another --out")
    merged = dict(new)
    merged["seeds"] = sorted(set(old.get("seeds") or []) | set(new["seeds"]))
    labels = {r["label"] for r in new["runs"]}
    merged["runs"] = new["runs"] + [r for r in old.get("runs") or [] if isinstance(r, dict) and r.get("label") not in labels]
    return merged


def _differences(key: str, old, new):
    """(dotted key, old, new) for each value that differs, looking into mappings."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new), key=str):
            yield from _differences(f"{key}.{k}", old.get(k), new.get(k))
    elif old != new:
        yield key, old, new


def _read_env(out: Path) -> dict:
    try:
        env = json.loads((out / "env.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return env if isinstance(env, dict) else {}


def load_data(suite: Suite, registry: Registry, device: torch.device, download: bool = True,
              console: Console | None = None, metrics: list[str] | None = None) -> DeviceData:
    """The suite's data on the device, after checking its metrics (or ``metrics``) can use it."""
    dataset = registry.datasets[suite.dataset.name](suite.dataset_options)
    data = prepare(dataset, suite.dataset, device, download=download and suite.dataset.download)
    names = suite.metrics if metrics is None else metrics
    too_small = speed.check_flop_budget(suite, registry, data) + precision.check(suite.training, device)
    if too_small:
        raise UserError(*[suite.where(path, message) for path, message in too_small])
    problems, warnings = check_metrics([registry.metrics[m] for m in names], suite.metric_options,
                                       suite.evaluation, len(data.eval), data.info)
    if problems:
        raise UserError(*[suite.where(suite.metric_path(name), f"metric '{name}': {p}")
                          for name, found in problems.items() for p in found])
    check_extractor(suite, registry, data, names)
    for warning in warnings:
        (console or messages.console(stderr=True)).print(messages.warning(warning))
    return data


def check_extractor(suite: Suite, registry: Registry, data: DeviceData, metrics=None) -> None:
    """Before anything trains: the sample metrics' feature extractor exists and is the pinned one."""
    metrics = suite.metrics if metrics is None else metrics
    names = [m for m in (*metrics, *suite.evaluation.curve_metrics) if registry.metrics[m].uses_samples]
    if not names or suite.evaluation.feature_extractor != "domain":
        return
    spec = data.extractor
    if spec is None:
        raise UserError(f"{suite.path}: metrics: {', '.join(sorted(set(names)))} need a feature extractor, and data set "
                        f"'{suite.dataset.name}' ships none; train one with `genbench extractor train "
                        f"{suite.dataset.name} --out FILE`, or use evaluation.feature_extractor: inception")
    try:
        extractor.load(spec)
    except extractor.ExtractorMismatch as err:
        raise UserError(f"{suite.path}: the feature extractor of data set '{suite.dataset.name}' cannot be used: "
                        f"{err}; reinstall the package that ships it") from None


def run_suite(suite: Suite, registry: Registry, out: Path, device_name: str = "auto",
              resume: bool = False, console: Console | None = None, threads: int | None = None) -> int:
    """Run every run of ``suite`` into ``out``; return the exit status (1 if any run failed).

    The folder is locked for the whole suite, checked writable before the data is
    loaded, and left resumable whatever stops the suite. ``threads`` sets torch's
    intra-op thread count (recorded with every run).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    console = console or messages.console()
    out = Path(out)
    device = pick_device(device_name)
    created = not out.exists()
    files.check_writable(out)
    try:
        with files.FolderLock(out, "run"):
            files.remove_stale_temporaries(out)
            spec = registry.datasets[suite.dataset.name].extractor
            records = record.read_records(out)
            resolved = check_out_dir(suite, out, resume, device, spec.sha256 if spec else None, records, registry)
            done = {(r["label"], r["seed"], r.get("config_hash")): r for r in records if r["status"] == "ok"}
            try:
                return _run_locked(suite, registry, out, device, done if resume else {}, console, resolved)
            except files.OutputError as err:
                err.lines.append(f"finished runs in {out} are kept; fix the cause, then continue with --resume")
                err.exit_code = 1
                raise
    finally:
        if created:  # a suite that stopped before writing anything leaves no folder behind
            files.remove_if_only_lock(out)


def _run_locked(suite: Suite, registry: Registry, out: Path, device: torch.device, done: dict[tuple, dict],
                console: Console, resolved: dict) -> int:
    """The suite's runs; ``done`` holds the finished runs to skip, by (label, seed, configuration hash)."""
    started = time.perf_counter()
    data = load_data(suite, registry, device, console=console)  # before writing: no data, no files
    console.print(f"[bold]{escape(suite.name)}[/]: {len(suite.runs)} runs on {escape(suite.dataset.name)} "
                  f"({len(data.train)} train / {len(data.eval)} {data.eval_split} images), "
                  f"device {device}, budget {escape(str(suite.budget.limits()))}")
    record.write_text(out / "suite.yaml", yaml.safe_dump(resolved, sort_keys=False))
    env = record.environment(device, registry.plugin_sources(), registry.warnings)
    env["matmul_flops_per_second"] = round(speed.matmul_peak(device))  # the yardstick of each run's FLOP/s
    record.write_json(out / "env.json", env)
    tracking = Tracking(suite, registry, console)
    try:
        failed = _runs(suite, registry, out, device, done, console, data, tracking, resolved,
                       env["matmul_flops_per_second"])
        results = store.load(out)
        _report_step(console, "report", lambda: report.build(results, redraw_runs=False))
        tracking.emit("on_suite_end", out, suite_files(out))
    finally:
        tracking.close()  # also on Ctrl-C: trackers flush and mark open runs as stopped
    for warning in results.warnings:
        console.print(messages.warning(warning))
    board = results.board()
    if not board.empty:
        console.print(leaderboard.rich_table(
            dataclasses.replace(board, title=f"{suite.name}: leaderboard (sorted by {suite.primary_metric})"),
            width=console.width))
    console.print(f"Results in {escape(str(out))}/ after {time.perf_counter() - started:.0f} s: leaderboard.md, "
                  f"results.csv, results.json, figures/, runs/" + (f"; [red]{failed} run(s) failed[/]" if failed else ""))
    if (out / "report.html").is_file():
        console.print(f"Report: {escape(str(out / 'report.html'))}")
    return 1 if failed else 0


def _runs(suite: Suite, registry: Registry, out: Path, device: torch.device, done: dict[tuple, dict],
          console: Console, data: DeviceData, tracking: Tracking, resolved: dict, peak: float) -> int:
    """Train, score and record every run not done yet; return how many failed."""
    tracking.emit("on_suite_start", suite_info(suite, out, resolved))
    failed = 0
    fastest: dict[str, float] = {}  # label -> best images/s so far, to spot a crowded-out run
    for rec in done.values():
        _note_speed(fastest, rec)
    for i, run in enumerate(suite.runs, 1):
        old = done.get((run.label, run.seed, suite.run_hash(run)))
        if old is not None:
            console.print(f"[dim]{i}/{len(suite.runs)} {escape(run.label)} seed {run.seed}: done already, skipped[/]")
            _finish_figures(out, old, console)
            continue
        run_id = suite.run_id(run)
        run_dir = out / "runs" / run_id
        info = run_info(suite, run, run_id, run_dir)
        tracking.emit("on_run_start", info)
        rec = execute_run(suite, run, run_id, run_dir, registry, data, device, console,
                          f"{i}/{len(suite.runs)}", tracking, info)
        failed += rec["status"] != "ok"
        if rec["status"] == "ok":
            reasons = speed.judge(rec, peak, fastest.get(run.label), suite.budget.limits())
            if reasons:
                console.print(messages.warning(f"{run.label} seed {run.seed} looks contended: {'; '.join(reasons)}. "
                                               f"Under a seconds budget its scores reflect the load; {speed.HINT}"),
                              soft_wrap=True)
            _note_speed(fastest, rec)
        record.write_json(run_dir / record.RECORD, rec)
        results = store.load(out)
        report.write_tables(results)
        if rec["status"] == "ok":
            _report_step(console, "figures", lambda: report.draw_run(results, rec))
        tracking.emit("on_run_end", info, rec, sorted(run_dir.glob("*.png")))
    return failed


def _note_speed(fastest: dict[str, float], rec: dict) -> None:
    ips = (rec.get("throughput") or {}).get("images_per_second")
    if isinstance(ips, (int, float)) and not rec.get("contended"):
        fastest[rec["label"]] = max(fastest.get(rec["label"], 0.0), float(ips))


def suite_files(out: Path) -> list[Path]:
    """The suite's tables, report and comparison figures, as far as they exist."""
    tables = [out / name for name in ("leaderboard.md", "results.csv", "results.json", "report.html")]
    return [p for p in tables if p.is_file()] + sorted((out / report.FIGURES).glob("*.png"))


def _finish_figures(out: Path, rec: dict, console: Console) -> None:
    """Draw what a finished run lacks (a process killed right after its record was written)."""
    results = store.Results(out, {}, {}, [rec])
    missing = [p for p in figures.run_figure_paths(results.run_dir(rec), rec, results.snapshot(rec))
               if not p.is_file()]
    if missing:
        console.print(f"  [dim]drawing its {len(missing)} missing figure(s)[/]")
        _report_step(console, "figures", lambda: report.draw_run(results, rec))


def _report_step(console: Console, what: str, fn) -> None:
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


def execute_run(suite: Suite, run: RunSpec, run_id: str, run_dir: Path, registry: Registry,
                data: DeviceData, device: torch.device, console: Console, counter: str,
                tracking: Tracking | None = None, info: RunInfo | None = None) -> dict:
    """Train and score one run; a failure becomes a record with status 'failed'.

    With ``tracking``, the loggers get the run's training losses and curve scores.
    """
    rec = {"schema_version": schema.SCHEMA_VERSION, "run_id": run_id, "label": run.label, "model": run.model, "seed": run.seed,
           "options": run.options_dict(), "dataset": suite.dataset_dict(),
           "eval_split": data.eval_split, "batch_size": suite.batch_size,
           "budget": suite.budget.limits(), "config_hash": suite.run_hash(run),
           "metrics_requested": list(suite.metrics), "evaluation": as_dict(suite.evaluation),
           "metric_options": suite.metric_options_dict(), "training": as_dict(suite.training),
           "device": str(device), "versions": record.versions(),
           "started": record.utc_now(), "status": "running"}
    metrics = [registry.metrics[m] for m in suite.metrics]
    rec["metric_info"] = {m.name: m.info() for m in metrics}
    try:
        seed_everything(run.seed)
        model = registry.models[run.model](run.options, data.info).to(device)
        model.optimizers = model.configure_optimizers()
        wrap = precision.prepare(model, suite.training, device)
        score = None
        if suite.evaluation.curve_metrics:
            score = subset_evaluator(model, data, [registry.metrics[m] for m in suite.evaluation.curve_metrics],
                                     suite.evaluation, run.seed, suite.metric_options)
        with _progress(console) as progress:
            task = progress.add_task(escape(f"{counter} {run.label} seed {run.seed}"), total=1.0, info="")
            def show(clock, losses):
                shown = " ".join(f"{k} {v:.3g}" for k, v in list(losses.items())[:3])
                progress.update(task, completed=clock.fraction(),
                                info=f"step {clock.steps} {shown} | {clock.left()}")
            result = train(model, data, suite.budget.limits(), suite.batch_size, run.seed, show,
                           score=score, score_every=suite.evaluation.curve_every,
                           on_log=_forward(tracking, "on_train_log", info), on_eval=_forward(tracking, "on_eval_log", info),
                           precision=wrap)
        rec.update(budget_used=result.used, stopped_by=result.stopped_by,
                   final_losses=result.final, history=result.history, throughput=result.throughput,
                   step_flops=result.step_flops)
        if score is not None:
            rec.update(eval_history=result.eval_history, curve_seconds=result.eval_seconds,
                       curve_images=min(suite.evaluation.curve_images, len(data.eval)))
        if suite.save_models:  # before scoring: a model that trained is never lost to a metric
            # Serialised in memory first: torch's writer reports a full disk as a RuntimeError.
            buffer = io.BytesIO()
            torch.save({"model": run.model, "options": run.options_dict(), "state_dict": model.state_dict(),
                        "optimizers": {k: o.state_dict() for k, o in model.optimizers.items()}}, buffer)
            files.write_bytes(run_dir / "model.pt", buffer.getvalue())
        started = time.perf_counter()
        rec["metrics"], details = evaluate(model, data, metrics, suite.evaluation, run.seed, suite.metric_options)
        rec["metric_errors"] = details.pop("errors", {})
        rec["metric_details"] = details
        for name, failure in rec["metric_errors"].items():
            console.print(messages.warning(f"metric '{name}' failed for {run.label} seed {run.seed}: "
                                           f"{failure['error']} (the traceback is in the record)"))
        rec["eval_seconds"] = round(time.perf_counter() - started, 3)
        _report_step(console, "figure snapshot", lambda: snapshot.save(
            run_dir / snapshot.SNAPSHOT, snapshot.take(model, data, run.seed, suite.report.latent_points)))
        rec["status"] = "ok"
        shown = ", ".join(f"{k} {v:.3f}" for k, v in rec["metrics"].items() if v is not None)
        console.print(f"  {escape(shown) or 'no applicable metrics'} (eval {rec['eval_seconds']:.1f} s)")
    except (KeyboardInterrupt, files.OutputError):
        raise  # Ctrl-C, or a folder that cannot take files: stop the suite, keep what is written
    except Exception as err:  # one broken run must not take the suite down
        rec.update(status="failed", error=f"{type(err).__name__}: {err}")
        record.write_text(run_dir / "error.log", traceback.format_exc())
        console.print(f"  [red]failed[/]: {escape(rec['error'])} (traceback in {escape(str(run_dir / 'error.log'))})")
    rec["finished"] = record.utc_now()
    return rec


def _forward(tracking: Tracking | None, event: str, info: RunInfo | None):
    """A training-loop callback that sends each logged entry to the loggers (None without any)."""
    if not tracking:
        return None
    return lambda entry: tracking.emit(event, info, entry["step"], {k: v for k, v in entry.items() if k != "step"})


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)

