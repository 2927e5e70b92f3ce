"""The leaderboard: one row per configuration, mean +- std over seeds."""

from __future__ import annotations

import math

import pandas as pd
from rich.markup import escape
from rich.table import Table
from tabulate import tabulate

from .record import results_frame


def metric_info(records: list[dict]) -> dict[str, dict]:
    """Units and directions of the metrics, as recorded with the runs."""
    info: dict[str, dict] = {}
    for r in records:
        for name, meta in (r.get("metric_info") or {}).items():
            info.setdefault(name, meta)
    return info


def leaderboard(records: list[dict], metrics: list[str], primary: str | None) -> pd.DataFrame:
    """Aggregate successful runs by label; sorted best first by the primary metric."""
    ok = [r for r in records if r.get("status") == "ok"]
    if not ok:
        return pd.DataFrame()
    frame = results_frame(ok)
    info = metric_info(ok)
    metrics = [m for m in metrics if m in frame.columns]
    rows = []
    for label, group in frame.groupby("label", sort=False):
        row = {"label": label, "model": group["model"].iloc[0], "seeds": len(group),
               "train_seconds": group["train_seconds"].mean(), "train_steps": group["train_steps"].mean()}
        for m in metrics:
            values = pd.to_numeric(group[m], errors="coerce").dropna()
            row[m] = values.mean() if len(values) else math.nan
            row[f"{m}_std"] = values.std(ddof=1) if len(values) > 1 else (0.0 if len(values) else math.nan)
        rows.append(row)
    board = pd.DataFrame(rows)
    if primary in board.columns:
        higher = bool(info.get(primary, {}).get("higher_is_better", False))
        board = board.sort_values(primary, ascending=not higher, na_position="last", kind="stable")
    return board.reset_index(drop=True)


def _cell(row, metric: str) -> str:
    mean, std = row[metric], row[f"{metric}_std"]
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    return f"{mean:.2f} ± {std:.2f}" if row["seeds"] > 1 else f"{mean:.2f}"


def _header(metric: str, info: dict, unit: bool = True) -> str:
    meta = info.get(metric, {})
    arrow = "↑" if meta.get("higher_is_better") else "↓"
    shown = f" ({meta['unit']})" if unit and meta.get("unit") else ""
    return f"{metric} {arrow}{shown}"


def units_caption(metrics: list[str], info: dict) -> str:
    units = [f"{m} in {info[m]['unit']}" for m in metrics if info.get(m, {}).get("unit")]
    return "mean ± std over seeds; " + ", ".join(units) if units else "mean ± std over seeds"


def _rows(board: pd.DataFrame, metrics: list[str]) -> list[list[str]]:
    return [[str(i + 1), row["label"], row["model"], str(row["seeds"]),
             *[_cell(row, m) for m in metrics],
             f"{row['train_seconds']:.1f}", f"{row['train_steps']:.0f}"]
            for i, (_, row) in enumerate(board.iterrows())]


def _headers(metrics: list[str], info: dict, unit: bool = True) -> list[str]:
    return ["#", "configuration", "model", "seeds", *[_header(m, info, unit) for m in metrics],
            "train s", "steps"]


def rich_table(board: pd.DataFrame, metrics: list[str], info: dict, title: str,
               width: int = 100) -> Table:
    """The leaderboard for a terminal: as many metrics as fit ``width``, in suite order."""
    metrics = [m for m in metrics if m in board.columns]
    shown, used = [], 40  # configuration, seeds, train s, steps and borders
    for m in metrics:
        cell = max(len(_header(m, info, unit=False)), *(len(_cell(r, m)) for _, r in board.iterrows())) + 3
        if shown and used + cell > width:
            break
        shown.append(m)
        used += cell
    rows = [r[1:2] + r[3:] for r in _rows(board, shown)]
    headers = [h for i, h in enumerate(_headers(shown, info, unit=False)) if i not in (0, 2)]
    caption = units_caption(shown, info)
    if len(shown) < len(metrics):
        caption += f"; {len(metrics) - len(shown)} more metrics in leaderboard.md"
    table = Table(title=escape(title), title_justify="left", caption=caption, caption_justify="left")
    for h in headers:
        table.add_column(h, justify="left" if h == "configuration" else "right",
                         no_wrap=h != "configuration", overflow="fold")
    for row in rows:
        table.add_row(*map(escape, row))
    return table


def markdown(board: pd.DataFrame, metrics: list[str], info: dict, title: str) -> str:
    metrics = [m for m in metrics if m in board.columns]
    table = tabulate(_rows(board, metrics), headers=_headers(metrics, info), tablefmt="github",
                     disable_numparse=True)
    note = "Mean ± standard deviation over seeds; ↓ lower is better, ↑ higher is better; - not applicable."
    return f"# {title}\n\n{table}\n\n{note}\n"
