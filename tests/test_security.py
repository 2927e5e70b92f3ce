"""A results folder is data other people send you: crafted ones must not run code,
write outside the folder, exhaust memory, or crash the report (issue 9, items 1-4)."""

from __future__ import annotations

import csv
import html.parser
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genbench.cli import main

SCRIPT = "<script>document.title='X'</script><img src=x onerror=\"document.title='Y'\">"


def _record(out):
    path = next((out / "runs").glob("*/record.json"))
    return path, json.loads(path.read_text())


def _edit(out, **fields):
    path, rec = _record(out)
    rec.update(fields)
    path.write_text(json.dumps(rec))
    return path


class _Tags(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.handlers = set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]


def test_report_html_escapes_every_crafted_value(results_copy, capsys):
    _edit(results_copy, label="vae" + SCRIPT, model="vae" + SCRIPT, options={"x": SCRIPT},
          metric_info={"bce": {"unit": SCRIPT, "higher_is_better": False, "description": SCRIPT}})
    suite = (results_copy / "suite.yaml")
    suite.write_text(suite.read_text().replace("description: ''", f"description: {json.dumps(SCRIPT)}"))
    env = json.loads((results_copy / "env.json").read_text())
    env["device_name"] = SCRIPT
    env["versions"]["torch"] = SCRIPT
    (results_copy / "env.json").write_text(json.dumps(env))
    assert main(["report", str(results_copy)]) == 0
    page = (results_copy / "report.html").read_text()
    parser = _Tags()
    parser.feed(page)
    assert "script" not in parser.tags and parser.handlers == []
    assert parser.tags <= {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "div",
                           "table", "thead", "tbody", "tr", "th", "td", "strong", "dl", "dt", "dd", "figure",
                           "img", "figcaption", "pre", "code", "ul", "li", "nav", "a", "details", "summary"}
    assert all(href.startswith("#") for href in _hrefs(page))  # jump links within the page, nowhere else
    assert "&lt;script&gt;document.title=&#x27;X&#x27;&lt;/script&gt;" in page  # shown, as text
    assert all(src.startswith("data:image/png;base64,") for src in _img_sources(page))


def _hrefs(page):
    return [part.split("'", 1)[0] for part in page.split("href='")[1:]]


def _img_sources(page):
    return [part.split("'", 1)[0] for part in page.split("<img src='")[1:]]


def test_a_string_seed_is_not_a_record(results_copy, capsys):
    path = _edit(results_copy, seed="0" + SCRIPT)
    assert main(["report", str(results_copy)]) == 2  # the only record is refused
    err = capsys.readouterr().err
    assert f"{path}: not a run record: field 'seed' must be an integer" in err
    assert "Traceback" not in err and "<script>" not in (results_copy / "report.html").read_text()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_chromium_runs_nothing_from_a_crafted_folder(results_copy, tmp_path):
    _edit(results_copy, label="vae" + SCRIPT, error=SCRIPT)
    assert main(["report", str(results_copy), "--format", "md"]) == 0
    proc = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                           f"file://{results_copy / 'report.html'}"], capture_output=True, text=True, timeout=120)
    title = proc.stdout.split("<title>", 1)[1].split("</title>", 1)[0]
    assert title.startswith("genbench: ") and "X" not in title and "Y" not in title


def test_markdown_csv_and_terminal_escape_labels(results_copy, capsys):
    _edit(results_copy, label="=HYPERLINK(\"http://x\")|a *b* [c](d) $\\frac{$")
    assert main(["report", str(results_copy)]) == 0
    assert "could not draw" not in capsys.readouterr().err  # '$' pairs are text in figures too
    assert main(["report", str(results_copy)]) == 0
    out = capsys.readouterr().out
    assert "[c](d)" in out  # rich showed the brackets as text, not as markup
    md = (results_copy / "leaderboard.md").read_text().splitlines()
    header = next(line for line in md if line.startswith("| #"))
    row = next(line for line in md if line.startswith("| 1 "))
    count = lambda line: line.replace("\\|", "").count("|")  # noqa: E731
    assert count(row) == count(header)  # the label's '|' does not split the row
    assert r"\*b\*" in row and r"\[c\]" in row
    cells = next(csv.DictReader(io.StringIO((results_copy / "results.csv").read_text())))
    assert cells["label"].startswith("'=HYPERLINK")  # a spreadsheet shows text, runs no formula
    assert pd.read_csv(results_copy / "results.csv")["bce"].dtype == float  # numbers stay numbers


