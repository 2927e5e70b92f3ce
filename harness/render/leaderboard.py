"""The leaderboard: one row per configuration, each metric as mean ± 95% CI over seeds.

The best value of each column is marked, and so is every value statistically tied with
it (Welch's t-test), so that a reader does not take noise for a ranking.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re

from rich.markup import escape
from rich.table import Table
from rich.text import Text
from tabulate import tabulate

from ..results import stats

TIE_MARK = "†"
CONTENDED_MARK = "‡"
BOUND_MARKS = {"upper": "≤", "lower": "≥"}  # the true value is at most / at least the one shown
BOUND_TEXT = {"upper": "an upper bound (the model gives a lower bound on its log-likelihood)",
              "lower": "a lower bound on the true value"}
CONTENDED_HINT = ("give side-by-side jobs one thread each (--threads 1), use a flops or steps budget, or run on a "
                  "quiet machine")


def timed_budget(runs: list[dict]) -> bool:
    """Whether the runs trained for a number of seconds: then contention bends their scores."""
    return any("seconds" in (r.get("budget") or {}) for r in runs)


@dataclasses.dataclass(frozen=True)
class Cell:
    summary: stats.Summary
    best: bool = False
    tied: bool = False  # not significantly different from the best
    bound: str | None = None  # "upper" or "lower": the runs gave a bound on the true value

    def text(self) -> str:
        value = stats.format_value(self.summary.mean, self.summary.half_width)
        if self.bound in BOUND_MARKS and not math.isnan(self.summary.mean):
            value = f"{BOUND_MARKS[self.bound]} {value}"
        return f"{value} {TIE_MARK}" if self.tied else value


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    model: str
    seeds: int
    options: dict
    train_seconds: float
    train_steps: float
    cells: dict[str, Cell]
    runs: list[dict] = dataclasses.field(default_factory=list, repr=False)  # by seed
    images_per_second: float = math.nan
    peak_fraction: float = math.nan  # achieved FLOP/s over the device's matmul FLOP/s
    sample_seconds: float = math.nan  # seconds per 1,000 samples
    contended: int = 0               # runs flagged as crowded out under a seconds budget
    search: dict | None = None       # for a searched entry: trials, chosen options, ...


@dataclasses.dataclass(frozen=True)
class Board:
    title: str
    metrics: list[str]
    primary: str | None
    info: dict[str, dict]  # metric -> unit, higher_is_better
    rows: list[Row]
    notes: list[str] = dataclasses.field(default_factory=list)  # runs kept apart or left out, and why

    @property
    def empty(self) -> bool:
        return not self.rows

    @property
    def searched(self) -> bool:
        return any(r.search for r in self.rows)

    @property
    def trained(self) -> bool:
        """False for sample sets scored by ``genbench score``: no training columns then."""
        return any(not math.isnan(r.train_steps) or not math.isnan(r.train_seconds) for r in self.rows)


def metric_info(records: list[dict]) -> dict[str, dict]:
    """Units and directions of the metrics, as recorded with the runs."""
    info: dict[str, dict] = {}
    for r in records:
        for name, meta in (r.get("metric_info") or {}).items():
            info.setdefault(name, meta)
    return info


def build(records: list[dict], metrics: list[str], primary: str | None, title: str) -> Board:
    """Aggregate the successful runs by label; best first by the primary metric.

    A search's trials are not on the board: they were scored on the validation split.
    """
    ok = [r for r in records if r.get("status") == "ok" and not r.get("trial")]
    info = metric_info(ok)
    metrics = [m for m in metrics if any(m in (r.get("metrics") or {}) for r in ok)]
    groups, notes = group_runs(ok)
    summaries = {label: {m: stats.summarize([(r["metrics"] or {}).get(m) for r in runs]) for m in metrics}
                 for label, runs in groups.items()}
    marks = {m: _marks({label: s[m] for label, s in summaries.items()}, info.get(m, {})) for m in metrics}
    rows = []
    for label, runs in groups.items():
        used = [r.get("budget_used") or {} for r in runs]
        speed = [r.get("throughput") or {} for r in runs]
        crowded = [r for r in runs if r.get("contended")]
        if crowded:
            what = ("under a seconds budget its scores reflect the machine's load" if timed_budget(runs) else
                    "its scores stand (its budget is not time), its timing cells marked ‡ do not")
            notes.append(f"{CONTENDED_MARK} {label}: {len(crowded)} of {len(runs)} runs contended "
                         f"({crowded[0]['contended'][0]}); {what}; {CONTENDED_HINT}")
        rows.append(Row(label, runs[0]["model"], len(runs), runs[0].get("options") or {},
                        _mean(u.get("seconds") for u in used), _mean(u.get("steps") for u in used),
                        {m: Cell(summaries[label][m], *marks[m].get(label, (False, False)), bound_of(runs, m))
                         for m in metrics},
                        runs, _mean(s.get("images_per_second") for s in speed),
                        _mean(s.get("peak_fraction") for s in speed), _mean(sampling_cost(r) for r in runs),
                        len(crowded), runs[0].get("search")))
    if primary in metrics:
        sign = -1 if info.get(primary, {}).get("higher_is_better") else 1
        rows.sort(key=lambda r: (math.isnan(r.cells[primary].summary.mean),
                                 sign * _nan_to(r.cells[primary].summary.mean, 0.0)))
    return Board(title, metrics, primary, info, rows, notes)


# Record fields that change a run's numbers, besides its seed: runs that differ in any
# are never pooled into one mean, whatever their labels say.
SETTINGS = ("model", "options", "dataset", "eval_split", "budget", "batch_size", "evaluation", "metric_options",
            "training")
TRAINING_DEFAULT = {"precision": "fp32", "compile": False}  # what a record written before training: meant
VERSIONS = ("genbench", "torch", "torchvision", "torch-fidelity", "numpy")


def settings_key(rec: dict) -> str:
    versions = rec.get("versions") or {}
    key = {k: rec.get(k) for k in SETTINGS}
    key["training"] = key["training"] or TRAINING_DEFAULT
    key["versions"] = {v: versions.get(v) for v in VERSIONS}
    key["device"] = str(rec.get("device") or "").split(":")[0]
    key["extractor"] = extractor_sha(rec)
    return json.dumps(key, sort_keys=True, default=str)


def extractor_sha(rec: dict) -> str | None:
    """The SHA-256 of the feature extractor a run's sample metrics used, if any."""
    details = rec.get("metric_details")
    extractor = details.get("feature_extractor") if isinstance(details, dict) else None
    return str(extractor.get("sha256")) if isinstance(extractor, dict) and extractor.get("sha256") else None


