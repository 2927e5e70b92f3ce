"""Runs a validated suite: data once, then train -> evaluate -> record for each run."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
import yaml
from rich.console import Console
from rich.markup import escape

from .. import messages
from ..api import extractor
from ..errors import UserError, shown
from ..render import leaderboard, report
from ..results import files, readback, record, store
from . import parallel, precision, search, speed
from .config import Suite, load_suite, no_extractor, suite_extractor
from .data import DeviceData
from .driver import Driver, report_step
from .evaluate import check_metrics
from .execute import load_run_data
from .pluginmanager import Registry
from .tracking import Tracking, suite_info


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available here; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None


# What must match for runs of one folder to be pooled: anything that changes a run's
# numbers. Seeds and configurations may be added on --resume; these may not change.
RESUME_KEYS = ("name", "dataset", "budget", "batch_size", "metrics", "evaluation", "trials", "sampler", "search_seed")
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
    problems: list[str] = []
    old = readback.suite(out, problems)
    if problems or not old:
        raise UserError(f"{(problems or [str(saved)])[0]}: so the folder's settings are unknown; choose another --out")
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
              for name in RESUME_KEYS for key, a, b in _differences(name, old.get(name), new.get(name))]
    searched = {r.get("label"): (r.get("search"), r.get("search_metric")) for r in old.get("runs") or []
                if isinstance(r, dict) and r.get("search")}
    differ += [f"the search of '{r['label']}' (its space, fixed options or metric)" for r in new["runs"]
               if r["label"] in searched and searched[r["label"]] != (r.get("search"), r.get("search_metric"))]
    env = readback.env(out, [])  # a field that fails its check is left out, as in a report
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



def load_data(suite: Suite, registry: Registry, device: torch.device, download: bool = True,
              console: Console | None = None, metrics: list[str] | None = None) -> DeviceData:
    """The suite's data on the device, after checking its metrics (or ``metrics``) can use it."""
    data = load_run_data(suite, registry, device, download)
    names = suite.metrics if metrics is None else metrics
    too_small = speed.check_flop_budget(suite, registry, data) + precision.check_suite(suite, device)
    if too_small:
        raise UserError(*[suite.where(path, message) for path, message in too_small])
    problems, warnings = check_metrics([registry.metrics[m] for m in names], suite.metric_options,
                                       suite.evaluation, len(data.eval), data.info)
    if problems:
        raise UserError(*[suite.where(suite.metric_path(name), f"metric '{name}': {p}")
                          for name, found in problems.items() for p in found])
    searched = sorted({s.metric for s in suite.searches} - set(names)) if metrics is None else []
    if suite.searches and data.validation is not None:  # trials score their metric on the validation split
        problems, more = check_metrics([registry.metrics[m] for m in {s.metric for s in suite.searches}],
                                       suite.metric_options, suite.evaluation, len(data.validation), data.info)
        if problems:
            where = {s.metric: s.where + ("search_metric",) for s in suite.searches}
            raise UserError(*[suite.where(where[name], f"metric '{name}' on the validation split: {p}")
                              for name, found in problems.items() for p in found])
        warnings += [w for w in more if w not in warnings]
    check_extractor(suite, registry, data, [*names, *searched])
    for warning in warnings:
        (console or messages.console(stderr=True)).print(messages.warning(warning))
    return data


def check_extractor(suite: Suite, registry: Registry, data: DeviceData, metrics=None) -> None:
    """Before anything trains: the sample metrics' feature extractor exists and is the pinned one."""
    metrics = suite.metrics if metrics is None else metrics
    names = [m for m in (*metrics, *suite.evaluation.curve_metrics) if registry.metrics[m].uses_samples]
    if not names or suite.evaluation.feature_extractor == "inception":
        return
    spec = data.extractor
    if spec is None:
        raise UserError(suite.where(("evaluation", "feature_extractor"), no_extractor(suite.dataset.name, names)))
    try:
        extractor.load(spec)
    except extractor.ExtractorMismatch as err:
        raise UserError(f"{suite.path}: the feature extractor of data set '{suite.dataset.name}' cannot be used: "
                        f"{err}; reinstall the package that ships it") from None


