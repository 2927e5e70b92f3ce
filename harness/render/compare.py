"""``genbench compare``: two results folders side by side, configuration by configuration."""

from __future__ import annotations

import json
import math

import pandas as pd
from rich.markup import escape
from rich.table import Table
from tabulate import tabulate

from ..results import stats
from ..results.store import Results
from .leaderboard import extractor_sha, header, md_escape
from .report import csv_safe

SETUP_KEYS = ("dataset", "budget", "seeds", "batch_size", "evaluation", "metrics", "training")


def setup_differences(a: Results, b: Results) -> list[str]:
    """What differs in how the two folders were produced (so a reader can weigh the deltas)."""
    out = []
    for key in SETUP_KEYS:
        if a.suite.get(key) != b.suite.get(key):
            out.append(f"{key}: {_short(a.suite.get(key))} -> {_short(b.suite.get(key))}")
    for key in ("device_name",):
        if a.env.get(key) != b.env.get(key):
            out.append(f"{key}: {a.env.get(key)} -> {b.env.get(key)}")
    va, vb = a.env.get("versions") or {}, b.env.get("versions") or {}
    for dist in sorted(set(va) | set(vb)):
        if va.get(dist) != vb.get(dist):
            out.append(f"{dist}: {va.get(dist)} -> {vb.get(dist)}")
    return out


def machine_differences(a: Results, b: Results) -> list[str]:
    """What differs in the machines the two folders ran on (CPU, instruction sets, BLAS, GPU):
    steps never depend on it, the last digits of scores may (see README, "Same numbers")."""
    ma, mb = a.env.get("machine"), b.env.get("machine")
    if not isinstance(ma, dict) or not isinstance(mb, dict):
        return [] if ma is None and mb is None else ["machine: recorded in only one of the folders"]
    return [f"{key}: {_short(ma.get(key))} -> {_short(mb.get(key))}" for key in sorted(set(ma) | set(mb), key=str)
            if ma.get(key) != mb.get(key)]


def _short(value) -> str:
    if isinstance(value, dict):
        return json.dumps({k: v for k, v in value.items() if v is not None}, sort_keys=True)
    return json.dumps(value)


def extractors(results: Results) -> set[str]:
    """The feature extractors (SHA-256) the folder's sample metrics were computed with."""
    return {sha for sha in map(extractor_sha, results.records) if sha}


def extractor_refusal(a: Results, b: Results) -> tuple[list[str], str]:
    """The sample metrics left out because the folders used different feature extractors,
    and why (nothing when they agree): such scores live in different spaces."""
    ea, eb = extractors(a), extractors(b)
    if not ea or not eb or ea == eb:
        return [], ""
    info = {**b.board().info, **a.board().info}
    left_out = [m for m in a.board().metrics if m in b.board().metrics
                and "sample" in (info.get(m, {}).get("requires") or ())]
    names = {sha: n for r in (*a.records, *b.records)
             if isinstance(r.get("metric_details"), dict)
             and isinstance(n := r["metric_details"].get("feature_extractor"), dict)
             for sha in [str(n.get("sha256"))]}

    def show(shas):
        return ", ".join(f"{(names.get(s) or {}).get('name', '?')} ({s[:12]})" for s in sorted(shas))
    return left_out, (f"Not compared: {', '.join(left_out)}: A's samples were scored with the feature extractor "
                      f"{show(ea)} and B's with {show(eb)}, so those scores are in different spaces; "
                      f"`genbench rescore` both folders with one extractor first.")


