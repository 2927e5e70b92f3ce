"""The search's tables and figure: every trial, and the expected best score of k trials.

``tuning.csv`` has one row per trial of each searched entry: the trial's options, seed,
status and validation score, and, in the row of trial k - 1, the expected best score of
a search of k trials (k = 1..the trials that gave a score) with its bootstrap 95% band.
The curve can be recomputed from the ``value`` column alone.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..results import tuning
from . import figures

BOOTSTRAP = 1000  # resamples of each band (seeded: the same folder gives the same band)


@dataclasses.dataclass
class SearchTrials:
    """The trials of one searched entry, by number."""

    label: str
    model: str
    metric: str
    higher_is_better: bool
    records: list[dict]

    def values(self) -> list[float]:
        return [v for v in (tuning.trial_value(r, self.metric) for r in self.records) if v is not None]


def searches(records: list[dict], order: list[str] = ()) -> list[SearchTrials]:
    """The trial records grouped by search (a label searched twice, over different
    spaces, in a hand-merged folder gives two groups)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        trial = r.get("trial")
        if isinstance(trial, dict):
            groups.setdefault((str(trial.get("search")), str(trial.get("study")), str(trial.get("metric"))),
                              []).append(r)
    out, seen = [], {}
    rank = {label: i for i, label in enumerate(order)}
    for (label, _, metric), recs in sorted(groups.items(), key=lambda g: (rank.get(g[0][0], len(rank)), g[0])):
        seen[label] = seen.get(label, 0) + 1
        newest: dict[int, dict] = {}
        for r in sorted(recs, key=lambda r: str(r.get("finished") or "")):
            newest[r["trial"]["number"]] = r
        meta = next((((r.get("metric_info") or {}).get(metric) or {}) for r in recs), {})
        name = label if seen[label] == 1 else f"{label} (search {seen[label]})"
        out.append(SearchTrials(name, recs[0]["model"], metric, bool(meta.get("higher_is_better")),
                                [newest[n] for n in sorted(newest)]))
    return out


def frame(records: list[dict], order: list[str] = ()) -> pd.DataFrame:
    """The rows of tuning.csv (empty when the folder has no search), searches in ``order``."""
    rows = []
    for s in searches(records, order):
        scores = s.values()
        curve = low = high = np.array([])
        if scores:
            curve = tuning.expected_best(scores, s.higher_is_better)
            low, high = tuning.bootstrap_band(scores, s.higher_is_better, resamples=BOOTSTRAP, seed=0)
        for i, r in enumerate(s.records):
            k = i + 1
            has = k <= len(scores)
            params = r["trial"].get("params") if isinstance(r["trial"].get("params"), dict) else {}
            rows.append({"search": s.label, "model": s.model, "metric": s.metric,
                         "higher_is_better": s.higher_is_better, "trial": r["trial"]["number"], "seed": r["seed"],
                         "status": r["status"], "value": tuning.trial_value(r, s.metric),
                         "params": json.dumps(params, sort_keys=True), "run_id": r["run_id"], "k": k,
                         "expected_best": float(curve[i]) if has else None,
                         "band_low": float(low[i]) if has else None, "band_high": float(high[i]) if has else None,
                         "trials_ok": len(scores)})
    return pd.DataFrame(rows)


def figure(path: Path, table: pd.DataFrame) -> Path | None:
    """Expected best validation score against the number of trials, a line and band per entry."""
    if table.empty or table["expected_best"].isna().all():
        return None
    metrics = list(dict.fromkeys(table["metric"]))
    fig = Figure(figsize=(6.4 * len(metrics), 4.4))
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        part = table[(table["metric"] == metric) & table["expected_best"].notna()]
        for label, rows in part.groupby("search", sort=False):
            line, = ax.plot(rows["k"], rows["expected_best"], marker="o", ms=3, label=figures.plain(label))
            ax.fill_between(rows["k"], rows["band_low"], rows["band_high"], color=line.get_color(), alpha=0.15)
        better = "higher" if part["higher_is_better"].iloc[0] else "lower"
        ax.set(xlabel="trials (k)", ylabel=figures.plain(f"expected best {metric} ({better} is better)"),
               title=figures.plain(f"Expected best validation {metric} of k trials"))
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return figures.save(fig, path)
