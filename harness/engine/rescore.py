"""``genbench rescore``: score the saved models of a results folder again, without training.

For a metric added after the fact, or a metric fixed since. Evaluation draws from
streams seeded by each run's seed, so rescoring a saved model with the same settings
reproduces its recorded scores exactly.
"""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

import torch
import yaml
from rich.console import Console
from rich.markup import escape

from .. import messages
from ..api import options
from ..errors import UserError
from ..render import report
from ..results import files, readback, record, store
from . import snapshot
from .config import Suite, load_suite, metric_entry
from .evaluate import evaluate
from .pluginmanager import Registry
from .runner import load_data, pick_device


def rescore(out: Path, registry: Registry, metrics: list[str] | None = None, suite_path: str | None = None,
            device_name: str = "auto", console: Console | None = None, overrides: dict | None = None) -> int:
    """Re-evaluate every finished run that kept its model.pt; return the exit status.

    ``overrides`` set evaluation-only model options (declared ``option(evaluation=True)``)
    on every run whose model has them, e.g. a diffusion model's sampling steps.
    """
    overrides = dict(overrides or {})
    console = console or messages.console()
    out = Path(out)
    suite = load_suite(suite_path or out / "suite.yaml", registry, loggers=False)
    names = list(metrics) if metrics else list(suite.metrics)
    unknown = [m for m in names if m not in registry.metrics]
    if unknown:
        raise UserError(f"--metrics: unknown metric(s) {', '.join(unknown)}; `genbench plugins` lists them")
    device = pick_device(device_name)
    with files.FolderLock(out, "rescore"):
        results = store.load(out)
        # A search's trials keep no model and were scored on the validation split: not rescored.
        runs = [r for r in results.records if r["status"] == "ok" and not r.get("trial")]
        missing = [r["run_id"] for r in runs if not (results.run_dir(r) / "model.pt").is_file()]
        for run_id in missing:
            console.print(messages.warning(f"{run_id}: no model.pt (save_models: false?); not rescored"))
        runs = [r for r in runs if r["run_id"] not in missing]
        if not runs:
            raise UserError(f"{out}: no finished run with a saved model.pt to rescore")
        changed = _check_overrides(registry, runs, overrides)
        if overrides:  # only the runs whose models the changed options belong to
            runs = [r for r in runs if r["run_id"] in changed]
        data = load_data(suite, registry, device, console=console, metrics=names)
        chosen = [registry.metrics[m] for m in names]
        for i, rec in enumerate(runs, 1):
            started = time.perf_counter()
            if rec["run_id"] in changed:
                rec["options"] = {**(rec.get("options") or {}), **changed[rec["run_id"]]}
            model = _load_model(registry, rec, results.run_dir(rec) / "model.pt", data.info, device)
            scores, details = evaluate(model, data, chosen, suite.evaluation, rec["seed"], suite.metric_options)
            _update(rec, scores, details, chosen, suite, time.perf_counter() - started)
            if rec["run_id"] in changed:
                rec["rescored"]["options"] = changed[rec["run_id"]]
                _redraw(model, data, rec, results.run_dir(rec), suite.report.latent_points)
            record.write_json(results.run_dir(rec) / record.RECORD, rec)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in scores.items() if v is not None)
            console.print(f"{i}/{len(runs)} {escape(rec['label'])} seed {rec['seed']}: {escape(shown) or '-'}")
        _save_suite(out, suite, chosen)
        report.build(store.load(out), redraw_runs=bool(changed))
    console.print(f"Rescored {len(runs)} run(s) in {escape(str(out))}; tables and report.html rebuilt")
    return 0


def _check_overrides(registry: Registry, runs: list[dict], overrides: dict) -> dict[str, dict]:
    """run_id -> the overrides that apply to it; a user error for a training option or a name no run has."""
    changed: dict[str, dict] = {}
    for name in overrides:
        fits = False
        for rec in runs:
            cls = registry.models.get(rec["model"])
            if cls is None or name not in {f.name for f in dataclasses.fields(cls.Options)}:
                continue
            if name not in options.evaluation_only(cls.Options):
                raise UserError(f"--set {name}: a training option of model '{rec['model']}'; changing it needs "
                                f"new training (`genbench run`). Evaluation-only options: "
                                f"{', '.join(sorted(options.evaluation_only(cls.Options))) or 'none'}")
            _, errors = options.build(cls.Options, {**(rec.get("options") or {}), name: overrides[name]})
            mine = [message for path, message in errors if path[:1] == (name,)]
            if mine:
                raise UserError(f"--set {name}: {mine[0]}")
            fits = True
            changed.setdefault(rec["run_id"], {})[name] = overrides[name]
        if not fits:
            raise UserError(f"--set {name}: no rescored run's model has an option '{name}'")
    return changed


def _redraw(model, data, rec: dict, run_dir: Path, latent_points: int) -> None:
    """The figures' arrays and the sampling cost again, under the changed options."""
    timings: dict = {}
    arrays = snapshot.take(model, data, rec["seed"], latent_points, timings)
    files.write_bytes(run_dir / snapshot.SNAPSHOT, snapshot.to_bytes(arrays))
    rec.update(timings)


def _load_model(registry: Registry, rec: dict, path: Path, info, device: torch.device):
    cls = registry.models.get(rec["model"])
    if cls is None:
        raise UserError(f"{path}: model '{rec['model']}' is not installed")
    opts, errors = options.build(cls.Options, rec.get("options") or {})
    if errors:
        raise UserError(f"{path.parent / record.RECORD}: its options no longer fit model '{rec['model']}': "
                        f"{options.format_path(errors[0][0])}: {errors[0][1]}")
    try:
        saved = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)  # never unpickle
        model = cls(opts, info)
        model.load_state_dict(saved["state_dict"])
    except Exception as err:
        raise UserError(f"{path}: cannot be loaded into model '{rec['model']}': {type(err).__name__}: {err}") from None
    return model.to(device)


def _update(rec: dict, scores: dict, details: dict, metrics, suite: Suite, seconds: float) -> None:
    rec["metrics"] = {**(rec.get("metrics") or {}), **scores}
    errors = details.pop("errors", {})
    rec["metric_errors"] = {**{k: v for k, v in (rec.get("metric_errors") or {}).items() if k not in scores}, **errors}
    rec["metric_details"] = {**(rec.get("metric_details") or {}), **details}
    rec["metric_info"] = {**(rec.get("metric_info") or {}), **{m.name: m.info() for m in metrics}}
    rec["evaluation"] = options.as_dict(suite.evaluation)
    rec["metric_options"] = {**(rec.get("metric_options") or {}),
                             **{m.name: options.as_dict(suite.options_of(m)) for m in metrics if m.Options is not None}}
    rec["rescored"] = {"at": record.utc_now(), "metrics": list(scores),
                       "eval_seconds": round(seconds, 3)}


def _save_suite(out: Path, suite: Suite, metrics: list) -> None:
    """suite.yaml lists every metric the records now hold, in the suite's order first."""
    resolved = readback.suite(out, [])  # read as a suite just above: nothing is left out
    old = resolved.get("metrics") if isinstance(resolved.get("metrics"), list) else []
    entries = {(e.get("name") if isinstance(e, dict) else e): e for e in old}
    for metric in metrics:  # as rescored: with the options used now
        entries[metric.name] = metric_entry(metric.name, suite.options_of(metric))
    resolved["metrics"] = list(entries.values())
    resolved["evaluation"] = options.as_dict(suite.evaluation)
    record.write_text(out / "suite.yaml", yaml.safe_dump(resolved, sort_keys=False))
