"""An equal tuning budget (issue 13): searches through Optuna, never on the test split."""

from __future__ import annotations

import itertools
import json
import re
import shutil

import pandas as pd
import pytest

import genbench
from genbench.cli import main
from genbench.engine.data import VALIDATION_SEED, stratified_holdout
from conftest import Synthetic

SUITE = """
name: tune
dataset: {{name: synthetic, subset: 512, test_subset: 128, validation: 256}}
budget: {{steps: 6}}
batch_size: 64
seeds: [0, 1]
metrics: [probe, bce]
trials: 4
sampler: {sampler}
runs:
  - model: ae
    options: {{hidden_dims: [16]}}
    search:
      lr: {{loguniform: [1.0e-3, 3.0e-2]}}
      latent_dim: {{int: [2, 8]}}
  - model: vae
    options: {{hidden_dim: 16}}
    search:
      latent_dim: {{choice: [2, 4]}}
      beta: {{uniform: [0.5, 2.0]}}
"""

STOP = {"after": None, "scored": 0}  # the probe raises KeyboardInterrupt on its Nth score: a Ctrl-C


def probe(ctx, options=None):
    """Squared reconstruction error, with the split it was computed on as details."""
    STOP["scored"] += 1
    if STOP["after"] is not None and STOP["scored"] > STOP["after"]:
        raise KeyboardInterrupt
    value = float(((ctx.reconstructions - ctx.images) ** 2).mean())
    return value, {"images": len(ctx.images), "pixel_sum": float(ctx.images.sum())}


PROBE = genbench.Metric("probe", probe, {genbench.Capability.RECONSTRUCT}, description="test metric")


@pytest.fixture
def probe_metric(mock_plugins, synthetic_dataset):
    mock_plugins("mock_probe", register_metrics=lambda register: register(PROBE))
    STOP.update(after=None, scored=0)
    yield
    STOP.update(after=None, scored=0)


def _records(out):
    return [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/record.json"))]


def _split_sums() -> tuple[float, float]:
    """The pixel sums of the validation split and of the scored test images, computed here."""
    images, labels = Synthetic.make(2048, 0)
    held, _ = stratified_holdout(labels, 256, VALIDATION_SEED)
    test, _ = Synthetic.make(512, 1)
    return float((images[held].float() / 255).sum()), float((test[:128].float() / 255).sum())


def test_trials_score_the_validation_split_and_the_best_options_train_on_every_seed(probe_metric, write_suite,
                                                                                   tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(write_suite(SUITE.format(sampler="random"))), "--out", str(out)]) == 0
    records = _records(out)
    trials = [r for r in records if r.get("trial")]
    finals = [r for r in records if not r.get("trial")]
    assert len(trials) == 8 and len(finals) == 4
    validation_sum, test_sum = _split_sums()
    for r in trials:  # never the test split, and only the search's metric
        assert r["eval_split"] == "validation" and list(r["metrics"]) == ["probe"]
        assert r["metric_details"]["probe"]["images"] == 256
        assert r["metric_details"]["probe"]["pixel_sum"] == pytest.approx(validation_sum, rel=1e-6)
        assert r["seed"] == 1000 + r["trial"]["number"]
        assert not (out / "runs" / r["run_id"] / "model.pt").exists()
    for r in finals:
        assert r["eval_split"] == "test" and r["metric_details"]["probe"]["images"] == 128
        assert r["metric_details"]["probe"]["pixel_sum"] == pytest.approx(test_sum, rel=1e-6)
    for label in ("ae[hidden_dims=16]", "vae[hidden_dim=16]"):
        mine = [t for t in trials if t["trial"]["search"] == label]
        params = [t["trial"]["params"] for t in mine]
        if label.startswith("ae"):
            assert all(1e-3 <= p["lr"] <= 3e-2 and isinstance(p["latent_dim"], int) and 2 <= p["latent_dim"] <= 8
                       for p in params)
        else:
            assert all(p["latent_dim"] in (2, 4) and 0.5 <= p["beta"] <= 2.0 for p in params)
        best = min(mine, key=lambda t: (t["metrics"]["probe"], t["trial"]["number"]))
        chosen = [r for r in finals if r["label"] == label]
        assert sorted(r["seed"] for r in chosen) == [0, 1]
        for r in chosen:
            assert r["search"]["chosen"] == best["trial"]["params"] and r["search"]["trials"] == 4
            assert r["search"]["best_value"] == best["metrics"]["probe"]
            assert {k: r["options"][k] for k in best["trial"]["params"]} == best["trial"]["params"]
    board = (out / "leaderboard.md").read_text()
    assert "trial" not in board.split("| trials")[1].split("\n\n")[0].replace("trials", "")
    assert board.count("\n| ") == 3 and "chosen options" in board  # header and two rows
    html = (out / "report.html").read_text()
    assert "id='search'" in html and all(t["run_id"] in html for t in trials)
    assert (out / "figures" / "tuning.png").stat().st_size > 1000


