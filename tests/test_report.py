"""Reports of a real (small) suite: figures, tables, report.html, `report` and `compare`."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import image as mpimg

from genbench.cli import main
from genbench.engine import snapshot

SUITE = """
name: reports
dataset: {name: mnist, subset: 1024, test_subset: 600}
budget: {steps: 30}
seeds: [0, 1]
batch_size: 64
metrics: [bce, kl, fid]
evaluation: {num_samples: 600, curve_metrics: [bce], curve_every: 0.5, curve_images: 200}
report: {latent_points: 300}
runs:
  - model: vae
    label: vae
    options: {hidden_dim: 64}
    sweep: {latent_dim: [2, 4]}
  - model: ae
  - model: gan
    options: {hidden_dim: 64}
  - model: cvae
    options: {hidden_dim: 64, latent_dim: 4}
"""
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("report")
    (folder / "suite.yaml").write_text(SUITE)
    assert main(["run", str(folder / "suite.yaml"), "--out", str(folder / "out"), "--device", "cpu"]) == 0
    return folder / "out"


def _runs(out: Path) -> dict[str, Path]:
    """label + seed -> run folder."""
    found = {}
    for path in (out / "runs").iterdir():
        rec = json.loads((path / "record.json").read_text())
        found[f"{rec['label']}/{rec['seed']}"] = path
    return found


def _png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG, path
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    assert image[..., :3].std() > 0.01, f"{path} is blank"
    return image


def test_each_run_gets_the_figures_its_capabilities_allow(out):
    runs = _runs(out)
    expected = {
        "vae[latent_dim=2]/0": {"losses", "reconstructions", "samples", "latent", "interpolation", "traversal",
                                "manifold"},
        "vae[latent_dim=4]/0": {"losses", "reconstructions", "samples", "latent", "interpolation", "traversal"},
        "ae/0": {"losses", "reconstructions"},
        "gan[hidden_dim=64]/0": {"losses", "samples"},
        "cvae[hidden_dim=64,latent_dim=4]/0": {"losses", "reconstructions", "samples", "latent", "interpolation",
                                               "traversal"},
    }
    for key, names in expected.items():
        assert {p.stem for p in runs[key].glob("*.png")} == names, key
        for name in names:
            _png(runs[key] / f"{name}.png")


def test_snapshots_hold_the_same_real_test_images_for_every_run(out, registry):
    import torch

    from genbench.engine.config import load_suite
    from genbench.engine.runner import load_data

    data = load_data(load_suite(out.parent / "suite.yaml", registry), registry, torch.device("cpu"))
    first_of_class = [int(torch.nonzero(data.eval.labels == c)[0]) for c in range(10)]
    snaps = {k: snapshot.load(p / snapshot.SNAPSHOT) for k, p in _runs(out).items()}
    for key, snap in snaps.items():
        assert list(snap["showcase_index"]) == first_of_class, key
        assert np.array_equal(snap["originals"], data.eval.images[first_of_class].numpy())
    cvae = snaps["cvae[hidden_dim=64,latent_dim=4]/0"]
    assert list(cvae["sample_labels"]) == [c for c in range(10) for _ in range(10)]
    pair = cvae["interpolation_pair"]  # a conditional model interpolates within one class
    assert data.eval.labels[pair[0]] == data.eval.labels[pair[1]]
    vae = snaps["vae[latent_dim=2]/0"]
    assert vae["manifold"].shape == (15 * 15, 1, 28, 28) and vae["latent_mean"].shape == (300, 2)
    assert vae["samples"].shape == (100, 1, 28, 28) and vae["samples"].dtype == np.uint8
    # same seed, same figures: sampling for figures is seeded by the run's seed
    again = snapshot.load(_runs(out)["vae[latent_dim=2]/0"] / snapshot.SNAPSHOT)
    assert np.array_equal(again["samples"], vae["samples"])
    assert not np.array_equal(vae["samples"], snaps["vae[latent_dim=2]/1"]["samples"])


def test_training_curves_are_recorded_without_changing_training(out, write_suite, tmp_path):
    rec = json.loads((_runs(out)["vae[latent_dim=4]/0"] / "record.json").read_text())
    # 1024 images / 64 per batch = 16 steps per epoch; 30 steps; every 0.5 epoch -> steps 8, 16, 24
    assert [e["step"] for e in rec["eval_history"]] == [8, 16, 24] and rec["curve_images"] == 200
    assert rec["eval_history"][0]["bce"] > rec["eval_history"][-1]["bce"] > 0
    assert rec["curve_seconds"] > 0
    plain = SUITE.replace("curve_metrics: [bce], ", "").replace("seeds: [0, 1]", "seeds: [0]")
    plain = plain.split("  - model: ae")[0].replace("sweep: {latent_dim: [2, 4]}", "sweep: {latent_dim: [4]}")
    assert main(["run", str(write_suite(plain)), "--out", str(tmp_path / "plain")]) == 0
    (other,) = (tmp_path / "plain" / "runs").iterdir()
    assert json.loads((other / "record.json").read_text())["metrics"] == rec["metrics"]


def test_tables_load_without_cleaning(out):
    frame = pd.read_csv(out / "results.csv")
    assert len(frame) == 10 and set(frame["status"]) == {"ok"}
    for metric in ("bce", "kl", "fid"):
        assert frame[metric].dtype == float
    gan = frame[frame["model"] == "gan"]
    assert gan["bce"].isna().all() and gan["fid"].notna().all()
    assert sorted(frame.loc[frame["model"] == "vae", "options.latent_dim"].unique()) == [2, 4]
    from_json = pd.read_json(out / "results.json")
    pd.testing.assert_frame_equal(from_json[["run_id", "seed", "bce", "fid"]], frame[["run_id", "seed", "bce", "fid"]],
                                  check_dtype=False)
    md = (out / "leaderboard.md").read_text()
    assert "| bce ↓ (nats/image)" in md and "fid ↓" in md and "95% confidence" in md
    assert "- **bce ↓ (nats/image)**: reconstruction binary cross-entropy" in md  # a glossary
    assert "600 samples in the feature space of the data set's shipped classifier" in md
    table = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert len(table) == 5 and sum("**" in line for line in table) >= 3  # best of each column
    gan_row = next(line for line in table if "gan" in line)
    assert gan_row.count("| -") == 2  # bce and kl do not apply to a GAN


def test_suite_figures_compare_configurations(out):
    figures = {p.name for p in (out / "figures").glob("*.png")}
    assert figures == {"reconstructions.png", "samples.png", "sweep_vae_latent_dim.png", "compute_bce.png"}
    recon = _png(out / "figures" / "reconstructions.png")
    ae_only = _png(_runs(out)["ae/0"] / "reconstructions.png")
    assert recon.shape[0] > 2 * ae_only.shape[0]  # original + 4 reconstructing configurations
    _png(out / "figures" / "sweep_vae_latent_dim.png")


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.rows, self.links, self._in_board = [], 0, [], False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "table" and attrs.get("id") == "leaderboard-table":
            self._in_board = True
        if tag == "tr" and self._in_board:
            self.rows += 1
        for key in ("href", "src"):
            if attrs.get(key, "").startswith(("http", "//", "file:")):
                self.links.append(attrs[key])

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_board = False


def test_report_html_is_self_contained(out):
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert page.rows == 1 + 5 and not page.links
    assert len(page.images) >= 3 + 5 * 2
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG


CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0);
  const rows = document.querySelectorAll('#leaderboard-table tbody tr');
  const shown = [...rows].filter(r => r.getBoundingClientRect().height > 0);
  document.title = `CHECK images=${imgs.length} loaded=${ok.length} rows=${rows.length} shown=${shown.length}`;
});
</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_report_opens_in_a_headless_browser(out, tmp_path):
    # The check script goes into a copy: the report itself has no scripts.
    page = tmp_path / "page.html"
    page.write_text((out / "report.html").read_text().replace("</body>", CHECK + "</body>"))
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    title = dom.split("<title>")[1].split("</title>")[0]
    counts = dict(part.split("=") for part in title.split()[1:])
    assert counts["images"] == counts["loaded"] and int(counts["images"]) >= 13, title
    assert counts["rows"] == counts["shown"] == "5", title
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1600", f"--screenshot={shot}", (out / "report.html").as_uri()],
                   capture_output=True, timeout=120)
    _png(shot)


def test_report_command_rebuilds_everything_without_models_or_training(out, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    for path in list(copy.rglob("*.png")) + list(copy.rglob("model.pt")) + [copy / "report.html", copy / "leaderboard.md"]:
        path.unlink()
    assert main(["report", str(copy)]) == 0
    printed = capsys.readouterr().out
    assert "reports: leaderboard" in printed and f"Report: {copy / 'report.html'}" in printed
    assert len(list(copy.rglob("*.png"))) == len(list(out.rglob("*.png")))
    assert (copy / "leaderboard.md").read_text() == (out / "leaderboard.md").read_text()
    for fmt, check in (("md", lambda t: t.startswith("# reports: leaderboard")),
                       ("csv", lambda t: t.splitlines()[0].startswith("run_id,label,model,seed,status")),
                       ("json", lambda t: len(json.loads(t)) == 10),
                       ("html", lambda t: t.startswith("<!DOCTYPE html>"))):
        assert main(["report", str(copy), "--format", fmt, "--no-write"]) == 0
        assert check(capsys.readouterr().out), fmt


def test_tsne_projection_separates_classes(registry):
    from genbench.plugins.datasets import MNIST
    from genbench.render.figures import project

    test = MNIST().load("test", None, download=False)
    x = test.images[:600].flatten(1).float().numpy() / 255
    y = test.labels[:600].numpy()
    for method in ("pca", "tsne"):
        coords, names = project(x, method)
        assert coords.shape == (600, 2) and np.isfinite(coords).all()
        # nearest neighbour in 2-D shares the class far more often than chance (10%)
        dist = ((coords[:, None] - coords[None]) ** 2).sum(-1)
        np.fill_diagonal(dist, np.inf)
        agree = (y[dist.argmin(1)] == y).mean()
        assert agree > (0.8 if method == "tsne" else 0.3), (method, agree)


def test_report_of_a_folder_without_results_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no run records found" in err and "Traceback" not in err
    assert main(["compare", str(tmp_path), str(tmp_path / "nope")]) == 2


def test_compare_shows_differences_and_their_significance(out, write_suite, tmp_path, capsys):
    longer = SUITE.replace("steps: 30", "steps: 120").split("  - model: ae")[0]
    assert main(["run", str(write_suite(longer)), "--out", str(tmp_path / "longer")]) == 0
    capsys.readouterr()
    assert main(["compare", str(out), str(tmp_path / "longer"), "--format", "csv"]) == 0
    import io

    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert set(table["configuration"]) == {"vae[latent_dim=2]", "vae[latent_dim=4]"}
    bce = table[table["metric"] == "bce"]
    assert (bce["delta"] < 0).all() and (bce["verdict"] == "B better").all()  # 4x the steps
    assert main(["compare", str(out), str(tmp_path / "longer")]) == 0
    text = capsys.readouterr().out
    assert "budget" in text and "Only in A: ae" in text
    assert main(["compare", str(out), str(out), "--format", "json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert all(r["delta"] == 0 and r["verdict"] == "tied" for r in same)


def test_compare_leaves_out_sample_metrics_scored_with_different_extractors(out, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(out, other)
    for path in (other / "runs").glob("*/record.json"):  # as if scored with an earlier extractor
        rec = json.loads(path.read_text())
        if "feature_extractor" in rec.get("metric_details", {}):
            rec["metric_details"]["feature_extractor"] = {"name": "genbench-mnist", "sha256": "ab" * 32}
        path.write_text(json.dumps(rec))
    assert main(["compare", str(out), str(other), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["metric"] for r in rows} == {"bce", "kl"}  # fid refused, the rest compared
    assert main(["compare", str(out), str(other), "--format", "md"]) == 0
    text = capsys.readouterr().out
    assert "Not compared: fid" in text and "genbench-mnist\\_v2" in text and "genbench-mnist (abababababab)" in text
    assert main(["compare", str(out), str(out), "--format", "json"]) == 0
    assert "fid" in {r["metric"] for r in json.loads(capsys.readouterr().out)}  # same extractor: compared


def test_report_html_can_be_moved_through(out):
    """Contents with a link to each section and configuration, every seed's figures, the
    command in the footer (issue 27, item 4)."""
    page = (out / "report.html").read_text()
    nav = page.split("<nav class='toc'>", 1)[1].split("</nav>", 1)[0]
    for anchor in ("leaderboard", "configurations", "setup"):
        assert f"href='#{anchor}'" in nav and f"id='{anchor}'" in page
    runs = [json.loads(p.read_text()) for p in out.glob("runs/*/record.json")]
    seeds = {}
    for rec in runs:
        seeds.setdefault(rec["label"], set()).add(rec["seed"])
        assert f"runs/{rec['run_id']}/</code>)</summary>" in page  # this seed's figures are on the page
    for target in (part.split("'", 1)[0] for part in nav.split("href='#")[1:]):
        assert f"id='{target}'" in page
    assert len(nav.split("href='#config-")) - 1 == len(seeds)
    assert "Written by <code>genbench run " in page


def test_per_seed_values_show_enough_digits_to_tell_seeds_apart():
    from genbench.render.html import distinct

    assert distinct([221.059, 221.114, 221.065]) == ["221.059", "221.114", "221.065"]  # 5 digits: 221.06 twice
    assert distinct([0.5, 0.5, None]) == ["0.5", "0.5", "-"]
    assert distinct([1.23456789, 1.23456781]) == ["1.2345679", "1.2345678"]


def _curve_record(label, seed, values, flops_per_point=1e9):
    history = [{"step": 10 * (i + 1), "epoch": i + 1.0, "seconds": 1.0, "flops": flops_per_point * (i + 1), "bce": v}
               for i, v in enumerate(values)]
    return {"run_id": f"{label}-{seed}", "label": label, "model": "vae", "seed": seed, "status": "ok",
            "metrics": {"bce": values[-1]}, "metric_info": {"bce": {"higher_is_better": False, "unit": "nats"}},
            "eval_history": history, "budget_used": {"steps": 10 * len(values), "flops": flops_per_point * len(values)}}


def test_the_compute_crossover_is_found_where_the_curves_cross():
    from genbench.render import compute, leaderboard

    # fast starts ahead (lower bce), slow overtakes it between the 2nd and 3rd point for good
    records = [_curve_record("fast", s, [100 + s, 80 + s, 75 + s, 74 + s]) for s in (0, 1)] + \
              [_curve_record("slow", s, [120 + s, 90 + s, 70 + s, 60 + s]) for s in (0, 1)]
    board = leaderboard.build(records, ["bce"], "bce", "t")
    found = compute.curves(board)
    assert {(c.label, c.seeds) for c in found} == {("fast", 2), ("slow", 2)}
    fast = next(c for c in found if c.label == "fast")
    assert list(fast.flops) == [1e9, 2e9, 3e9, 4e9] and list(fast.mean) == [100.5, 80.5, 75.5, 74.5]
    table = compute.crossovers(found, board.info)
    assert len(table) == 1
    row = table.iloc[0]
    assert row.leader_before == "fast" and row.leader_after == "slow" and row.holds_to_end
    assert 2e9 < row.flops < 3e9  # the means cross between the 2nd and 3rd points (log-linear: ~2.5e9)
    assert row.summary.startswith("slow better than fast from 2.")


def test_a_records_curve_without_flops_takes_its_flops_per_step():
    from genbench.render import compute

    rec = _curve_record("old", 0, [3.0, 2.0])
    for entry in rec["eval_history"]:
        del entry["flops"]  # written before the points kept their FLOPs
    assert compute._points(rec, "bce") == [(1e9, 3.0), (2e9, 2.0)]


def test_the_report_draws_score_against_compute(out):
    page = (out / "report.html").read_text()
    assert "id='compute'" in page and "figures/compute_bce.png" in page
    assert (out / "figures" / "compute_bce.png").is_file()
    table = pd.read_csv(out / "crossovers.csv")
    assert list(table.columns) == ["metric", "flops", "leader_before", "leader_after", "holds_to_end",
                                   "range_end_flops", "summary"]
    recs = [json.loads(p.read_text()) for p in out.glob("runs/*/record.json")]
    assert all("flops" in e for r in recs for e in r.get("eval_history") or [])