def test_records_cannot_lead_paths_outside_the_folder(results_copy, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    path, rec = _record(results_copy)
    for i, run_id in enumerate(["../../../outside/x", str(outside / "y"), "..", "evil9"]):
        folder = results_copy / "runs" / f"evil{i}"
        folder.mkdir()
        (folder / "record.json").write_text(json.dumps({**rec, "run_id": run_id, "label": f"evil{i}"}))
    link = results_copy / "runs" / "linked"
    link.symlink_to(outside, target_is_directory=True)  # a folder that points out
    (outside / "record.json").write_text(json.dumps({**rec, "run_id": "linked", "label": "linked"}))
    # a sweep whose model name would make a figure path outside figures/
    for i, value in enumerate((4, 8)):
        folder = results_copy / "runs" / f"sweep{i}"
        folder.mkdir()
        (folder / "record.json").write_text(json.dumps(
            {**rec, "run_id": f"sweep{i}", "label": f"s{i}", "model": "../../../outside/m",
             "options": {"latent_dim": value}}))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["report", str(results_copy)]) == 0
    err = capsys.readouterr().err
    # a figures folder that is a link to elsewhere: suite figures refused, nothing written there
    shutil.rmtree(results_copy / "figures")
    (results_copy / "figures").symlink_to(outside, target_is_directory=True)
    assert main(["report", str(results_copy)]) == 0
    assert "could not draw the suite figures" in capsys.readouterr().err
    (results_copy / "figures").unlink()
    assert main(["report", str(results_copy)]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in outside.iterdir()) == ["record.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert "field 'run_id' must be a plain folder name" in err and "is not its folder's name" in err
    # a runs folder that is itself a link to elsewhere: no record is taken from there
    moved = tmp_path / "moved-runs"
    (results_copy / "runs").rename(moved)
    (results_copy / "runs").symlink_to(moved, target_is_directory=True)
    assert main(["report", str(results_copy)]) == 2
    assert "leads outside" in capsys.readouterr().err and "leads outside" in err
    sweeps = [p.name for p in (results_copy / "figures").glob("sweep_*.png")]
    assert len(sweeps) == 1 and "/" not in sweeps[0] and ".." not in sweeps[0]


def _limited(args, cwd, memory=3 * 2**30, timeout=60):
    """genbench in a child process that dies rather than taking more than ``memory`` bytes."""
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (%d, %d)); "
            "from genbench.cli import main; sys.exit(main(%r))" % (memory, memory, args))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    levels += [f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
               for p, c in zip("abcdefgh", "bcdefghi")]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("name: bomb\n" + "\n".join(levels) + "\ndataset: {name: mnist}\nbudget: {steps: 1}\n"
                    "runs: [{model: vae}]\n")
    assert len(bomb.read_bytes()) < 700
    proc = _limited(["validate", "--no-data", str(bomb)], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "expands through YAML aliases to more values than the limit of 100,000" in proc.stderr
    assert "Traceback" not in proc.stderr
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("name: r\nloop: &l [1, *l]\ndataset: {name: mnist}\nbudget: {steps: 1}\nruns: [{model: vae}]\n")
    proc = _limited(["validate", "--no-data", str(recursive)], tmp_path)
    assert proc.returncode == 2 and "a YAML alias refers to a value that contains it" in proc.stderr


def test_a_suite_cannot_expand_to_a_million_runs(write_suite, capsys):
    path = write_suite("""
        name: huge
        dataset: {name: mnist}
        budget: {steps: 1}
        runs:
          - model: vae
            sweep: {latent_dim: %s, hidden_dim: %s}
    """ % (list(range(1, 1001)), list(range(1, 1001))))
    assert main(["validate", "--no-data", str(path)]) == 2
    err = capsys.readouterr().err
    assert "runs[0].sweep: the suite expands to more than 10,000 runs" in err


@pytest.mark.parametrize("content, problem", [
    ('{"run_id": "r", "model": "vae", "seed": 0, "status": "ok"}', "field 'label' is missing"),
    ("[1, 2, 3]", "expected a JSON object, found list"),
    ("[" * 100000 + "]" * 100000, "nested too deeply"),
    ('{"run_id": "r", "label": "x", "model": "vae", "seed": 0, "sta', "not valid JSON"),
    ('{"run_id": "r", "label": "x", "model": "vae", "seed": 0, "status": "ok", "metrics": {"bce": "1"}}',
     "field 'metrics' must be"),
    ('{"run_id": "r", "label": "x", "model": "vae", "seed": true, "status": "ok"}', "field 'seed' must be"),
])
def test_malformed_records_are_one_line_each_and_skipped(results_copy, capsys, content, problem):
    bad = results_copy / "runs" / "r" / "record.json"
    bad.parent.mkdir()
    bad.write_text(content)
    assert main(["report", str(results_copy), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if str(bad) in line]
    assert len(lines) == 1 and problem in lines[0] and lines[0].startswith("genbench: warning:")
    assert "Traceback" not in captured.err
    assert len(pd.read_csv(io.StringIO(captured.out))) == 1  # the good run is still reported
    assert str(bad) in (results_copy / "report.html").read_text()  # the page lists what it skipped


def test_an_object_array_snapshot_is_refused_not_unpickled(results_copy, capsys, tmp_path):
    path, rec = _record(results_copy)
    marker = tmp_path / "unpickled"
    snapshot = path.parent / "snapshot.npz"
    arrays = dict(np.load(snapshot))
    arrays["samples"] = np.array([_Boom(str(marker))], dtype=object)
    np.savez(snapshot, **arrays, allow_pickle=True)
    for png in path.parent.glob("*.png"):
        png.unlink()
    assert main(["report", str(results_copy)]) == 0
    err = capsys.readouterr().err
    assert f"{snapshot}: cannot be read" in err and "its figures are left out" in err
    assert not marker.exists() and "Traceback" not in err
    assert (path.parent / "losses.png").is_file()  # figures that need no snapshot are still drawn


class _Boom:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_a_folder_of_only_bad_records_is_a_clean_error(tmp_path, capsys):
    (tmp_path / "runs" / "a").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "record.json").write_text("{")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "no run records found" in err and "Traceback" not in err



def test_the_record_schema_is_versioned_complete_and_documented(results_copy, capsys):
    from genbench.results import schema

    path, rec = _record(results_copy)
    assert rec["schema_version"] == schema.SCHEMA_VERSION
    assert set(rec) <= set(schema.FIELDS)  # every field written is in the schema
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert all(f"| `{name}` |" in readme for name in schema.FIELDS)
    # an older record (no version) is upgraded on reading; a newer one is refused by name
    old = {k: v for k, v in rec.items() if k != "schema_version"}
    path.write_text(json.dumps(old))
    assert main(["report", str(results_copy), "--format", "json"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    path.write_text(json.dumps({**rec, "schema_version": 99}))
    assert main(["report", str(results_copy)]) == 2
    assert "written by a newer genbench (record schema 99; this genbench reads up to 1)" in capsys.readouterr().err
