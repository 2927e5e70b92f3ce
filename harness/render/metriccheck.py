"""What ``genbench check-metrics`` writes: a table of every metric's response to every
degradation, the claims that hold or fail, and one figure."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from matplotlib.figure import Figure
from tabulate import tabulate

from ..engine.metriccheck import LEVELS, series
from ..results import files
from . import figures


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def response_table(result: dict, fmt: str = "github") -> str:
    """Rows: degradation and strength; columns: metrics."""
    names = list(result["metrics"])
    by_key = {(r["degradation"], r["level"], r["metric"]): r["value"] for r in result["rows"]}
    keys = dict.fromkeys((r["degradation"], r["level"]) for r in result["rows"])
    body = [[d, f"{level:g}", *(_fmt(by_key[(d, level, m)]) for m in names)] for d, level in keys]
    arrows = ["↑" if result["metrics"][m]["higher_is_better"] else "↓" for m in names]
    return tabulate(body, ["degradation", "strength", *(f"{m} {a}" for m, a in zip(names, arrows))], tablefmt=fmt,
                    disable_numparse=True)


def claims_table(result: dict, fmt: str = "github") -> str:
    body = [[c["metric"], c["claim"], "holds" if c["holds"] else "FAILS", c["why"]] for c in result["claims"]]
    return tabulate(body, ["metric", "claim", "verdict", "why"], tablefmt=fmt, disable_numparse=True)


def failures(result: dict) -> list[dict]:
    return [c for c in result["claims"] if not c["holds"]]


def markdown(result: dict) -> str:
    ext = result["feature_extractor"] or {}
    head = (f"# check-metrics: {result['dataset']}\n\n{result['samples']} held-out real images per set, "
            f"degraded and scored against {result['test_images']} test images in the feature space of "
            f"`{ext.get('name')}` (sha256 {ext.get('sha256')}); seed {result['seed']}. Strength 0 is the "
            f"clean images.\n\n")
    return (head + response_table(result) + "\n\n## Claims\n\n" + claims_table(result) + "\n\n"
            + f"{len(result['claims']) - len(failures(result))} of {len(result['claims'])} claims hold.\n")


def rows_csv(result: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["degradation", "strength", "metric", "value"])
    for r in result["rows"]:
        writer.writerow([r["degradation"], r["level"], r["metric"], "" if r["value"] is None else repr(r["value"])])
    return out.getvalue()


def figure(result: dict, path: Path) -> Path:
    """One panel per metric; one line per degradation over strengths 0 (clean) to 4."""
    names = list(result["metrics"])
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig = Figure(figsize=(3.6 * cols, 2.9 * rows + 0.6))
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        for degradation in LEVELS:
            values = series(result["rows"], name, degradation)
            ax.plot(range(len(values)), [float("nan") if v is None else v for v in values], marker="o", ms=3,
                    label=degradation)
        ax.set_title(f"{name} {'↑' if result['metrics'][name]['higher_is_better'] else '↓'}", fontsize=10)
        ax.set_xticks(range(5))
        ax.set_xlabel("strength (0: clean)", fontsize=8)
        if name in ("fid", "kid"):  # they span orders of magnitude, and KID can dip below 0
            ax.set_yscale("symlog", linthresh=1.0)
            low = min((v for v in series(result["rows"], name, "clean") if v is not None), default=0.0)
            ax.set_ylim(bottom=min(0.0, low * 1.5))
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(LEVELS), fontsize=8, frameon=False)
    fig.suptitle(f"{figures.plain(result['dataset'])}: metric responses to known defects", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return figures.save(fig, path)


def write(result: dict, out: Path) -> list[Path]:
    """check.json, check.csv, check.md and check.png in ``out``, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    files.write_json(out / "check.json", result)
    files.write_text(out / "check.csv", rows_csv(result))
    files.write_text(out / "check.md", markdown(result))
    return [out / "check.json", out / "check.csv", out / "check.md", figure(result, out / "check.png")]