def frame(a: Results, b: Results) -> pd.DataFrame:
    """One row per (configuration in both, metric in both): A, B, B - A, Welch p, verdict.

    Sample metrics are left out when the two folders used different feature extractors."""
    board_a, board_b = a.board(), b.board()
    rows_b = {r.label: r for r in board_b.rows}
    info = {**board_b.info, **board_a.info}
    refused = set(extractor_refusal(a, b)[0])
    metrics = [m for m in board_a.metrics if m in board_b.metrics and m not in refused]
    rows = []
    for row_a in board_a.rows:
        row_b = rows_b.get(row_a.label)
        for m in metrics if row_b else ():
            sa, sb = row_a.cells[m].summary, row_b.cells[m].summary
            if sa.n == 0 and sb.n == 0:
                continue  # the metric does not apply to this model
            p = stats.welch_p(sa.values, sb.values)
            delta = sb.mean - sa.mean
            rows.append({"configuration": row_a.label, "metric": m, "a_mean": sa.mean, "a_ci95": sa.half_width,
                         "a_seeds": sa.n, "b_mean": sb.mean, "b_ci95": sb.half_width, "b_seeds": sb.n,
                         "delta": delta, "p_value": p,
                         "verdict": _verdict(delta, p, bool(info.get(m, {}).get("higher_is_better")))})
    return pd.DataFrame(rows)


def _verdict(delta: float, p: float, higher_is_better: bool) -> str:
    if math.isnan(p) or math.isnan(delta):
        return "n/a (needs 2+ seeds each)"
    if p >= stats.ALPHA:
        return "tied"
    return "B better" if (delta > 0) == higher_is_better else "B worse"


def only_in(a: Results, b: Results) -> tuple[list[str], list[str]]:
    la, lb = [r.label for r in a.board().rows], [r.label for r in b.board().rows]
    return [l for l in la if l not in lb], [l for l in lb if l not in la]


def _display(table: pd.DataFrame, info: dict) -> tuple[list[str], list[list[str]]]:
    headers = ["configuration", "metric", "A", "B", "B - A", "p", "verdict"]
    rows = [[r.configuration, header(r.metric, info, unit=False),
             stats.format_value(r.a_mean, r.a_ci95), stats.format_value(r.b_mean, r.b_ci95),
             f"{r.delta:+.4g}" if not math.isnan(r.delta) else "-",
             f"{r.p_value:.3f}" if not math.isnan(r.p_value) else "-", r.verdict]
            for r in table.itertuples()]
    return headers, rows


def render(a: Results, b: Results, fmt: str):
    """The comparison as a rich Table (fmt 'rich') or text in md, csv or json."""
    table = frame(a, b)
    if fmt == "csv":
        return csv_safe(table).to_csv(index=False)
    if fmt == "json":
        return table.to_json(orient="records", indent=2) + "\n"
    info = {**b.board().info, **a.board().info}
    headers, rows = _display(table, info) if not table.empty else (["configuration"], [])
    notes = [f"A = {a.out}, B = {b.out}; values are mean ± 95% CI over seeds; p from Welch's t-test; "
             f"tied means p ≥ {stats.ALPHA}."]
    diffs = setup_differences(a, b)
    notes.append("Setup differs: " + "; ".join(diffs) if diffs else "Same setup (data, budget, seeds, "
                 "evaluation, device, versions).")
    machines = machine_differences(a, b)
    notes.append("Machine differs: " + "; ".join(machines) if machines else "Same machine (CPU, instruction "
                 "sets, BLAS, oneDNN, GPU)." if a.env.get("machine") else "")
    notes = [n for n in notes if n]
    refusal = extractor_refusal(a, b)[1]
    if refusal:
        notes.append(refusal)
    left, right = only_in(a, b)
    if left or right:
        notes.append(f"Only in A: {', '.join(left) or 'none'}. Only in B: {', '.join(right) or 'none'}.")
    if fmt == "md":
        rows = [[md_escape(c) for c in row] for row in rows]  # labels and paths come from the folders
        body = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True) if rows else \
            "No configuration is in both folders."
        return "# genbench compare\n\n" + body + "\n\n" + "\n\n".join(map(md_escape, notes)) + "\n"
    out = Table(title="genbench compare", title_justify="left", caption=escape("\n".join(notes)),
                caption_justify="left")
    for h in headers:
        out.add_column(h, justify="left" if h in ("configuration", "metric", "verdict") else "right")
    for row in rows:
        out.add_row(*map(escape, row))
    return out