def group_runs(records: list[dict]) -> tuple[dict[str, list[dict]], list[str]]:
    """Runs by configuration: one group per label and settings, one run per seed.

    A label whose runs were made with different settings (a crafted or hand-merged
    folder) gets one row per setting; a seed seen twice in one group counts once
    (the newest record).
    """
    by_label: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        by_label.setdefault(r["label"], {}).setdefault(settings_key(r), []).append(r)
    groups, notes = {}, []
    for label, settings in by_label.items():
        if len(settings) > 1:
            notes.append(f"configuration '{label}' has runs of {len(settings)} different settings (budget, "
                         f"data, options, evaluation or versions); they are shown as separate rows, never pooled")
        for n, runs in enumerate(settings.values(), 1):
            newest: dict[int, dict] = {}
            for r in sorted(runs, key=lambda r: str(r.get("finished") or "")):
                newest[r["seed"]] = r
            if len(newest) < len(runs):
                notes.append(f"configuration '{label}': {len(runs) - len(newest)} repeated seed(s); "
                             f"each seed counts once (its newest run)")
            name = label if n == 1 else f"{label} (settings {n})"
            groups[name] = sorted(newest.values(), key=lambda r: r["seed"])
    return groups, notes


def bound_of(runs: list[dict], metric: str) -> str | None:
    """"upper" or "lower" when a run's value of ``metric`` is a bound (its details say so)."""
    for r in runs:
        details = r.get("metric_details")
        entry = details.get(metric) if isinstance(details, dict) else None
        if isinstance(entry, dict) and entry.get("bound") in BOUND_MARKS:
            return entry["bound"]
    return None


