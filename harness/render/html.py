"""report.html: one self-contained page (figures embedded as data URIs, no scripts).

It opens offline, can be mailed or attached to a pull request as one file.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

import yaml

from ..results import files, stats
from ..results.store import Results
from ..results.tuning import best_trial, trial_value
from . import compute, leaderboard, tuning
from .context import FIGURES, context

RUN_FIGURES = [("reconstructions.png", "Reconstructions"), ("samples.png", "Samples"),
               ("interpolation.png", "Interpolation"), ("traversal.png", "Latent traversals"),
               ("manifold.png", "Latent plane"),
               ("latent.png", "Latent space"), ("losses.png", "Training curves")]

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1380px; padding: 0 .75rem; color: #1f2328; }
h1, h2, h3 { line-height: 1.2; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
table { border-collapse: collapse; margin: .5rem 0; font-variant-numeric: tabular-nums; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: .25rem .3rem; text-align: right; }
th { background: #f6f8fa; } td.text, th.text { text-align: left; } td.num { white-space: nowrap; }
.scroll { overflow-x: auto; }
td strong { color: #116329; } .legend, .note { color: #59636e; font-size: 13px; }
figure { display: inline-block; margin: .5rem 1rem .5rem 0; vertical-align: top; }
figure img { max-width: 100%; } figcaption { color: #59636e; font-size: 13px; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: 12px; }
code { background: #f6f8fa; padding: 0 .2rem; } .failed { color: #cf222e; }
dl.legend dt { font-weight: 600; float: left; clear: left; margin-right: .5rem; } dl.legend dd { margin: 0; }
nav.toc { background: #f6f8fa; padding: .5rem 1rem; font-size: 14px; } nav.toc ul { margin: .2rem 0; }
#leaderboard-table td.text:nth-child(2) { max-width: 16rem; overflow-wrap: anywhere; }
details summary { cursor: pointer; color: #59636e; margin: .4rem 0; }
"""


COMMAND: str | None = None  # the command line that is writing the page (set by the CLI)