def test_tuning_csv_holds_the_expected_best_of_k_trials_recomputed_from_its_values(probe_metric, write_suite,
                                                                                  tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(write_suite(SUITE.format(sampler="random"))), "--out", str(out)]) == 0
    table = pd.read_csv(out / "tuning.csv")
    assert list(table.groupby("search", sort=False).size()) == [4, 4]
    for _, rows in table.groupby("search"):
        values = rows["value"].tolist()
        for k in range(1, 5):  # brute force: the mean best over every k-subset
            best = [min(c) for c in itertools.combinations(values, k)]
            row = rows[rows["k"] == k].iloc[0]
            assert row["expected_best"] == pytest.approx(sum(best) / len(best), rel=1e-12)
            assert row["band_low"] <= row["expected_best"] + 1e-12 <= row["band_high"] + 2e-12
        assert rows["expected_best"].is_monotonic_decreasing  # more trials never expect worse


def _signature(out) -> list[tuple]:
    table = pd.read_csv(out / "tuning.csv")
    return sorted(zip(table["search"], table["trial"], table["params"], table["value"].round(9)))


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_search_stopped_midway_resumes_to_the_same_trials(probe_metric, write_suite, tmp_path, sampler):
    path = write_suite(SUITE.format(sampler=sampler))
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    assert main(["run", str(path), "--out", str(whole)]) == 0
    STOP.update(after=3, scored=0)  # Ctrl-C while the 4th trial is scored
    assert main(["run", str(path), "--out", str(stopped)]) == 130
    STOP.update(after=None)
    assert len(_records(stopped)) == 3 and (stopped / "search" / "study.log").is_file()
    assert main(["run", str(path), "--out", str(stopped), "--resume"]) == 0
    assert _signature(stopped) == _signature(whole)
    assert len(_records(stopped)) == 12
    # Without its study, the search draws the same trials again and reuses their runs.
    shutil.rmtree(stopped / "search")
    for r in _records(stopped):
        if not r.get("trial") or r["trial"]["number"] >= 2:
            shutil.rmtree(stopped / "runs" / r["run_id"])
    STOP.update(scored=0)
    assert main(["run", str(path), "--out", str(stopped), "--resume"]) == 0
    assert _signature(stopped) == _signature(whole)
    assert STOP["scored"] == 2 * 2 + 4  # trials 2 and 3 of both entries, the 4 final runs; not trials 0, 1


def test_an_unreadable_study_is_one_line(probe_metric, write_suite, tmp_path, capsys):
    path = write_suite(SUITE.format(sampler="random").replace("trials: 4", "trials: 1"))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    (out / "search" / "study.log").write_text('{"op_code": 0, "worker_id": "x", "study_name"\n')
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(out), "--resume"]) != 0
    err = capsys.readouterr().err
    assert "study.log: line 1 of 1 is damaged (not valid JSON" in err and "Traceback" not in err


@pytest.fixture
def searched(probe_metric, write_suite, tmp_path):
    """A finished search of 2 trials per entry: (suite path, its folder, a pristine copy)."""
    path = write_suite(SUITE.format(sampler="random").replace("trials: 4", "trials: 2"))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    shutil.copytree(out, tmp_path / "pristine")
    return path, out, tmp_path / "pristine"


def _cut_last_entry(data: bytes) -> bytes:
    """What a kill while writing the last entry leaves: half of its line, no newline."""
    lines = data.split(b"\n")
    return b"\n".join(lines[:-2]) + b"\n" + lines[-2][:30]


@pytest.mark.parametrize("tear", [lambda d: d + b'{"op_code":4,"worker_id":"x","stu', _cut_last_entry,
                                  lambda d: d + b"\xff\xfe"])
