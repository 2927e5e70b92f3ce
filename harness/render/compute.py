"""Score against training compute: each configuration's curve metrics over FLOPs, and where
one configuration overtakes another.

Every run records its curve metrics during training (``eval_history``); under a FLOP
budget the points fall at the same FLOPs for every seed of a configuration. A curve is
the mean over seeds at each point with a 95% t interval; two configurations' mean curves
are compared on a log-FLOPs grid over the range both cover, and each change of leader is
a crossover. ``crossovers.csv`` lists them; report.html shows the figures and the table.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..results import stats
from . import leaderboard
from .figures import plain, save

CLOCK = ("step", "epoch", "seconds", "flops")


@dataclasses.dataclass(frozen=True)
class Curve:
    label: str
    metric: str
    flops: np.ndarray  # (points,)
    mean: np.ndarray
    low: np.ndarray    # the 95% interval over seeds (the mean where there is one seed)
    high: np.ndarray
    seeds: int


def _points(rec: dict, metric: str) -> list[tuple[float, float]]:
    """(training FLOPs, value) of a run's curve; a record without FLOPs per point (written
    before they were kept) takes steps times its FLOPs per step."""
    used = rec.get("budget_used") or {}
    per_step = used.get("flops", 0) / used["steps"] if used.get("steps") else None
    out = []
    for entry in rec.get("eval_history") or []:
        value = entry.get(metric)
        flops = entry.get("flops")
        if flops is None and per_step and entry.get("step") is not None:
            flops = entry["step"] * per_step
        if isinstance(value, (int, float)) and isinstance(flops, (int, float)) and flops > 0 and math.isfinite(value):
            out.append((float(flops), float(value)))
    return out


def curves(board: leaderboard.Board) -> list[Curve]:
    """One curve per configuration and curve metric, over the points every seed has."""
    out = []
    for row in board.rows:
        names = sorted({k for r in row.runs for e in (r.get("eval_history") or []) for k in e if k not in CLOCK})
        for metric in names:
            per_seed = [dict(_points(r, metric)) for r in row.runs]
            per_seed = [p for p in per_seed if p]
            if not per_seed:
                continue
            common = sorted(set.intersection(*(set(p) for p in per_seed)))
            if not common:
                continue
            summaries = [stats.summarize([p[f] for p in per_seed]) for f in common]
            mean = np.array([s.mean for s in summaries])
            half = np.array([0.0 if math.isnan(s.half_width) else s.half_width for s in summaries])
            out.append(Curve(row.label, metric, np.array(common), mean, mean - half, mean + half, len(per_seed)))
    return out


def crossovers(found: list[Curve], info: dict, grid_points: int = 200) -> pd.DataFrame:
    """Each change of leader between two configurations' mean curves of one metric: at what
    FLOPs (interpolated on a log grid), who led before and after, and whether the new
    leader stays ahead to the end of the range both cover."""
    rows = []
    by_metric: dict[str, list[Curve]] = {}
    for c in found:
        by_metric.setdefault(c.metric, []).append(c)
    for metric, group in by_metric.items():
        sign = 1.0 if (info.get(metric) or {}).get("higher_is_better") else -1.0
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                lo, hi = max(a.flops[0], b.flops[0]), min(a.flops[-1], b.flops[-1])
                if len(a.flops) < 2 or len(b.flops) < 2 or not lo < hi:
                    continue
                grid = np.geomspace(lo, hi, grid_points)
                gap = sign * (np.interp(np.log(grid), np.log(a.flops), a.mean)
                              - np.interp(np.log(grid), np.log(b.flops), b.mean))  # > 0: a is better
                ahead = np.sign(gap)
                for k in np.nonzero(ahead[1:] * ahead[:-1] < 0)[0]:
                    t = gap[k] / (gap[k] - gap[k + 1])  # the zero between two grid points, in log FLOPs
                    at = math.exp(math.log(grid[k]) + t * (math.log(grid[k + 1]) - math.log(grid[k])))
                    before, after = (a, b) if gap[k] > 0 else (b, a)
                    holds = bool(np.all(ahead[k + 1:] == ahead[k + 1]))
                    rows.append({"metric": metric, "flops": at, "leader_before": before.label,
                                 "leader_after": after.label, "holds_to_end": holds, "range_end_flops": hi,
                                 "summary": f"{after.label} better than {before.label} from {at:.2g} FLOPs on"
                                            + ("" if holds else " (for a while)")})
    columns = ["metric", "flops", "leader_before", "leader_after", "holds_to_end", "range_end_flops", "summary"]
    return pd.DataFrame(rows, columns=columns).sort_values(["metric", "flops"], ignore_index=True)


def figure(path: Path, found: list[Curve], metric: str, info: dict) -> Path:
    """One metric's curves against training FLOPs (log scale), mean and 95% band over seeds."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.subplots()
    for c in (c for c in found if c.metric == metric):
        line, = ax.plot(c.flops, c.mean, marker="o", markersize=3, label=plain(f"{c.label} ({c.seeds} seeds)"))
        ax.fill_between(c.flops, c.low, c.high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xscale("log")
    ax.set_xlabel("training FLOPs")
    ax.set_ylabel(plain(leaderboard.header(metric, info)))
    ax.set_title(plain(f"{metric} against training compute: mean and 95% CI over seeds"), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)