def sampling_cost(rec: dict) -> float | None:
    """A run's recorded seconds per 1,000 samples, if any."""
    sampling = rec.get("sampling")
    value = sampling.get("seconds_per_1000") if isinstance(sampling, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _marks(column: dict[str, stats.Summary], meta: dict) -> dict[str, tuple[bool, bool]]:
    """label -> (best, tied with the best)."""
    finite = {k: s for k, s in column.items() if not math.isnan(s.mean)}
    if not finite:
        return {}
    pick = max if meta.get("higher_is_better") else min
    best_value = pick(s.mean for s in finite.values())
    best_label = next(k for k, s in finite.items() if s.mean == best_value)
    out = {}
    for label, s in finite.items():
        is_best = s.mean == best_value
        out[label] = (is_best, not is_best and stats.tied(finite[best_label], s))
    return out


def _mean(values) -> float:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else math.nan


def _nan_to(x: float, fill: float) -> float:
    return fill if math.isnan(x) else x


def header(metric: str, info: dict, unit: bool = True) -> str:
    meta = info.get(metric, {})
    arrow = "↑" if meta.get("higher_is_better") else "↓"
    shown = f" ({meta['unit']})" if unit and meta.get("unit") else ""
    return f"{metric} {arrow}{shown}"


def legend(board: Board, markup: str = "md") -> str:
    seeds = sorted({r.seeds for r in board.rows})
    n = "/".join(map(str, seeds)) if seeds else "0"
    best = {"md": "**bold**", "html": "<strong>bold</strong>", "plain": "bold"}[markup]
    return (f"Mean ± 95% confidence half-width over {n} seeds (t-distribution); ↓ lower is better, "
            f"↑ higher is better; {best}: best in its column; {TIE_MARK} statistically tied with the best "
            f"(Welch's t-test, p ≥ {stats.ALPHA}); - not applicable"
            + ("; img/s: training images per second; % peak: achieved FLOP/s as a share of the device's "
               "matrix-product FLOP/s; sample s/1k: seconds to generate 1,000 samples on the run's device (the "
               "median of repeated draws of 100, in one batch)" if board.trained else "")
            + "".join(f"; {BOUND_MARKS[kind]}: {text}, ranked as if exact" for kind, text in BOUND_TEXT.items()
                      if any(c.bound == kind for r in board.rows for c in r.cells.values()))
            + ("; trials: the search's trials of that configuration, each trained on the same budget and "
               "scored on the validation split (ok/all when some failed); chosen options: the best trial's, "
               "which the seeds above trained and scored on the test split" if board.searched else "")
            + (f"; {CONTENDED_MARK} contended (see the notes)." if any(r.contended for r in board.rows) else "."))


def md_escape(text) -> str:
    """Text that stays literal inside a GitHub markdown table cell or paragraph."""
    text = " ".join(str(text).split())  # a newline would end the table row
    # the characters that can start markup anywhere in a line (links, emphasis, code, HTML,
    # strikethrough, entities, cell borders)
    return re.sub(r"([\\`*_\[\]|~<>&])", r"\\\1", text)


def table_rows(board: Board, metrics: list[str] | None = None, bold=("**", "**"),
               text=str) -> list[list[str]]:
    """Cells as text (labels through ``text``), the best values wrapped in ``bold``."""
    metrics = board.metrics if metrics is None else metrics
    out = []
    for i, row in enumerate(board.rows):
        cells = []
        for m in metrics:
            cell = row.cells[m]
            cells.append(f"{bold[0]}{cell.text()}{bold[1]}" if cell.best else cell.text())
        scores_bent = row.contended and timed_budget(row.runs)
        label = text(row.label) + (f" {CONTENDED_MARK}" if scores_bent else "")
        mark = f" {CONTENDED_MARK}" if row.contended and not scores_bent else ""  # only the timings are off
        timing = [f"{row.train_seconds:.1f}{mark}", f"{row.train_steps:.0f}",
                  _number(row.images_per_second, "{:,.0f}") + mark, _number(row.peak_fraction, "{:.1%}") + mark,
                  _number(row.sample_seconds, "{:.3g}")] if board.trained else []
        out.append([str(i + 1), label, text(row.model), str(row.seeds), *cells, *timing]
                   + ([trials_text(row.search), text(chosen_text(row.search))] if board.searched else []))
    return out


def trials_text(search: dict | None) -> str:
    """A searched row's trials, e.g. ``8`` or ``7/8`` when some failed; ``-`` when not searched."""
    if not search:
        return "-"
    total, ok = search.get("trials"), search.get("trials_ok")
    return f"{ok}/{total}" if isinstance(ok, int) and ok != total else str(total)


def chosen_text(search: dict | None) -> str:
    """The options a search chose, as ``lr=0.0012, latent_dim=16``."""
    if not search:
        return "-"
    chosen = search.get("chosen") if isinstance(search.get("chosen"), dict) else {}
    return ", ".join(f"{k}={_compact(v)}" for k, v in chosen.items()) or "-"


def _compact(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return "-".join(map(str, value))
    return str(value)


def _number(value: float, fmt: str) -> str:
    return "-" if math.isnan(value) else fmt.format(value)


def table_headers(board: Board, metrics: list[str] | None = None, unit: bool = True) -> list[str]:
    metrics = board.metrics if metrics is None else metrics
    return (["#", "configuration", "model", "seeds", *[header(m, board.info, unit) for m in metrics]]
            + (["train s", "steps", "img/s", "% peak", "sample s/1k"] if board.trained else [])
            + (["trials", "chosen options"] if board.searched else []))


def markdown(board: Board) -> str:
    """GitHub-flavoured markdown: a title, the table and its legend."""
    table = tabulate(table_rows(board, text=md_escape), headers=[md_escape(h) for h in table_headers(board)],
                     tablefmt="github", disable_numparse=True)
    terms = "\n".join(f"- **{md_escape(name)}**: {md_escape(text)}" for name, text in glossary(board) if text)
    notes = "\n".join(f"- Note: {md_escape(n)}" for n in board.notes)
    return (f"# {md_escape(board.title)}\n\n{table}\n\n{legend(board)}\n" + (f"\n{terms}\n" if terms else "")
            + (f"\n{notes}\n" if notes else ""))


def glossary(board: Board) -> list[tuple[str, str]]:
    """(metric header, what it measures) for every metric on the board."""
    return [(header(m, board.info), board.info.get(m, {}).get("description", "")) for m in board.metrics]


def units_caption(metrics: list[str], info: dict) -> str:
    return ", ".join(f"{m} in {info[m]['unit']}" for m in metrics if info.get(m, {}).get("unit"))


def rich_table(board: Board, width: int = 100) -> Table:
    """The leaderboard for a terminal: as many metrics as fit ``width``, in suite order."""
    # configuration, seeds, train s, steps, img/s, % peak, s/1k, trials
    shown, used = [], (68 if board.trained else 28) + 9 * board.searched
    for m in board.metrics:
        cell = max(len(header(m, board.info, unit=False)), *(len(r.cells[m].text()) for r in board.rows)) + 3
        if shown and used + cell > width:
            break
        shown.append(m)
        used += cell
    chosen = [(row.label, chosen_text(row.search)) for row in board.rows if row.search]
    cut = -1 if board.searched else None  # the chosen options go under the table
    rows = [r[1:2] + r[3:cut] for r in table_rows(board, shown, bold=("\0", "\1"))]
    headers = [h for i, h in enumerate(table_headers(board, shown, unit=False)[:cut]) if i not in (0, 2)]
    caption = legend(board, "plain")
    units = units_caption(shown, board.info)
    caption += f" Units: {units}." if units else ""
    if len(shown) < len(board.metrics):
        caption += f" {len(board.metrics) - len(shown)} more metrics in leaderboard.md."
    if chosen:
        caption += " Chosen by the search: " + "; ".join(f"{label}: {c}" for label, c in chosen) + "."
    # Text, never markup: units and chosen options come from the records
    table = Table(title=Text(board.title), title_justify="left", caption=Text(caption), caption_justify="left")
    # the labels fold, never vanish, when the terminal is narrower than the table
    label_width = min(20, max((len(r.label) for r in board.rows), default=13))
    for h in headers:
        table.add_column(Text(h), justify="left" if h == "configuration" else "right",
                         no_wrap=h != "configuration", overflow="fold",
                         min_width=label_width if h == "configuration" else None)
    for row in rows:  # escape user text, then turn the bold placeholders into markup
        table.add_row(*(escape(c).replace("\0", "[bold green]").replace("\1", "[/]") for c in row))
    return table