def test_a_torn_last_journal_line_is_ignored_with_a_warning(searched, capsys, tear):
    path, out, pristine = searched
    journal = out / "search" / "study.log"
    journal.write_bytes(tear(journal.read_bytes()))
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert "study.log: its last line was torn (a search stopped mid-write); it is ignored" in captured.out
    assert _signature(out) == _signature(pristine)  # the same trials, the same scores
    assert journal.read_bytes().endswith(b"\n")
    assert main(["run", str(path), "--out", str(out), "--resume"]) == 0  # and it stays readable


def _on_choice_lines(change):
    """Apply ``change`` to the journal lines that set a categorical option (vae's latent_dim)."""
    def damage(data: bytes) -> bytes:
        return b"\n".join(change(line) if b"CategoricalDistribution" in line else line for line in data.split(b"\n"))
    return damage


@pytest.mark.parametrize("damage, problem", [
    (lambda d: d.replace(b"\n", b"\n{broken\n", 1), r"line 2 of \d+ is damaged \(not valid JSON"),
    (lambda d: d.replace(b'"op_code"', b'"op_code":' + b"9" * 5000 + b', "x"', 1), "5,000 digits"),
    (lambda d: b"\x00\xff\n" + d, r"line 1 of \d+ is damaged"),
    (_on_choice_lines(lambda line: re.sub(rb'"param_value_internal":\d+', b'"param_value_internal":7', line)),
     "study cannot be read"),
    (_on_choice_lines(lambda line: line.replace(b"[2, 4]", b"[2, 6]").replace(b'"param_value_internal":0',
                                                                             b'"param_value_internal":1')),
     "latent_dim=6 is not one of the search's choices"),
])
def test_a_damaged_journal_is_one_line(searched, capsys, damage, problem):
    path, out, _ = searched
    journal = out / "search" / "study.log"
    journal.write_bytes(damage(journal.read_bytes()))
    capsys.readouterr()
    assert main(["run", str(path), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert re.search(problem, err) and "move it away and --resume" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("stale", ["symlink", "file"])
def test_a_stale_journal_lock_does_not_hold_the_search_up(searched, capsys, stale):
    import signal

    path, out, _ = searched
    for _ in range(2):  # twice: each resume meets a stale lock and leaves none behind
        lock = out / "search" / "study.log.lock"
        lock.symlink_to("/nonexistent") if stale == "symlink" else lock.write_text("held")
        signal.signal(signal.SIGALRM, lambda *_: pytest.fail("the resumed search waited on the stale lock"))
        signal.alarm(25)  # a hang guard: Optuna's own lock waits 30 s before it breaks a stale one
        try:
            assert main(["run", str(path), "--out", str(out), "--resume"]) == 0
        finally:
            signal.alarm(0)
        assert not lock.exists() and not lock.is_symlink()


BASE = """
name: bad
dataset: {{name: fashion_mnist, validation: 1000{dataset}}}
budget: {{steps: 1}}
metrics: [fid, bce]
trials: {trials}
runs:
  - model: {model}
    search: {search}
"""


@pytest.mark.parametrize("search, problem", [
    ("{lr: {uniform: [0.01, 0.01]}}", "runs[0].search.lr.uniform: empty range [0.01, 0.01]"),
    ("{lr: {loguniform: [0.01, 0.001]}}", "runs[0].search.lr.loguniform: inverted range [0.01, 0.001]: write "
     "[0.001, 0.01]"),
    ("{lr: {loguniform: [0, 0.01]}}", "runs[0].search.lr.loguniform: a log-uniform range must lie above 0"),
    ("{latnet_dim: {int: [2, 8]}}", "runs[0].search.latnet_dim: unknown option 'latnet_dim' of this model; "
     "did you mean 'latent_dim'?"),
    ("{lr: {logunifrom: [0.001, 0.01]}}", "unknown distribution 'logunifrom' (one of loguniform, uniform, int, "
     "choice); did you mean 'loguniform'"),
    ("{latent_dim: {uniform: [2, 8]}}", "option 'latent_dim' takes whole numbers: use {int: [2, 8]}"),
    ("{latent_dim: {int: [0, 8]}}", "runs[0].search.latent_dim.int: 0 is not a valid 'latent_dim': must be at least 1"),
    ("{latent_dim: {int: [2.5, 8]}}", "an int range takes whole numbers"),
    ("{lr: [0.001, 0.01]}", "runs[0].search.lr: expected one distribution"),
    ("{latent_dim: {choice: []}}", "runs[0].search.latent_dim.choice: expected a non-empty list"),
    ("{}", "runs[0].search: expected a mapping of option -> distribution"),
])
def test_bad_search_spaces_are_one_line_each(write_suite, capsys, search, problem):
    path = write_suite(BASE.format(dataset="", trials=4, model="vae", search=search))
    assert main(["validate", "--no-data", str(path)]) == 2
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err
    assert all(line.removeprefix("genbench: error: ").startswith(str(path)) for line in err.strip().splitlines())
    assert "trials:" not in err  # the entry still counts as searched


@pytest.mark.parametrize("dataset, trials, model, search, problem", [
    ("", 0, "vae", "{lr: {uniform: [0.001, 0.01]}}", "trials: must be at least 1, got 0"),
    ("", "null", "vae", "{lr: {uniform: [0.001, 0.01]}}", "a search needs trials: K at the top level"),
    (", validation: 0", 4, "vae", "{lr: {uniform: [0.001, 0.01]}}",
     "dataset.validation: a search scores its trials on a validation split held out of the training images, "
     "never on the test split"),
    (", eval_split: validation", 4, "vae", "{lr: {uniform: [0.001, 0.01]}}",
     "dataset.eval_split: with a search, trials are scored on the validation split and the final runs on the "
     "test split"),
    ("", 4, "ae", "{lr: {uniform: [0.001, 0.01]}}", "runs[0].search_metric: metric 'fid' cannot score model 'ae' "
     "(it needs sample); set search_metric to one that can: bce"),
])
def test_a_search_that_could_touch_the_test_split_or_has_no_budget_is_refused(write_suite, capsys, dataset, trials,
                                                                              model, search, problem):
    path = write_suite(BASE.format(dataset=dataset, trials=trials, model=model, search=search))
    assert main(["validate", "--no-data", str(path)]) == 2
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err


def test_search_and_sweep_do_not_mix_and_trials_need_a_search(write_suite, capsys):
    path = write_suite("""
        name: bad
        dataset: {name: fashion_mnist, validation: 100}
        budget: {steps: 1}
        trials: 3
        runs:
          - model: vae
            sweep: {latent_dim: [2, 4]}
            search: {lr: {loguniform: [0.001, 0.01]}}
    """)
    assert main(["validate", "--no-data", str(path)]) == 2
    assert "runs[0].sweep: sweep and search cannot be combined" in capsys.readouterr().err
    path = write_suite("""
        name: bad
        dataset: {name: fashion_mnist}
        budget: {steps: 1}
        trials: 3
        runs: [{model: vae}]
    """)
    assert main(["validate", "--no-data", str(path)]) == 2
    assert "trials: no run entry has a search: to spend the trials on" in capsys.readouterr().err


def test_a_choice_over_list_options_comes_back_as_the_option(registry):
    from genbench.engine.searchspace import parse_space

    errors: list = []
    space = parse_space({"hidden_dims": {"choice": [[64], [128, 64]]}}, registry.models["ae"].Options, {},
                        ("runs", 0, "search"), errors)
    assert not errors
    param = space[0]
    dist = param.distribution()
    assert [param.value(c) for c in dist.choices] == [(64,), (128, 64)]


def test_crafted_trial_records_are_escaped_or_skipped(probe_metric, write_suite, tmp_path, capsys):
    path = write_suite(SUITE.format(sampler="random").replace("trials: 4", "trials: 1"))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    trials = [r for r in _records(out) if r.get("trial")]
    evil = trials[0]
    evil["trial"]["search"] = "=HYPERLINK(\"http://x\")<script>alert(1)</script>$x$"
    evil["trial"]["params"] = {"<img src=x onerror=alert(1)>": "<b>"}
    (out / "runs" / evil["run_id"] / "record.json").write_text(json.dumps(evil))
    broken = trials[1]
    broken["trial"]["number"] = "0; rm -rf /"
    (out / "runs" / broken["run_id"] / "record.json").write_text(json.dumps(broken))
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{broken['run_id']}" in err and "field 'trial' must be" in err  # skipped, one line
    html = (out / "report.html").read_text()
    assert "<script>alert" not in html and "<img src=x" not in html and "&lt;script&gt;" in html
    table = pd.read_csv(out / "tuning.csv")
    assert table["search"].str.startswith("'=").any() and len(table) == 1
    assert (out / "figures" / "tuning.png").is_file()
