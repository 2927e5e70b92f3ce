"""Everything a results folder shows, rebuilt from its saved records and snapshots.

``genbench run`` calls these after each run and at the end; ``genbench report`` calls
them on any results folder, without a model, the data or training.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import yaml

from . import figures, files, leaderboard, record, snapshot
from .errors import UserError

FIGURES = "figures"  # the suite-level figures' folder


@dataclasses.dataclass
class Results:
    """A results folder as saved: the resolved suite, the environment, the run records."""

    out: Path
    suite: dict
    env: dict
    records: list[dict]
    warnings: list[str] = dataclasses.field(default_factory=list)  # one line per skipped file
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
            self.warnings.extend(self._board.notes)
        return self._board

    def run_dir(self, rec: dict) -> Path:
        return files.inside(self.out, "runs", rec["run_id"])  # checked: run_id comes from a file

    def snapshot(self, rec: dict) -> dict:
        """A run's snapshot arrays ({} if it has none or a bad one), read once per report."""
        if rec["run_id"] not in self._snapshots:
            path = self.run_dir(rec) / snapshot.SNAPSHOT
            arrays = {}
            if path.is_file():
                try:
                    arrays = snapshot.load(path)
                except snapshot.BadSnapshot as err:
                    self.warnings.append(f"{path}: {err}; its figures are left out")
            self._snapshots[rec["run_id"]] = arrays
        return self._snapshots[rec["run_id"]]


def load(out: Path) -> Results:
    """Read a results folder; a clear error if it is not one."""
    out = Path(out)
    if not out.is_dir():
        raise UserError(f"{out}: no such results folder")
    warnings: list[str] = []
    records = record.read_records(out, warnings)
    if not records:
        raise UserError(*warnings, f"{out}: no run records found (expected {out}/runs/*/{record.RECORD}); "
                        f"is this a folder written by `genbench run`?")
    suite = _read(out / "suite.yaml", yaml.safe_load, warnings)
    env = _read(out / "env.json", json.loads, warnings)
    return Results(out, suite, env, records, warnings)


def _read(path: Path, parse, warnings: list[str]) -> dict:
    """A mapping from a file of the folder; {} (and a warning) if it is missing or broken."""
    if not path.is_file():
        return {}
    try:
        if path.stat().st_size > record.MAX_RECORD_BYTES:
            raise ValueError("too large")
        data = parse(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, yaml.YAMLError) as err:
        warnings.append(f"{path}: cannot be read ({type(err).__name__}); reporting without it")
        return {}
    if not isinstance(data, dict):
        warnings.append(f"{path}: expected a mapping; reporting without it")
        return {}
    return data


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
    folder = files.inside(results.out, FIGURES)  # a link to elsewhere is refused
    folder.mkdir(parents=True, exist_ok=True)
    made = [figures.comparison(folder / "reconstructions.png", results.records, snaps, results.order),
            figures.sample_comparison(folder / "samples.png", results.records, snaps, results.order)]
    board = results.board()
    for model, key, lines in figures.sweeps(board):
        name = f"sweep_{files.slug(model)}_{files.slug(key)}.png"  # names from records: made safe
        made.append(figures.sweep(files.inside(folder, name), board, model, key, lines))
    return [p for p in made if p is not None]


def build(results: Results, projection_name: str | None = None, redraw_runs: bool = True) -> None:
    """Rewrite every table, figure and report.html of a loaded results folder."""
    write_tables(results)
    if redraw_runs:
        for rec in results.records:
            if rec.get("status") == "ok":
                guarded(results, f"figures of {rec['run_id']}", lambda r=rec: draw_run(results, r, projection_name))
    guarded(results, "suite figures", lambda: draw_suite(results))
    record.write_text(results.out / "report.html", render(results, "html"))


def guarded(results: Results, what: str, fn) -> None:
    """Figures are extras: one that cannot be drawn (a bug, odd data) becomes a warning.

    A failed write is not odd data: it stops the report.
    """
    try:
        fn()
    except files.OutputError:
        raise
    except Exception as err:
        results.warnings.append(f"could not draw the {what}: {type(err).__name__}: {err}")


def csv_safe(frame):
    """Text cells that a spreadsheet would run as a formula get a leading apostrophe (OWASP)."""
    frame = frame.copy()
    for col in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[col]):  # object or pandas' string dtype
            frame[col] = frame[col].map(lambda v: "'" + v if isinstance(v, str) and v[:1] in FORMULA else v)
    return frame


FORMULA = ("=", "+", "-", "@", "\t", "\r")


def render(results: Results, fmt: str) -> str:
    """One of the text formats: the markdown leaderboard (empty before any successful
    run), the per-run table as CSV or JSON, or the HTML page."""
    if fmt == "md":
        board = results.board()
        return "" if board.empty else leaderboard.markdown(board) + "\n" + leaderboard.md_escape(context(results)) + "\n"
    if fmt == "csv":
        return csv_safe(record.results_frame(results.records)).to_csv(index=False)
    if fmt == "json":
        return record.results_frame(results.records).to_json(orient="records", indent=2) + "\n"
    if fmt == "html":
        from . import html  # html imports this module

        return html.render(results)
    raise ValueError(f"unknown format {fmt!r}")
