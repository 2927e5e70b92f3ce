"""Everything a results folder shows, rebuilt from its saved records and snapshots.

``genbench run`` calls these after each run and at the end; ``genbench report`` calls
them on any results folder, without a model, the data or training.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import yaml

from . import figures, leaderboard, record, snapshot
from .errors import UserError

FIGURES = "figures"  # the suite-level figures' folder


@dataclasses.dataclass
class Results:
    """A results folder as saved: the resolved suite, the environment, the run records."""

    out: Path
    suite: dict
    env: dict
    records: list[dict]
    _snapshots: dict = dataclasses.field(default_factory=dict, repr=False)
    _board: leaderboard.Board | None = dataclasses.field(default=None, repr=False)

    @property
    def title(self) -> str:
        return f"{self.suite.get('name', self.out.name)}: leaderboard"

    @property
    def metrics(self) -> list[str]:
        return list(self.suite.get("metrics") or leaderboard.metric_info(self.records))

    @property
    def order(self) -> list[str]:
        return [r["label"] for r in self.suite.get("runs", [])]

    def board(self) -> leaderboard.Board:
        """The leaderboard of the records (built once; records are not changed after load)."""
        if self._board is None:
            self._board = leaderboard.build(self.records, self.metrics, self.suite.get("primary_metric"), self.title)
        return self._board

    def run_dir(self, rec: dict) -> Path:
        return self.out / "runs" / rec["run_id"]

    def snapshot(self, rec: dict) -> dict:
        """A run's snapshot arrays ({} if it has none), read once per report."""
        if rec["run_id"] not in self._snapshots:
            path = self.run_dir(rec) / snapshot.SNAPSHOT
            self._snapshots[rec["run_id"]] = snapshot.load(path) if path.is_file() else {}
        return self._snapshots[rec["run_id"]]


def load(out: Path) -> Results:
    """Read a results folder; a clear error if it is not one."""
    out = Path(out)
    if not out.is_dir():
        raise UserError(f"{out}: no such results folder")
    records = record.read_records(out)
    if not records:
        raise UserError(f"{out}: no run records found (expected {out}/runs/*/{record.RECORD}); "
                        f"is this a folder written by `genbench run`?")
    suite = _read(out / "suite.yaml", yaml.safe_load)
    env = _read(out / "env.json", json.loads)
    return Results(out, suite, env, records)


def _read(path: Path, parse) -> dict:
    try:
        return parse(path.read_text(encoding="utf-8")) or {}
    except (OSError, ValueError, yaml.YAMLError):
        return {}  # a partial folder still reports what its records hold


def projection(results: Results, override: str | None = None) -> str:
    return override or (results.suite.get("report") or {}).get("latent_projection", "pca")


TABLES = {"csv": "results.csv", "json": "results.json", "md": "leaderboard.md"}


def write_tables(results: Results) -> None:
    """results.csv, results.json and leaderboard.md (once there is a successful run)."""
    for fmt, name in TABLES.items():
        text = render(results, fmt)
        if text:
            record.write_text(results.out / name, text)


def context(results: Results) -> str:
    """One paragraph on what was run where, for the markdown leaderboard."""
    s, env = results.suite, results.env
    dataset = s.get("dataset") or {}
    budget = ", ".join(f"{v:g} {k}" for k, v in (s.get("budget") or {}).items())
    versions = env.get("versions") or {}
    parts = [f"Data set {dataset.get('name', '?')}, scored on its {dataset.get('eval_split', 'test')} split",
             f"training budget per run: {budget or '?'} (first reached)",
             f"seeds {', '.join(map(str, s.get('seeds', [])))}",
             f"device {env.get('device_name', env.get('device', '?'))}",
             f"genbench {versions.get('genbench', '?')}, torch {versions.get('torch', '?')}"]
    info = leaderboard.metric_info(results.records)
    if any("sample" in meta.get("requires", ()) for meta in info.values()):
        evaluation = s.get("evaluation") or {}
        extractor = evaluation.get("feature_extractor", "domain")
        parts.append(f"sample metrics on {evaluation.get('num_samples', '?')} samples in the feature space of "
                     + ("the data set's shipped classifier (not comparable with Inception FID from papers)"
                        if extractor == "domain" else "Inception-v3"))
    return "; ".join(parts) + "."


def draw_run(results: Results, rec: dict, projection_name: str | None = None) -> list[Path]:
    """The figures of one run, from its record and snapshot."""
    return figures.run_figures(results.run_dir(rec), rec, results.snapshot(rec),
                               projection(results, projection_name))


def draw_suite(results: Results) -> list[Path]:
    """The comparison figures and one figure per sweep."""
    snaps = {r["run_id"]: results.snapshot(r) for r in results.records if r.get("status") == "ok"}
    folder = results.out / FIGURES
    made = [figures.comparison(folder / "reconstructions.png", results.records, snaps, results.order),
            figures.sample_comparison(folder / "samples.png", results.records, snaps, results.order)]
    board = results.board()
    for model, key, lines in figures.sweeps(board):
        made.append(figures.sweep(folder / f"sweep_{model}_{key}.png", board, model, key, lines))
    return [p for p in made if p is not None]


def build(results: Results, projection_name: str | None = None, redraw_runs: bool = True) -> None:
    """Rewrite every table, figure and report.html of a loaded results folder."""
    write_tables(results)
    if redraw_runs:
        for rec in results.records:
            if rec.get("status") == "ok":
                draw_run(results, rec, projection_name)
    draw_suite(results)
    record.write_text(results.out / "report.html", render(results, "html"))


def render(results: Results, fmt: str) -> str:
    """One of the text formats: the markdown leaderboard (empty before any successful
    run), the per-run table as CSV or JSON, or the HTML page."""
    if fmt == "md":
        board = results.board()
        return "" if board.empty else leaderboard.markdown(board) + "\n" + context(results) + "\n"
    if fmt == "csv":
        return record.results_frame(results.records).to_csv(index=False)
    if fmt == "json":
        return record.results_frame(results.records).to_json(orient="records", indent=2) + "\n"
    if fmt == "html":
        from . import html  # html imports this module

        return html.render(results)
    raise ValueError(f"unknown format {fmt!r}")