def run_suite(suite: Suite, registry: Registry, out: Path, device_name: str = "auto",
              resume: bool = False, console: Console | None = None, threads: int | None = None,
              workers: int | None = None, executor: str = "local", address: str | None = None,
              gpus_per_run: float | None = None) -> int:
    """Run every run of ``suite`` into ``out``; return the exit status (1 if any run failed).

    The folder is locked for the whole suite, checked writable before the data is
    loaded, and left resumable whatever stops the suite. ``threads`` sets torch's
    intra-op thread count (recorded with every run); ``workers`` > 1 runs that many
    runs at once in worker processes (each with ``threads``, by default an equal share
    of the cores); ``executor="ray"`` runs them as Ray actors, on a new local Ray
    instance or the cluster at ``address``.
    """
    console = console or messages.console()
    out = Path(out)
    device = pick_device(device_name)
    plan = parallel.plan(suite, device, workers, threads, executor, address, gpus_per_run)
    for warning in plan.warnings:
        console.print(messages.warning(warning), soft_wrap=True)
    if plan.workers == 1 and not plan.ray and threads is not None:
        torch.set_num_threads(threads)
    created = not out.exists()
    files.check_writable(out)
    # A process refused the lock leaves the folder to the one that holds it.
    lock = files.FolderLock(out, "run", create=True).acquire()
    try:
        files.remove_stale_temporaries(out)
        spec = suite_extractor(suite, registry)
        records = record.read_records(out)
        resolved = check_out_dir(suite, out, resume, device, spec.sha256 if spec else None, records, registry)
        # A failed run is run again on --resume; a failed trial is not: it spent its
        # share of the search's budget, and the search went on without it.
        done = {(r["label"], r["seed"], r.get("config_hash")): r for r in records
                if r["status"] == "ok" or (r["status"] == "failed" and r.get("trial"))}
        try:
            return _run_locked(suite, registry, out, device, done if resume else {}, console, resolved, plan)
        except files.OutputError as err:
            err.lines.append(f"finished runs in {out} are kept; fix the cause, then continue with --resume")
            err.exit_code = 1
            raise
    finally:
        # A suite that stopped before writing anything leaves no folder behind.
        lock.release(remove_empty_folder=created)


def _run_locked(suite: Suite, registry: Registry, out: Path, device: torch.device, done: dict[tuple, dict],
                console: Console, resolved: dict, plan: parallel.Plan) -> int:
    """The suite's runs; ``done`` holds the finished runs to skip, by (label, seed, configuration hash)."""
    started = time.perf_counter()
    peak = speed.matmul_peak(device)  # the yardstick of each run's FLOP/s, measured before workers start
    executor = plan.executor(suite, registry, device)
    executor.start()  # worker processes import and load while this process checks the data
    tracking = None
    try:
        data = load_data(suite, registry, device, console=console)  # before writing: no data, no files
        console.print(f"[bold]{escape(suite.name)}[/]: {suite.describe_runs()} on {escape(suite.dataset.name)} "
                      f"({len(data.train)} train / {len(data.eval)} {data.eval_split} images), "
                      f"device {device}, budget {escape(str(suite.budget.limits()))}"
                      + (f", {plan.workers} {'Ray actors' if plan.ray else 'workers'} x {plan.threads} threads"
                         if plan.workers > 1 or plan.ray else ""))
        record.write_text(out / "suite.yaml", yaml.safe_dump(resolved, sort_keys=False))
        env = record.environment(device, registry.plugin_sources(), registry.warnings)
        env["matmul_flops_per_second"] = round(peak)
        env["matmul_peak_method"] = speed.PEAK_METHOD.format(n=5, seconds=0.1)
        record.write_json(out / "env.json", env)
        tracking = Tracking(suite, registry, console)
        failed = _runs(suite, registry, out, done, console, data, tracking, resolved,
                       env["matmul_flops_per_second"], executor)
        results = store.load(out)
        report_step(console, "report", lambda: report.build(results, redraw_runs=False))
        tracking.emit("on_suite_end", out, suite_files(out))
    finally:
        executor.close()  # also on Ctrl-C: workers are stopped, the folder stays resumable
        if tracking is not None:
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


def _runs(suite: Suite, registry: Registry, out: Path, done: dict[tuple, dict], console: Console,
          data: DeviceData, tracking: Tracking, resolved: dict, peak: float, executor) -> int:
    """The search (when the suite has one), then every final run; return how many failed."""
    tracking.emit("on_suite_start", suite_info(suite, out, resolved))
    drive = Driver(suite, registry, out, console, data, tracking, peak, executor, done)
    finals: list = list(suite.runs)
    failed = 0
    if suite.searches:
        outcomes, failed = search.run_searches(suite, registry, drive, out)
        finals += search.final_runs(suite, registry, outcomes)
        drive.annotate = search.annotator(outcomes, suite)
    _, lost = drive.run(finals, "runs" if suite.searches else None)
    return failed + lost


def suite_files(out: Path) -> list[Path]:
    """The suite's tables, report and comparison figures, as far as they exist."""
    tables = [out / name for name in ("leaderboard.md", "results.csv", "results.json", "report.html")]
    return [p for p in tables if p.is_file()] + sorted((out / report.FIGURES).glob("*.png"))


