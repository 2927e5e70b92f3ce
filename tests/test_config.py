"""Suite files: validation, error messages, sweeps, and the CLI's exit status."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from genbench.cli import main
from genbench.engine.config import load_suite
from genbench.errors import ConfigErrors

from conftest import TINY, genbench_cmd


def errors_of(path, registry) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_suite(path, registry)
    return info.value.lines


def test_tiny_suite_is_valid(write_suite, registry):
    suite = load_suite(write_suite(TINY), registry)
    assert suite.name == "tiny" and len(suite.runs) == 1
    run = suite.runs[0]
    assert run.options.hidden_dim == 64 and run.options.beta == 1.0  # defaults filled in
    assert suite.primary_metric == "bce"
    assert suite.budget.limits() == {"steps": 8}


def test_sweep_expands_to_one_run_per_value_and_seed(write_suite, registry):
    path = write_suite("""
        name: sweep
        dataset: {name: mnist}
        budget: {epochs: 1}
        seeds: [0, 1]
        runs:
          - model: vae
            options: {hidden_dim: 100}
            sweep: {latent_dim: [2, 4, 8], beta: [1, 2]}
    """)
    suite = load_suite(path, registry)
    assert len(suite.runs) == 3 * 2 * 2
    labels = sorted({r.label for r in suite.runs})
    assert "vae[hidden_dim=100,latent_dim=8,beta=2]" in labels and len(labels) == 6
    assert {r.options.hidden_dim for r in suite.runs} == {100}
    # run ids are distinct and stable
    ids = [suite.run_id(r) for r in suite.runs]
    assert len(set(ids)) == len(ids)
    assert ids == [load_suite(path, registry).run_id(r) for r in load_suite(path, registry).runs]


@pytest.mark.parametrize("text, expected", [
    ("name: x\ndataset: {name: mnist}\nbudget: {steps: 1}\nruns:\n  - model: vea\n",
     "runs[0].model: unknown model 'vea'; did you mean 'vae'? (line 5)"),
    ("name: x\ndataset: {name: fashion_mnst}\nbudget: {steps: 1}\nruns: [{model: vae}]\n",
     "dataset.name: unknown data set 'fashion_mnst'; did you mean 'fashion_mnist'?"),
    ("name: x\ndataset: {name: mnist}\nbudget: {steps: 1}\nruns:\n  - model: vae\n    options: {latnt_dim: 3}\n",
     "runs[0].options.latnt_dim: unknown option 'latnt_dim'; did you mean 'latent_dim'? (line 6)"),
    ("name: x\ndataset: {name: mnist}\nbudget: {steps: 1}\nruns:\n  - model: vae\n    options: {latent_dim: ten}\n",
     "runs[0].options.latent_dim: expected int, got str 'ten'"),
    ("name: x\ndataset: {name: mnist}\nbudget: {steps: 0}\nruns: [{model: vae}]\n",
     "budget.steps: must be a finite number greater than 0, got 0"),
    ("name: x\ndataset: {name: mnist}\nbudget: {seconds: -5}\nruns: [{model: vae}]\n",
     "budget.seconds: must be a finite number greater than 0, got -5.0"),
    ("name: x\ndataset: {name: mnist}\nbudget: {seconds: .nan}\nruns: [{model: vae}]\n",
     "budget.seconds: expected a finite number, got nan"),
    ("name: x\ndataset: {name: mnist}\nbudget: {epochs: .inf}\nruns: [{model: vae}]\n",
     "budget.epochs: expected a finite number, got inf"),
    ("name: x\ndataset: {name: mnist}\nbudget: {steps: 1}\nruns:\n  - model: vae\n    options: {lr: .nan}\n",
     "runs[0].options.lr: expected a finite number, got nan"),
    ("name: x\ndataset: {name: mnist}\nruns: [{model: vae}]\n",
     "budget: missing (required: a mapping)"),
    ("name: x\ndataset: {name: mnist}\nbudget: {}\nruns: [{model: vae}]\n",
     "budget: give at least one of flops, steps, epochs or seconds"),
    ("name: x\ndataset: {name: mnist}\nbudget: {steps: 1}\nmetrics: [bce, kll]\nruns: [{model: vae}]\n",
     "metrics[1]: unknown metric 'kll'; did you mean 'kl' or 'nll'?"),
    ("name: x\ndatset: {name: mnist}\nbudget: {steps: 1}\nruns: [{model: vae}]\n",
     "datset: unknown option 'datset'; did you mean 'dataset'?"),
    ("name: x\ndataset: {name: mnist}\nbudget: {steps: 1}\nruns:\n  - model: vae\n    sweep: {latent_dim: [2, -1]}\n",
     "runs[0].sweep.latent_dim: must be at least 1, got -1"),
    ("name: x\ndataset: {name: mnist}\nbudget: {steps: 1}\nruns: [{model: vae}, {model: vae}]\n",
     "two runs are both labelled 'vae'"),
])
def test_each_mistake_gets_one_clear_line(write_suite, registry, text, expected):
    path = write_suite(text)
    lines = errors_of(path, registry)
    assert any(expected in line for line in lines), lines
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_all_errors_are_reported_together(write_suite, registry):
    path = write_suite("name: x\ndataset: {name: mnst}\nbudget: {steps: -1}\n"
                       "runs:\n  - model: vae\n    options: {latent_dim: 0, bta: 2}\n")
    lines = errors_of(path, registry)
    joined = "\n".join(lines)
    for fragment in ("dataset.name", "budget.steps", "runs[0].options.latent_dim", "runs[0].options.bta"):
        assert fragment in joined
    assert len(lines) == 4


def test_yaml_syntax_error_names_the_line(write_suite, registry):
    path = write_suite("name: x\ndataset: {name: mnist\nbudget: {steps: 1}\n")
    (line,) = errors_of(path, registry)
    assert line.startswith(f"{path}: YAML syntax error") and "line 3" in line


def test_missing_file(tmp_path, registry):
    (line,) = errors_of(tmp_path / "nope.yaml", registry)
    assert line == f"{tmp_path / 'nope.yaml'}: no such suite file"


def test_cli_exit_2_and_no_traceback(write_suite, tmp_path):
    path = write_suite("name: x\ndataset: {name: mnist}\nbudget: {steps: 1}\nruns: [{model: gann}]\n")
    out = tmp_path / "out"
    proc = subprocess.run(genbench_cmd() + ["run", str(path), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"genbench: error: {path}: runs[0].model: unknown model 'gann'")
    assert line.endswith("(line 4)")
    assert not out.exists()  # nothing written


def test_validate_checks_without_training(write_suite, capsys):
    good = write_suite(TINY, "good.yaml")
    assert main(["validate", str(good)]) == 0
    assert "ok: suite 'tiny', 1 runs" in capsys.readouterr().out
    bad = write_suite("name: x\ndataset: {name: mnist}\nbudget: {epochs: 0}\nruns: [{model: vae}]\n", "bad.yaml")
    assert main(["validate", str(good), str(bad)]) == 2
    assert "bad.yaml: budget.epochs: must be a finite number greater than 0" in capsys.readouterr().err


def test_no_data_lists_where_it_looked(write_suite, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENBENCH_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path))
    path = write_suite("name: x\ndataset: {name: mnist, root: /nowhere, download: false}\n"
                       "budget: {steps: 1}\nruns: [{model: vae}]\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no mnist data (train split) found; looked in: /nowhere, /nowhere/mnist" in err
    assert str(tmp_path / "empty" / "mnist") in err and "/usr/share/datasets/mnist" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "suites").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_suite_validates(path, capsys):
    assert main(["validate", "--no-data", str(path)]) == 0, capsys.readouterr().err