def render(results: Results) -> str:
    board = results.board()
    suite = results.suite
    name = suite.get("name", results.out.name)
    parts = [f"<h1>genbench: {_e(name)}</h1>"]
    if suite.get("description"):
        parts.append(f"<p>{_e(suite['description'])}</p>")
    parts.append(f"<p class='note'>{_e(context(results))}</p>")
    parts.append("\0toc")  # filled in below, once the sections are known
    parts.append("<h2 id='leaderboard'>Leaderboard</h2>")
    parts.append(_table(board) if not board.empty else "<p>No successful runs yet.</p>")
    parts.append(_figures(_suite_figures(results), "Comparisons"))
    parts.append(_compute(results))
    parts.append(_search(results))
    parts.append("<h2 id='configurations'>Configurations</h2>")
    for row in board.rows:
        parts.append(_configuration(results, row))
    parts.append(_failed(results))
    plugin_warnings = results.env.get("plugin_warnings")
    shown = list(results.warnings) + [f"when the suite ran: {w}" for w in
                                      (plugin_warnings if isinstance(plugin_warnings, list) else [])]
    if shown:
        items = "".join(f"<li>{_e(w)}</li>" for w in shown)
        parts.append(f"<h2 id='warnings'>Warnings</h2><ul class='note'>{items}</ul>")
    parts.append("<h2 id='setup'>Setup</h2>")
    parts.append(f"<pre>{_e(yaml.safe_dump(suite, sort_keys=False))}</pre>" if suite else "")
    versions = ", ".join(f"{k} {v}" for k, v in (results.env.get("versions") or {}).items() if v)
    parts.append(f"<p class='note'>{_e(versions)}</p>")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p class='note'>Written by <code>{_e(COMMAND or 'genbench report')}</code> on {stamp}; "
                 f"rebuild with <code>genbench report {_e(str(results.out))}</code>.</p>")
    body = "\n".join(p for p in parts if p)
    body = body.replace("\0toc", _toc(body, board), 1)
    return (f"<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<title>genbench: {_e(name)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


SECTIONS = (("leaderboard", "Leaderboard"), ("comparisons", "Comparisons"), ("compute", "Score against compute"),
            ("search", "Search"),
            ("configurations", "Configurations"), ("failed", "Failed runs"), ("metric-errors", "Failed metrics"),
            ("warnings", "Warnings"), ("setup", "Setup"))


def _toc(body: str, board: leaderboard.Board) -> str:
    """Jump links to every section the page has, and to each configuration."""
    links = []
    for anchor, title in SECTIONS:
        if f"id='{anchor}'" not in body:
            continue
        links.append(f"<li><a href='#{anchor}'>{title}</a>")
        if anchor == "configurations" and board.rows:
            links[-1] += "<ul>" + "".join(f"<li><a href='#{_e(_anchor(row))}'>{_e(row.label)}</a></li>"
                                          for row in board.rows) + "</ul>"
        links[-1] += "</li>"
    return f"<nav class='toc'><strong>Contents</strong><ul>{''.join(links)}</ul></nav>"


def _anchor(row: leaderboard.Row) -> str:
    return f"config-{row.runs[0]['run_id']}"


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _table(board: leaderboard.Board) -> str:
    headers = leaderboard.table_headers(board)
    rows = leaderboard.table_rows(board, bold=("\0", "\1"))
    if all(r.label.split("[")[0] == r.model for r in board.rows):  # the labels name the models already
        headers, rows = headers[:2] + headers[3:], [r[:2] + r[3:] for r in rows]
    text_cols = {1} | ({2} if headers[2] == "model" else set()) | ({len(headers) - 1} if board.searched else set())
    head = "".join(f"<th class='{'text' if i in text_cols else 'num'}'>{_e(h)}</th>" for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, c in enumerate(row):
            c = _e(c).replace("\0", "<strong>").replace("\1", "</strong>")
            cells.append(f"<td class='{'text' if i in text_cols else 'num'}'>{c}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    legend = leaderboard.legend(board, "html").replace("<strong>bold</strong>", "\0")
    legend = _e(legend).replace("\0", "<strong>bold</strong>")
    terms = "".join(f"<dt>{_e(name)}</dt><dd>{_e(text)}</dd>" for name, text in leaderboard.glossary(board) if text)
    return (f"<div class='scroll'><table id='leaderboard-table'>\n<thead><tr>{head}</tr></thead>\n<tbody>\n" + "\n".join(body)
            + f"\n</tbody>\n</table></div>\n<p class='legend'>{legend}</p>\n<dl class='legend'>{terms}</dl>")


def _suite_figures(results: Results) -> list[tuple[Path, str]]:
    folder = results.out / FIGURES
    fixed = [(folder / "reconstructions.png", "The same test images reconstructed by each configuration "
              "(figures/reconstructions.png)"),
             (folder / "samples.png", "Ten samples of each configuration (figures/samples.png)")]
    sweeps = [(p, f"Every metric against the swept option (figures/{p.name})")
              for p in sorted(folder.glob("sweep_*.png"))]
    return fixed + sweeps


def _img(path: Path, caption: str) -> str:
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img src='data:image/png;base64,{data}' alt='{_e(caption)}'>"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _figures(items: list[tuple[Path, str]], heading: str) -> str:
    imgs = [_img(p, c) for p, c in items]
    imgs = [i for i in imgs if i]
    return f"<h2 id='comparisons'>{_e(heading)}</h2>\n" + "\n".join(imgs) if imgs else ""


def _configuration(results: Results, row: leaderboard.Row) -> str:
    runs = row.runs
    options = ", ".join(f"{k}={v}" for k, v in row.options.items()) or "defaults"
    found = row.search if isinstance(row.search, dict) else None
    chosen = (f" Chosen by a search of {_e(leaderboard.trials_text(found))} trials: trial "
              f"{_e(found.get('best_trial'))}, validation {_e(found.get('metric'))} "
              f"{_e(_fmt(found.get('best_value')))}.") if found else ""
    out = [f"<h3 id='{_e(_anchor(row))}'>{_e(row.label)}</h3>",
           f"<p>model <code>{_e(row.model)}</code>; options <code>{_e(options)}</code>; "
           f"{len(runs)} seed(s).{chosen}</p>"]
    metrics = [m for m in results.metrics if any((r.get("metrics") or {}).get(m) is not None for r in runs)]
    if metrics:
        info = results.board().info
        head = "".join(f"<th>{_e(leaderboard.header(m, info))}</th>" for m in metrics)
        shown_values = {m: distinct([(r.get("metrics") or {}).get(m) for r in runs]) for m in metrics}
        body = "".join("<tr><td>" + _e(r["seed"]) + "</td>" + "".join(
            f"<td>{_e(shown_values[m][i])}</td>" for m in metrics) + "</tr>" for i, r in enumerate(runs))
        out.append(f"<table class='per-seed'><thead><tr><th>seed</th>{head}</tr></thead><tbody>{body}</tbody></table>")
    for i, rec in enumerate(runs):  # every seed's figures; the first seed's open
        run_dir = results.run_dir(rec)
        imgs = "\n".join(i for i in (_img(run_dir / f, c) for f, c in RUN_FIGURES) if i)
        if imgs:
            out.append(f"<details{' open' if i == 0 else ''}><summary>Figures of seed {_e(rec['seed'])} "
                       f"(<code>runs/{_e(rec['run_id'])}/</code>)</summary>\n{imgs}\n</details>")
    return "\n".join(o for o in out if o)


def distinct(values: list) -> list[str]:
    """The values as text with enough significant digits (4 to 10) to tell different ones apart."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    digits = 4
    while digits < 10 and len({f"{v:.{digits}g}" for v in numbers}) < len(set(numbers)):
        digits += 1
    return [f"{v:.{digits}g}" if v in numbers else _fmt(v) for v in values]


def _compute(results: Results) -> str:
    """Each curve metric against training FLOPs, and where one configuration overtakes another."""
    found = compute.curves(results.board())
    if not found:
        return ""
    out = ["<h2 id='compute'>Score against compute</h2>",
           "<p class='note'>Each configuration's curve metrics (scored during training on "
           "<code>evaluation.curve_images</code> images) against the training FLOPs spent so far: mean and 95% CI "
           "over seeds. The table lists where one configuration's mean overtakes another's "
           "(<code>crossovers.csv</code>); a crossover inside both confidence bands is not yet a ranking.</p>"]
    for metric in sorted({c.metric for c in found}):
        name = f"compute_{files.slug(metric)}.png"
        out.append(_img(results.out / FIGURES / name, f"{metric} against training FLOPs (figures/{name})"))
    table = compute.crossovers(found, results.board().info)
    if table.empty:
        out.append("<p>No configuration overtakes another over the FLOPs they share.</p>")
    else:
        rows = "".join(f"<tr><td class='text'>{_e(r.metric)}</td><td>{r.flops:.3g}</td>"
                       f"<td class='text'>{_e(r.summary)}</td></tr>" for r in table.itertuples())
        out.append("<div class='scroll'><table class='crossovers'><thead><tr><th class='text'>metric</th>"
                   f"<th>FLOPs</th><th class='text'>crossover</th></tr></thead><tbody>{rows}</tbody></table></div>")
    return "\n".join(o for o in out if o)


def _search(results: Results) -> str:
    """Every trial of every search, and the expected-best figure."""
    found = tuning.searches(results.records, results.order)
    if not found:
        return ""
    out = ["<h2 id='search'>Search</h2>",
           "<p class='note'>Each trial trained on the suite's budget and was scored on the validation split "
           "(held out of the training images); the test split scored only the final runs above. The expected "
           "best of k trials is the mean best score over every k-subset of the trials (Dodge et al. 2019, "
           "unbiased form), with a bootstrap 95% band; the same numbers are in tuning.csv.</p>",
           _img(results.out / FIGURES / "tuning.png", "Expected best validation score against the number of "
                "trials (figures/tuning.png)")]
    for s in found:
        best = best_trial(s.records, s.metric, s.higher_is_better)
        rows = []
        for t in s.records:
            params = t["trial"].get("params") if isinstance(t["trial"].get("params"), dict) else {}
            shown = ", ".join(f"{k}={v}" for k, v in params.items())
            v = trial_value(t, s.metric)
            cell = _e(_fmt(v)) if t["status"] == "ok" else f"<span class='failed'>{_e(t['status'])}</span>"
            cell = f"<strong>{cell}</strong>" if t is best else cell
            rows.append(f"<tr><td>{_e(t['trial']['number'])}</td><td>{_e(t['seed'])}</td>"
                        f"<td class='text'><code>{_e(shown)}</code></td><td>{cell}</td>"
                        f"<td class='text'><code>runs/{_e(t['run_id'])}/</code></td></tr>")
        arrow = "↑" if s.higher_is_better else "↓"
        out.append(f"<h3>{_e(s.label)}: {len(s.records)} trials, {len(s.values())} scored</h3>"
                   f"<div class='scroll'><table class='trials'><thead><tr><th>trial</th><th>seed</th>"
                   f"<th class='text'>options</th><th>validation {_e(s.metric)} {arrow}</th>"
                   f"<th class='text'>run</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>")
    return "\n".join(o for o in out if o)


def _fmt(value) -> str:
    return stats.format_value(float("nan") if value is None else value)


def _failed(results: Results) -> str:
    failed = [r for r in results.records if r.get("status") != "ok"]
    items = "".join(f"<li><strong>{_e(r['label'])}</strong> seed {_e(r['seed'])}: {_e(r.get('error', r.get('status')))} "
                    f"(<code>runs/{_e(r['run_id'])}/error.log</code>)</li>" for r in failed)
    out = f"<h2 id='failed' class='failed'>Failed runs</h2><ul>{items}</ul>" if failed else ""
    metric_errors = [(r, name, e) for r in results.records if isinstance(r.get("metric_errors"), dict)
                     for name, e in r["metric_errors"].items() if isinstance(e, dict)]
    if metric_errors:
        items = "".join(f"<li><strong>{_e(r['label'])}</strong> seed {_e(r['seed'])}, metric <code>{_e(name)}</code>: "
                        f"{_e(e.get('error'))} (traceback in <code>runs/{_e(r['run_id'])}/record.json</code>)</li>"
                        for r, name, e in metric_errors)
        out += f"<h2 id='metric-errors' class='failed'>Failed metrics</h2><ul>{items}</ul>"
    return out
