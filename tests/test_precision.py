"""The suite's training: section: bf16/fp16 autocast, the fp16 gradient scaler, torch.compile
(issue 11, item 5). All on the CPU, which runs both autocast dtypes."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import genbench
from genbench.cli import main
from genbench.engine import precision
from genbench.engine.config import load_suite
from genbench.engine.pluginmanager import get_registry
from genbench.engine.precision import TrainingOptions
from genbench.engine.train import NeedsOptimize, train
from genbench.testing import tiny_data

SUITE = """
name: prec
dataset: {{name: mnist, subset: 512, test_subset: 128}}
budget: {{steps: 12}}
batch_size: 64
metrics: [bce, kl]
{training}
runs:
  - model: vae
    options: {{hidden_dim: 32, latent_dim: 4}}
"""


def _train(options: TrainingOptions, model_name: str = "vae", steps: int = 30, **model_options):
    data = tiny_data(n=256)
    cls = get_registry().models[model_name]
    torch.manual_seed(0)
    model = cls(cls.Options(**model_options), data.info)
    model.optimizers = model.configure_optimizers()
    wrap = precision.prepare(model, options, torch.device("cpu"))
    return model, train(model, data, {"steps": steps}, 64, seed=0, precision=wrap)


class DtypeSpy(nn.Module):
    """Records the dtype its input arrives in (autocast casts a Linear's output)."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.dtype] = []

    def forward(self, x):
        self.seen.append(x.dtype)
        return x


@pytest.mark.parametrize("name, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_low_precision_runs_the_products_in_that_dtype_and_trains_like_fp32(name, dtype):
    model32, fp32 = _train(TrainingOptions())
    model, low = _train(TrainingOptions(precision=name))
    spy = DtypeSpy()
    model32.encoder.append(spy)  # after the first Linear + ReLU
    model32.train_step(genbench.Batch(torch.rand(8, 1, 28, 28), torch.zeros(8, dtype=torch.long)),
                     genbench.Step(0, 0, 0.0))
    assert spy.seen == [torch.float32]  # outside the harness's autocast: float32 as written
    spy.seen.clear()
    with precision.Precision(TrainingOptions(precision=name), torch.device("cpu")).autocast():
        model32.train_step(genbench.Batch(torch.rand(8, 1, 28, 28), torch.zeros(8, dtype=torch.long)),
                         genbench.Step(0, 0, 0.0))
    assert spy.seen == [dtype]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32
    assert low.used["steps"] == fp32.used["steps"] == 30
    start, end32, end = fp32.history[0]["loss"], fp32.final["loss"], low.final["loss"]
    assert end < 0.8 * start  # it learns...
    assert abs(end - end32) < 0.05 * end32  # ...about as well as in float32
    if name == "fp16":
        assert low.throughput["grad_scale"] > 0  # the scaler ran and its scale is recorded
    else:
        assert "grad_scale" not in low.throughput


def test_fp16_steps_every_optimizer_of_a_gan_through_one_scaler():
    model, result = _train(TrainingOptions(precision="fp16"), "gan", steps=6, hidden_dim=16, latent_dim=4)
    scaler = model.grad_scaler
    assert isinstance(scaler, torch.amp.GradScaler)
    assert model.optimize_calls == 12  # discriminator and generator, every step
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert result.throughput["grad_scale"] == scaler.get_scale()


class ManualBackward(genbench.Model):
    """Steps its optimizer itself, bypassing Model.optimize (and so the fp16 scaler)."""

    name = "manual_backward"
    capabilities = frozenset()

    def __init__(self, options, data):
        super().__init__(options, data)
        self.net = nn.Linear(data.num_pixels, 1)

    def configure_optimizers(self):
        return {"sgd": torch.optim.SGD(self.parameters(), lr=0.01)}

    def train_step(self, batch, step):
        loss = self.net(batch.x.flatten(1)).pow(2).mean()
        opt = self.optimizers["sgd"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.detach()}


def test_fp16_refuses_a_model_that_steps_past_the_scaler_and_other_precisions_accept_it():
    data = tiny_data(n=128)
    for name, fails in (("fp16", True), ("bf16", False), ("fp32", False)):
        model = ManualBackward(genbench.NoOptions(), data.info)
        model.optimizers = model.configure_optimizers()
        wrap = precision.prepare(model, TrainingOptions(precision=name), torch.device("cpu"))
        if fails:
            with pytest.raises(NeedsOptimize, match=r"self\.optimize\(loss, optimizer\)"):
                train(model, data, {"steps": 3}, 64, seed=0, precision=wrap)
        else:
            assert train(model, data, {"steps": 3}, 64, seed=0, precision=wrap).used["steps"] == 3


def test_compile_trains_the_same_steps_keeps_the_state_dict_and_compiles_off_the_clock():
    eager_model, eager = _train(TrainingOptions(), hidden_dim=32, latent_dim=4, steps=10)
    model, compiled = _train(TrainingOptions(compile=True), hidden_dim=32, latent_dim=4, steps=10)
    assert all(child._compiled_call_impl is not None for child in model.children())
    assert model.state_dict().keys() == eager_model.state_dict().keys()
    assert compiled.used["steps"] == eager.used["steps"] and compiled.used["flops"] == eager.used["flops"]
    # 256 images in batches of 64: one kind of step, counted then compiled, both untimed
    assert compiled.throughput["untimed_seconds"] > compiled.used["seconds"]
    for a, b in zip(eager.history, compiled.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)


def test_training_settings_are_recorded_and_hashed_only_when_not_the_default(tmp_path, write_suite, data_root):
    reg = get_registry()
    plain = load_suite(write_suite(SUITE.format(training=""), "plain.yaml"), reg)
    same = load_suite(write_suite(SUITE.format(training="training: {precision: fp32, compile: false}"), "same.yaml"),
                      reg)
    bf16 = load_suite(write_suite(SUITE.format(training="training: {precision: bf16}"), "bf16.yaml"), reg)
    run = plain.runs[0]
    assert "training" not in plain.run_config(run)  # folders written before keep their hashes
    assert plain.run_hash(run) == same.run_hash(same.runs[0])
    assert bf16.run_config(bf16.runs[0])["training"] == {"precision": "bf16"}
    assert bf16.run_hash(bf16.runs[0]) != plain.run_hash(run)
    out = tmp_path / "out"
    assert main(["run", str(write_suite(SUITE.format(training="training: {precision: bf16}"))), "--out", str(out)]) == 0
    rec = json.loads(next(out.glob("runs/*/record.json")).read_text())
    assert rec["status"] == "ok" and rec["training"] == {"precision": "bf16", "compile": False}
    assert rec["config_hash"] == bf16.run_hash(bf16.runs[0])


@pytest.mark.parametrize("training, message", [
    ("{precision: fp8}", "training.precision: 'fp8' is not valid; valid: bf16, fp16, fp32"),
    ("{compile: maybe}", "training.compile:"),
    ("{precison: bf16}", "training.precison: unknown option"),
])
def test_bad_training_settings_are_one_line_each(write_suite, capsys, training, message):
    path = write_suite(SUITE.format(training=f"training: {training}"))
    assert main(["validate", "--no-data", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_precision_the_device_cannot_run_and_a_missing_compiler_are_refused():
    meta = torch.device("meta")  # autocast has no kernels for it: stands in for such a device
    (path, problem), = precision.check(TrainingOptions(precision="bf16"), meta)
    assert path == ("training", "precision") and problem.startswith("bf16 cannot run on meta:")
    from torch._inductor import config as inductor
    from torch._inductor.cpp_builder import cpp_compiler_search
    before = inductor.cpp.cxx
    inductor.cpp.cxx = ("no-such-c++-compiler",)
    cpp_compiler_search.cache_clear()
    try:
        (path, problem), = precision.check(TrainingOptions(compile=True), torch.device("cpu"))
    finally:
        inductor.cpp.cxx = before
        cpp_compiler_search.cache_clear()
    assert path == ("training", "compile") and "torch.compile is unavailable here" in problem
    assert precision.check(TrainingOptions(precision="bf16", compile=True), torch.device("cpu")) == []



ENTRIES = """
name: entries
dataset: {name: mnist, subset: 512, test_subset: 128, validation: 128}
budget: {steps: 6}
batch_size: 64
metrics: [bce]
training: {precision: bf16}
trials: 2
runs:
  - model: vae
    options: {hidden_dim: 32, latent_dim: 4}
  - model: vae
    options: {hidden_dim: 32, latent_dim: 4}
    training: {precision: fp32}
  - model: ae
    training: {precision: fp16}
    search:
      lr: {loguniform: [1.0e-3, 1.0e-2]}
"""


def test_a_run_entry_sets_its_own_training_over_the_suites(write_suite):
    from genbench.engine.search import _trial_run
    reg = get_registry()
    suite = load_suite(write_suite(ENTRIES), reg)
    inherited, own = suite.runs
    assert own.label == "vae[hidden_dim=32,latent_dim=4,precision=fp32]"  # told apart on the leaderboard
    assert suite.training_of(inherited).precision == "bf16" and suite.training_of(own).precision == "fp32"
    assert suite.run_config(inherited)["training"] == {"precision": "bf16"}
    first = "  - model: vae\n    options: {hidden_dim: 32, latent_dim: 4}\n"
    plain = load_suite(write_suite(ENTRIES.replace("training: {precision: bf16}\n", "").replace(first, "", 1)
                                   .replace("    training: {precision: fp32}\n", ""), "plain.yaml"), reg)
    assert suite.run_hash(own) == plain.run_hash(plain.runs[0])  # fp32 is fp32, wherever it is written
    search, = suite.searches
    trial = _trial_run(suite, reg, search, 0, {"lr": 2e-3})
    assert suite.training_of(trial) == TrainingOptions(precision="fp16")
    assert [c.get("training") for c in suite.resolved()["runs"]] == [
        None, {"precision": "fp32", "compile": False}, {"precision": "fp16", "compile": False}]
    meta = torch.device("meta")  # no autocast kernels: each setting that cannot run is named where it is written
    assert [path for path, _ in precision.check_suite(suite, meta)] == [
        ("training", "precision"), ("runs", 2, "training", "precision")]


def test_a_bad_run_entry_training_is_one_line_naming_the_entry(write_suite, capsys):
    path = write_suite(ENTRIES.replace("training: {precision: fp32}", "training: {precision: fp8}"))
    assert main(["validate", "--no-data", str(path)]) == 2
    err = capsys.readouterr().err
    assert "runs[1].training.precision: 'fp8' is not valid" in err and len(err.strip().splitlines()) == 1


def test_runs_of_one_suite_train_and_record_each_its_own_precision(tmp_path, write_suite, data_root):
    text = SUITE.format(training="") + "  - model: vae\n    options: {hidden_dim: 32, latent_dim: 4}\n" \
                                       "    training: {precision: bf16}\n"
    path, out = write_suite(text), tmp_path / "out"
    assert main(["run", str(path), "--out", str(out)]) == 0
    suite = load_suite(path, get_registry())
    records = {r["label"]: r for r in map(json.loads, (p.read_text() for p in out.glob("runs/*/record.json")))}
    assert {k: r["training"]["precision"] for k, r in records.items()} == {
        "vae[hidden_dim=32,latent_dim=4]": "fp32", "vae[hidden_dim=32,latent_dim=4,precision=bf16]": "bf16"}
    assert sorted(r["config_hash"] for r in records.values()) == sorted(map(suite.run_hash, suite.runs))
    assert main(["run", str(out / "suite.yaml"), "--out", str(out), "--resume"]) == 0  # the written suite resumes
    assert len(list(out.glob("runs/*/record.json"))) == 2
