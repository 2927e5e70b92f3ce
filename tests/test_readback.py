"""Every file of a results folder is read back through one checked reader (issue 26, item 1):
a bad file or field is one warning naming the file and field, and the rest still reports."""

from __future__ import annotations

import json

import pytest
import yaml

from genbench.cli import main
from genbench.results import readback

HUGE = "9" * 5000  # past Python's 4,300-digit limit on int(str)
BIG = 10 ** 320    # fits JSON and int(str), not a float


def _record_path(out):
    return next((out / "runs").glob("*/record.json"))


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _edit_suite(out, change):
    path = out / "suite.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def _report_and_compare(out, other, capsys) -> str:
    """report (rich, writing), report --format md, compare both ways; every one exits 0."""
    for args in (["report", str(out)], ["report", str(out), "--format", "md", "--no-write"],
                 ["compare", str(other), str(out)], ["compare", str(out), str(other), "--format", "md"]):
        assert main(args) == 0, args
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return captured.err


@pytest.mark.parametrize("field, value", [
    ("budget", "4e12"), ("budget", [1, 2]), ("budget", {"flops": "4e+12 FLOPs"}), ("budget", {"steps": BIG}),
    ("dataset", "mnist"), ("dataset", {"name": ["x"]}), ("evaluation", [1]), ("runs", "x"), ("runs", [1, "a"]),
    ("seeds", [{"a": 1}]), ("report", {"latent_projection": [1]}), ("trials", "ten"), ("name", {"a": 1}),
])
def test_a_bad_suite_yaml_field_is_left_out_with_one_warning(results_copy, finished_folder, capsys, field, value):
    _edit_suite(results_copy, lambda d: d.__setitem__(field, value))
    err = _report_and_compare(results_copy, finished_folder, capsys)
    assert f"{results_copy / 'suite.yaml'}: " in err
    assert f"field '{field}' must be" in err or "too large for a float" in err
    assert "\n| 1 " in (results_copy / "leaderboard.md").read_text()  # the rest still reports


@pytest.mark.parametrize("field, value", [
    ("versions", [1, 2]), ("versions", "x"), ("versions", {"torch": [1]}), ("device_name", {"a": 1}),
    ("plugin_warnings", "x"), ("plugins", [1]), ("torch_threads", "x"),
])
def test_a_bad_env_json_field_is_left_out_with_one_warning(results_copy, finished_folder, capsys, field, value):
    _edit_json(results_copy / "env.json", lambda d: d.__setitem__(field, value))
    err = _report_and_compare(results_copy, finished_folder, capsys)
    assert f"{results_copy / 'env.json'}: field '{field}' must be" in err


@pytest.mark.parametrize("where, text", [
    ("record.json", '"bce": ' + HUGE + ', "x_": '), ("record.json", f'"bce": {BIG}, "x_": '),
    ("record.json", '"bce": 1e999, "x_": '), ("env.json", '"torch_threads": ' + HUGE + ', "x_": '),
])
def test_numbers_are_bounded_on_read(results_copy, finished_folder, capsys, where, text):
    path = _record_path(results_copy) if where == "record.json" else results_copy / where
    anchor = '"bce": ' if where == "record.json" else '"versions": '
    path.write_text(path.read_text().replace(anchor, text + (anchor if where != "record.json" else ""), 1))
    code = main(["report", str(results_copy)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{path}: " in err and ("digits" in err or "too large for a float" in err or "float's range" in err)
    assert code == (2 if where == "record.json" else 0)  # the only record is skipped; an env.json is not needed


@pytest.mark.parametrize("field, value", [
    ("budget_used", {"seconds": BIG}), ("sampling", {"seconds_per_1000": BIG}), ("eval_seconds", BIG),
    ("seed", BIG),
])
def test_an_integer_too_large_for_a_float_skips_its_record(results_copy, capsys, field, value):
    path = _record_path(results_copy)
    _edit_json(path, lambda d: d.__setitem__(field, value))
    assert main(["report", str(results_copy)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: the integer 100000000000... is too large for a float; skipped" in err


@pytest.mark.parametrize("edit", [
    lambda r: r.__setitem__("label", "[/bold]vae[red]"),
    lambda r: r["metric_info"]["bce"].__setitem__("unit", "[/bold]nats"),
    lambda r: r.__setitem__("search", {"trials": 2, "chosen": {"latent_dim": "[/bold]"}}),
    lambda r: r.__setitem__("contended", ["[/]crowded"]),
])
def test_markup_from_a_folder_is_printed_as_text(results_copy, capsys, monkeypatch, edit):
    monkeypatch.setenv("COLUMNS", "240")
    _edit_json(_record_path(results_copy), edit)
    assert main(["report", str(results_copy), "--no-write"]) == 0
    captured = capsys.readouterr()
    assert "MarkupError" not in captured.err and "Traceback" not in captured.err
    shown = captured.out + captured.err  # the contended note is a warning
    assert "[/bold]" in shown or "[/]crowded" in shown


@pytest.mark.parametrize("meta", [{"requires": 3}, {"unit": 5}, {"higher_is_better": "x"}, {"description": [1]}])
def test_a_metric_description_of_the_wrong_shape_skips_its_record(results_copy, capsys, meta):
    path = _record_path(results_copy)
    _edit_json(path, lambda r: r["metric_info"]["bce"].update(meta))
    assert main(["report", str(results_copy)]) == 2
    assert f"{path}: not a run record: field 'metric_info'" in capsys.readouterr().err


def test_files_genbench_only_writes_are_rebuilt_not_read(results_copy, capsys):
    (results_copy / "tuning.csv").write_text('a,b\n"unterminated\n')
    (results_copy / "check.json").write_text("{" * 10_000)
    assert main(["report", str(results_copy)]) == 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("text, problem", [
    ("[" * 3000 + "]" * 3000, "nested too deeply"), ("a: &a [1]\nb: " + "[*a, " * 200, "not valid YAML"),
    ("x: " + HUGE, "more than 4,300 digits"), ("x: [1, 2", "not valid YAML"),
])
def test_the_yaml_reader_refuses_in_one_line(text, problem):
    with pytest.raises(readback.BadFile, match=problem):
        readback.parse_yaml(text)


@pytest.mark.parametrize("text, problem", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"), ('{"a": ' + HUGE + "}", "5,000 digits"),
    ('{"a": 1e400}', "outside a float's range"), ('{"a": 1', "not valid JSON"),
])
def test_the_json_reader_refuses_in_one_line(text, problem):
    with pytest.raises(readback.BadFile, match=problem):
        readback.parse_json(text)


def test_nan_reads_as_null():
    assert readback.parse_json('{"a": NaN, "b": [Infinity, 2]}') == {"a": None, "b": [None, 2]}


@pytest.mark.parametrize("value, problem", [
    ("[" * 5000 + "]" * 5000, "nested too deeply"), ("[" * 20 + "]" * 20, "nested more than 8 levels"),
    (HUGE, "more than 4,300 digits"), ("x" * 20_000, "20,000 characters"), ("[1, 2", "not valid YAML"),
])
def test_rescore_set_values_are_bounded(results_copy, capsys, value, problem):
    assert main(["rescore", str(results_copy), "--set", f"iw_samples={value}"]) == 2
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_rescore_set_blames_the_value_not_the_record(results_copy, capsys):
    assert main(["rescore", str(results_copy), "--set", "iw_samples=[1]"]) == 2
    assert "--set iw_samples: expected int, got a list" in capsys.readouterr().err
