"""Everything a results folder shows, rebuilt from its saved records and snapshots.

``genbench run`` calls these after each run and at the end; ``genbench report`` calls
them on any results folder, without a model, the data or training.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..results import files, record
from ..results.store import Results
from . import compute, figures, html, leaderboard, tuning
from .context import FIGURES, context, projection

TABLES = {"csv": "results.csv", "json": "results.json", "md": "leaderboard.md"}


def write_tables(results: Results) -> None:
    """results.csv, results.json and leaderboard.md (once there is a successful run), and
    tuning.csv when the folder holds a search."""
    for fmt, name in TABLES.items():
        text = render(results, fmt)
        if text:
            record.write_text(results.out / name, text)
    table = results.tuning()
    if not table.empty:
        record.write_text(results.out / TUNING, csv_safe(table).to_csv(index=False))
    found = compute.curves(results.board())
    if found:
        table = compute.crossovers(found, results.board().info)
        record.write_text(results.out / CROSSOVERS, csv_safe(table).to_csv(index=False))


TUNING = "tuning.csv"
CROSSOVERS = "crossovers.csv"  # where one configuration overtakes another, against training FLOPs


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
    table = results.tuning()
    if not table.empty:
        made.append(tuning.figure(files.inside(folder, "tuning.png"), table))
    board = results.board()
    found = compute.curves(board)
    for metric in sorted({c.metric for c in found}):
        made.append(compute.figure(files.inside(folder, f"compute_{files.slug(metric)}.png"), found, metric, board.info))
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
        return html.render(results)
    raise ValueError(f"unknown format {fmt!r}")
