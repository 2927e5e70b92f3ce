"""Bad input and a hostile machine: one line and a non-zero exit, never a traceback, and
nothing computed is lost (issue 9, items 9-16)."""

from __future__ import annotations

import ast
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import genbench
from genbench.cli import main
from genbench.errors import UserError
from genbench.results import files

from conftest import ROOT, TINY, genbench_cmd

# -- 9. atomic writes -----------------------------------------------------------------


def _writes_outside_the_helper(path: Path) -> list[str]:
    """Calls in ``path`` that write a file without going through files.atomic_write."""
    tree, found = ast.parse(path.read_text()), []
    atomic_blocks = [n for n in ast.walk(tree) if isinstance(n, ast.With)
                     and any("atomic_write" in ast.unparse(i.context_expr) for i in n.items)]
    inside_atomic = {id(c) for w in atomic_blocks for c in ast.walk(w)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        mode = next((a.value for a in node.args[1:2] if isinstance(a, ast.Constant)), None) or next(
            (k.value.value for k in node.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)), "")
        plain_open = name in ("open", "os.open", "gzip.open") and any(c in str(mode) for c in "wax+")
        method = isinstance(node.func, ast.Attribute) and node.func.attr in ("write_text", "write_bytes") \
            and ast.unparse(node.func.value) not in ("record", "files")
        target = node.args[1] if name == "torch.save" and len(node.args) > 1 else node.args[0] if node.args else None
        saver = name in ("torch.save", "np.save", "np.savez", "np.savez_compressed") and id(node) not in inside_atomic \
            and ast.unparse(target) not in ("buffer", "staging")  # memory or a scratch file, then written atomically
        if plain_open or method or saver or name.endswith("savefig") and "buffer" not in ast.unparse(node.args[0]):
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_every_file_is_written_through_the_atomic_helper():
    sources = [p for p in (ROOT / "harness").rglob("*.py") if p.name != "files.py"] + \
        list((ROOT / "plugins").glob("*.py")) + list((ROOT / "scripts").glob("*.py"))
    assert len(sources) > 20
    assert [w for p in sources for w in _writes_outside_the_helper(p)] == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old")
    with pytest.raises(ZeroDivisionError):
        with files.atomic_write(target) as f:
            f.write(b"half of the new")
            1 / 0
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_a_killed_write_leaves_the_old_file_and_resume_cleans_up(results_copy, write_suite):
    (run_dir,) = (results_copy / "runs").iterdir()
    model = (run_dir / "model.pt").read_bytes()
    code = ("import os, signal, sys; from genbench.results import files\n"
            "with files.atomic_write(sys.argv[1]) as f:\n"
            "    f.write(b'x' * 100000); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(run_dir / "model.pt")])
    assert proc.returncode == -signal.SIGKILL
    leftovers = list(run_dir.glob(f".*{files.TMP_SUFFIX}"))
    assert len(leftovers) == 1 and (run_dir / "model.pt").read_bytes() == model
    assert main(["run", str(write_suite(TINY)), "--out", str(results_copy), "--resume"]) == 0
    assert list(results_copy.rglob(f".*{files.TMP_SUFFIX}")) == []


# -- 10. bad data files -----------------------------------------------------------------

def _idx(header: bytes, payload: bytes) -> bytes:
    return gzip.compress(header + payload)


@pytest.mark.parametrize("which, content, said", [
    ("t10k-images-idx3-ubyte.gz", "truncated", "broken gzip file"),
    ("t10k-images-idx3-ubyte.gz", _idx(b"\x01\x02\x03\x04", b""), "not an IDX file"),
    ("t10k-images-idx3-ubyte.gz", _idx(b"\x00\x00\x08\x03" + (10).to_bytes(4, "big") * 3, bytes(900)),
     "the file holds 900; truncated"),
    ("t10k-images-idx3-ubyte.gz", _idx(b"\x00\x00\x08\x02" + (10).to_bytes(4, "big") * 2, bytes(100)),
     "expected mnist images of shape (N, 28, 28)"),
    ("t10k-labels-idx1-ubyte.gz", _idx(b"\x00\x00\x08\x01" + (7).to_bytes(4, "big"), bytes(7)),
     "expected 10000 labels"),
    ("t10k-labels-idx1-ubyte.gz", b"", "not an IDX file"),
])
def test_bad_data_files_are_one_line_naming_the_file(tmp_path, data_root, which, content, said):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (folder / name).symlink_to(data_root / "mnist" / name)
    (folder / which).unlink()
    real = (data_root / "mnist" / which).read_bytes()
    (folder / which).write_bytes(real[:len(real) // 2] if content == "truncated" else content)
    suite = tmp_path / "s.yaml"
    suite.write_text(f"name: s\ndataset: {{name: mnist, root: {tmp_path}, download: false}}\n"
                     "budget: {steps: 1}\nruns: [{model: vae}]\n")
    proc = subprocess.run(genbench_cmd() + ["validate", str(suite)], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert str(folder / which) in line and said in line


# -- 11. output problems -----------------------------------------------------------------

@pytest.mark.parametrize("out", ["file", "/proc/genbench-results", "ro"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_training(write_suite, tmp_path, capsys,
                                                                             tmpfs, out):
    if out == "file":
        out = tmp_path / "a-file"
        out.write_text("x")
    elif out == "ro":
        out = tmpfs("ro", readonly=True) / "results"
    assert main(["run", str(write_suite(TINY)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert line.startswith("genbench: error:") and str(out) in line


def test_a_full_disk_stops_the_suite_in_one_line_and_resume_finishes_it(write_suite, tmpfs, tmp_path):
    disk = tmpfs("disk", size="2m")  # one run (a 1.2 MB model.pt) fits, the next does not
    suite = write_suite(TINY.replace("seeds: [0]", "seeds: [0, 1, 2]"))
    out = disk / "results"
    proc = subprocess.run(genbench_cmd() + ["run", str(suite), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("genbench: error:")]
    assert "No space left on device" in errors[0] and "continue with --resume" in errors[-1]
    assert list(out.rglob(f".*{files.TMP_SUFFIX}")) == []
    done = [json.loads(p.read_text()) for p in out.glob("runs/*/record.json")]
    assert all(r["status"] == "ok" for r in done) and 1 <= len(done) < 3
    tmpfs.remount(disk, "size=50m")  # the cause is fixed
    proc = subprocess.run(genbench_cmd() + ["run", str(suite), "--out", str(out), "--resume"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(json.loads(p.read_text())["seed"] for p in out.glob("runs/*/record.json")) == [0, 1, 2]


def test_report_on_a_read_only_folder_is_one_line(results_copy, tmpfs, capsys):
    import shutil

    disk = tmpfs("ro-report", size="20m")
    shutil.copytree(results_copy, disk / "r")
    tmpfs.remount(disk, "ro")
    assert main(["report", str(disk / "r")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "Read-only file system" in line and "--no-write" in line
    assert main(["report", str(disk / "r"), "--no-write", "--format", "md"]) == 0


# -- 12. download: false ---------------------------------------------------------------

def test_download_false_never_downloads_or_creates_the_cache(write_suite, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENBENCH_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write_suite("name: x\ndataset: {name: mnist, download: false}\nbudget: {steps: 1}\nruns: [{model: vae}]\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "no mnist data (train split) found" in err and "torchvision download" not in err
    assert not (tmp_path / "home").exists() and not (tmp_path / "out").exists()


# -- 13. model outputs -----------------------------------------------------------------

class _Broken(genbench.Model):
    capabilities = frozenset({genbench.Capability.SAMPLE})

    def __init__(self, options, data):
        super().__init__(options, data)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def configure_optimizers(self):
        return {"opt": torch.optim.SGD(self.parameters(), lr=0.1)}

    def train_step(self, batch, step):
        loss = (self.w ** 2).sum()
        self.optimizers["opt"].zero_grad()
        loss.backward()
        self.optimizers["opt"].step()
        return {"loss": loss.detach()}


class SmallSamples(_Broken):
    name = "mock_small"

    def sample(self, n, labels=None):
        return torch.rand(n, 1, 14, 14)


class WideSamples(_Broken):
    name = "mock_wide"

    def sample(self, n, labels=None):
        return torch.rand(n, 1, 28, 28) * 2 - 0.5


class NanSamples(_Broken):
    name = "mock_nan"

    def sample(self, n, labels=None):
        return torch.full((n, 1, 28, 28), float("nan"))


@pytest.mark.parametrize("cls, rule", [
    (SmallSamples, "model 'mock_small': sample() returned shape (100, 1, 14, 14), expected (100, 1, 28, 28)"),
    (WideSamples, "model 'mock_wide': sample() returned values in [-0.5"),
    (NanSamples, "model 'mock_nan': sample() returned NaN or infinite values"),
])
def test_broken_model_outputs_fail_the_run_with_one_clear_error(write_suite, tmp_path, mock_plugins, cls, rule):
    mock_plugins("mock_outputs", register_models=lambda register: register(cls))
    text = TINY.replace("runs:", "metrics: [fid, bce]\nevaluation: {num_samples: 100}\nruns:")
    out = tmp_path / "out"
    assert main(["run", str(write_suite(text + f"  - model: {cls.name}\n")), "--out", str(out)]) == 1
    records = {r["model"]: r for r in (json.loads(p.read_text()) for p in out.glob("runs/*/record.json"))}
    assert records[cls.name]["status"] == "failed" and records[cls.name]["error"].startswith("ModelOutputError: " + rule)
    assert records["vae"]["status"] == "ok"
    assert cls.name not in (out / "leaderboard.md").read_text().replace("\\_", "_")
    assert main(["report", str(out)]) == 0  # the report of such a folder still works

    def refuse(constant):
        raise AssertionError(f"non-standard JSON constant {constant}")
    for path in out.rglob("*.json"):
        json.loads(path.read_text(), parse_constant=refuse)


def test_a_metric_that_gives_nan_is_null_with_a_reason(write_suite, tmp_path, mock_plugins):
    nan = genbench.Metric("mock_nan_metric", lambda ctx: float("nan"), description="always NaN")
    mock_plugins("mock_metric", register_metrics=lambda register: register(nan))
    text = TINY.replace("runs:", "metrics: [bce, mock_nan_metric]\nruns:")
    assert main(["run", str(write_suite(text)), "--out", str(tmp_path / "out")]) == 0
    text = next((tmp_path / "out").glob("runs/*/record.json")).read_text()
    rec = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert rec["metrics"]["mock_nan_metric"] is None
    assert rec["metric_details"]["not_finite"] == {"mock_nan_metric": "the metric gave nan"}


# -- 14. messages are text, not markup -----------------------------------------------------

def test_user_text_in_messages_is_not_markup(write_suite, capsys):
    assert main(["run", str(write_suite(TINY)), "--device", "cuda:abc:"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda:abc:" in err
    bad = write_suite(TINY.replace("runs:", "primary_metric: 'vae[latent_dim=4]'\nruns:"))
    assert main(["validate", "--no-data", str(bad)]) == 2
    assert "'vae[latent_dim=4]' is not among the suite's metrics" in capsys.readouterr().err


# -- 15. one process per results folder -----------------------------------------------------

def test_a_second_run_on_a_locked_folder_is_refused_and_names_the_holder(results_copy, write_suite, capsys):
    before = {p: p.read_bytes() for p in results_copy.rglob("*") if p.is_file() and p.name != files.LOCK}
    with files.FolderLock(results_copy, "run"):
        assert main(["run", str(write_suite(TINY)), "--out", str(results_copy), "--resume"]) == 2
        err = capsys.readouterr().err
        assert f"is in use by `genbench run` (pid {os.getpid()} on" in err and "wait for it" in err
        assert main(["report", str(results_copy)]) == 2
    assert {p: p.read_bytes() for p in results_copy.rglob("*") if p.is_file() and p.name != files.LOCK} == before
    assert main(["report", str(results_copy)]) == 0  # released


def test_two_resumes_at_once_train_each_run_once(tmp_path, data_root):
    suite = tmp_path / "s.yaml"
    suite.write_text(TINY.replace("budget: {steps: 8}", "budget: {steps: 300}"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(genbench_cmd() + ["run", str(suite), "--out", "out", "--resume"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], results
    refused = next(err for (_, err), p in zip(results, procs) if p.returncode == 2)
    assert "is in use by `genbench run`" in refused
    assert len(list((tmp_path / "out").glob("runs/*/record.json"))) == 1


def test_an_empty_folder_is_removed_before_its_lock_is_let_go(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    holder = files.FolderLock(out, "run").acquire()
    unlink, refused = Path.unlink, []

    def unlink_while_held(path, *args, **kwargs):
        if path.name == files.LOCK:  # another process trying now is refused: the lock is still held
            with pytest.raises(UserError, match="is in use by"):
                files.FolderLock(out, "run").acquire()
            refused.append(path)
        return unlink(path, *args, **kwargs)
    monkeypatch.setattr(Path, "unlink", unlink_while_held)
    holder.release(remove_empty_folder=True)
    monkeypatch.undo()
    assert refused and not out.exists()
    # the next process makes the folder again and keeps it, whatever the last one does
    nxt = files.FolderLock(out, "run", create=True).acquire()
    holder.release(remove_empty_folder=True)  # released already: does nothing
    assert (out / files.LOCK).exists()
    (out / "suite.yaml").write_text("name: x\n")
    nxt.release(remove_empty_folder=True)
    assert (out / "suite.yaml").exists()  # not empty: kept


def test_a_lock_taken_on_a_lock_file_its_holder_removed_is_taken_again(tmp_path, monkeypatch):
    # A process opened the lock file, its holder removed the folder and let go, then the
    # process locked the unlinked file: it must notice and lock the file at the path.
    out = tmp_path / "out"
    out.mkdir()
    stale = os.open(out / files.LOCK, os.O_RDWR | os.O_CREAT)
    (out / files.LOCK).unlink()
    lock = files.FolderLock(out, "run", create=True)
    real_open, opened = lock._open, []
    monkeypatch.setattr(lock, "_open", lambda: opened.append(1) or (stale if len(opened) == 1 else real_open()))
    lock.acquire()
    assert len(opened) == 2 and os.path.samestat(os.fstat(lock._fd), os.stat(out / files.LOCK))
    fds = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
           if os.path.exists(f"/proc/self/fd/{fd}")]
    assert not [f for f in fds if f.endswith("(deleted)") and files.LOCK in f]  # the stale one was closed
    lock.release()


# -- 16. Ctrl-C ------------------------------------------------------------------------

# From interpreter start-up (Python's own site import is before any genbench code) through
# the torch import, plugin loading, data loading and training.
@pytest.mark.parametrize("delay", [0.15, 0.3, 0.45, 0.6, 0.8, 1.2, 2.0, 3.5])
def test_ctrl_c_at_any_moment_is_one_line_and_exit_130(tmp_path, delay, data_root):
    suite = tmp_path / "s.yaml"
    suite.write_text(TINY.replace("budget: {steps: 8}", "budget: {steps: 100000}"))
    command = genbench_cmd() if delay < 1 else [str(Path(sys.executable).parent / "genbench")]  # both entries
    proc = subprocess.Popen(command + ["run", str(suite), "--out", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("genbench: interrupted")


def test_output_checks_name_dtype_and_device():
    from genbench.api import outputs

    model = SmallSamples(genbench.NoOptions(), None)
    cpu = torch.device("cpu")
    with pytest.raises(outputs.ModelOutputError, match=r"sample\(\) returned dtype torch.uint8, expected floating"):
        outputs.images(model, "sample", torch.zeros(2, 1, 28, 28, dtype=torch.uint8), 2, (1, 28, 28), cpu)
    with pytest.raises(outputs.ModelOutputError, match=r"sample\(\) returned a tensor on meta, expected cpu"):
        outputs.images(model, "sample", torch.zeros(2, 1, 28, 28, device="meta"), 2, (1, 28, 28), cpu)
    with pytest.raises(outputs.ModelOutputError, match=r"posterior\(\) returned list, expected a"):
        outputs.posterior(model, [torch.zeros(2, 3)], 2, cpu)
    ok = torch.rand(2, 1, 28, 28)
    assert outputs.images(model, "sample", ok, 2, (1, 28, 28), cpu) is ok


def test_a_missing_or_tampered_extractor_is_refused_before_training(synthetic_dataset, mock_plugins, write_suite,
                                                                     tmp_path, capsys):
    from genbench.api import ExtractorSpec

    weights = tmp_path / "synthetic.pt"
    weights.write_bytes(b"not the pinned weights")

    class Tampered(synthetic_dataset):
        name = "tampered"
        extractor = ExtractorSpec(weights, "0" * 64, num_classes=4, in_channels=3)

    mock_plugins("mock_tampered", register_datasets=lambda register: register(Tampered))
    text = "name: t\ndataset: {name: %s}\nbudget: {steps: 1}\nmetrics: [fid]\nruns: [{model: vae}]\n"
    for dataset, said in (("tampered", f"{weights} has sha256 "), ("synthetic", "ships none: train one with `genbench extractor train")):
        suite = write_suite(text % dataset, f"{dataset}.yaml")
        assert main(["validate", str(suite)]) == 2
        assert said in capsys.readouterr().err
        assert main(["run", str(suite), "--out", str(tmp_path / dataset)]) == 2
        assert said in capsys.readouterr().err and not (tmp_path / dataset).exists()  # nothing trained
