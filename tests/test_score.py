"""`genbench score` and the Python API: samples made elsewhere, scored like a run's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import genbench
from genbench.cli import main
from genbench.engine import reference

REAL = 600  # reference images: the first REAL of MNIST's test split
FAST = ["--real-images", str(REAL), "--metrics", "fid,kid,precision,recall", "--set", "kid.subset_size=200",
        "--set", "kid.subsets=10"]


@pytest.fixture(scope="module")
def mnist_train(data_root) -> np.ndarray:
    """MNIST training images (uint8, N x 28 x 28): samples as good as real, never the reference."""
    from genbench.api.dataset import read_idx

    return read_idx(data_root / "mnist" / "train-images-idx3-ubyte.gz")[:4000]


def fast_api(**more):
    return dict(real_images=REAL, metrics=["fid", "kid", "precision", "recall"],
                options={"kid": {"subset_size": 200, "subsets": 10}}, **more)


def test_check_metrics_images_score_in_the_expected_order_and_to_the_same_numbers(tmp_path, capsys):
    """The degraded images check-metrics saves, scored by `score`, rank real < blurred < noise,
    and their FID is exactly the one check-metrics recorded for them."""
    check = tmp_path / "check"
    main(["check-metrics", "mnist", "--samples", "500", "--test-images", "500", "--metrics", "fid",
          "--save-images", "--out", str(check)])
    capsys.readouterr()
    recorded = {(r["degradation"], r["level"]): r["value"] for r in json.loads((check / "check.json").read_text())["rows"]}
    images = check / "images.npz"
    out = tmp_path / "scored"
    assert main(["score", f"{images}:clean@0", f"{images}:blur@2", f"{images}:uniform_swap@1", "--dataset", "mnist",
                 "--real-images", "500", "--metrics", "fid", "--out", str(out), "--format", "json"]) == 0
    printed = {r["label"]: r["fid"] for r in json.loads(capsys.readouterr().out)}
    fid = {r["label"]: r["metrics"]["fid"] for r in genbench.load_results(out).records}
    assert fid["clean_0"] < fid["blur_2"] < fid["uniform_swap_1"]
    assert fid["clean_0"] == recorded[("clean", 0.0)]
    assert fid["blur_2"] == recorded[("blur", 2.0)]
    assert fid["uniform_swap_1"] == recorded[("uniform_swap", 1.0)]
    assert printed == pytest.approx(fid, rel=1e-9)
    from genbench.api.extractor import file_sha256

    shas = {r["samples"]["sha256"] for r in genbench.load_results(out).records}
    assert shas == {file_sha256(images)}  # the file the arrays came from


TINY_RUN = {"name": "tiny-saved", "dataset": {"name": "mnist", "subset": 512, "test_subset": REAL},
            "budget": {"steps": 6}, "batch_size": 64, "seeds": [0, 1], "metrics": ["fid", "kid"],
            "evaluation": {"num_samples": 300, "save_samples": True}, "runs": [{"model": "vae"}]}


def test_samples_saved_by_a_run_score_to_its_recorded_fid_exactly(tmp_path, capsys):
    tables = genbench.run_suite({**TINY_RUN, "metrics": ["fid", {"name": "kid", "subset_size": 100}]},
                                out=tmp_path / "run", device="cpu")
    assert tables.exit_code == 0 and list(tables.runs["seed"]) == [0, 1]
    assert set(tables.leaderboard.columns) >= {"label", "seeds", "fid", "fid_ci95", "fid_tied", "kid"}
    saved = sorted((tmp_path / "run" / "runs").glob("*/samples.npz"))
    assert len(saved) == 2 and np.load(saved[0])["samples"].shape == (300, 1, 28, 28)
    # named as `vae-seed<k>`, the two files are the two seeds of configuration vae
    for path in saved:
        seed = json.loads((path.parent / "record.json").read_text())["seed"]
        (tmp_path / f"vae-seed{seed}.npz").write_bytes(path.read_bytes())
    out = tmp_path / "scored"
    results = genbench.score_sets([str(tmp_path / "vae-seed*.npz")], "mnist", ["fid", "kid"], real_images=REAL,
                                  options={"kid": {"subset_size": 100}}, out=out)
    recorded = {r["seed"]: r["metrics"] for r in tables.records}
    assert [(r.label, r.seed) for r in results] == [("vae", 0), ("vae", 1)]
    for r in results:
        assert r.scores["fid"] == recorded[r.seed]["fid"] and r.scores["kid"] == recorded[r.seed]["kid"]
        assert r.details["feature_extractor"]["sha256"] == r.record["reference"]["extractor"]["sha256"]
    # the score folder and the run folder compare configuration by configuration
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "run"), str(out), "--format", "json"]) == 0
    compared = json.loads(capsys.readouterr().out)
    fid = [row for row in compared if row["metric"] == "fid"][0]
    assert fid["configuration"] == "vae" and fid["delta"] == 0
    loaded = genbench.load_results(out)
    assert list(loaded.leaderboard["label"]) == ["vae"] and loaded.leaderboard["seeds"][0] == 2
    html = (out / "report.html").read_text()
    assert "samples.png" in html and (out / "figures" / "samples.png").is_file()


def test_an_image_folder_scores_like_the_same_array_and_streams(tmp_path, mnist_train, monkeypatch):
    images = mnist_train[:300]
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, im in enumerate(images):
        # grey saved as RGB with equal channels (as many tools do) reads as grey
        Image.fromarray(im).convert("RGB" if i % 2 else "L").save(folder / f"{i:05d}.png")
    from genbench.engine import samplefiles, score

    monkeypatch.setattr(samplefiles.SampleSet, "all", lambda self: pytest.fail("read all at once"))
    monkeypatch.setattr(score, "STREAM", 256)  # the extraction batch: the same features bit for bit
    reads = []
    real_read = samplefiles.read_image
    monkeypatch.setattr(samplefiles, "read_image", lambda p, s: reads.append(p) or real_read(p, s))
    from_folder = genbench.score(folder, "mnist", ["fid"], real_images=REAL)
    from_array = genbench.score(images, "mnist", ["fid"], real_images=REAL)
    assert from_folder.scores["fid"] == from_array.scores["fid"]
    assert len(reads) == 300 + 1 + 100  # each image once, the first checked up front, the sample grid
    floats = genbench.score(torch.from_numpy(images).float().div(255)[:, None], "mnist", ["fid"], real_images=REAL)
    assert floats.scores["fid"] == from_array.scores["fid"]  # floats are quantised to 8 bits like a run's


def test_the_reference_is_computed_once_cached_by_what_it_depends_on_and_verified(tmp_path, mnist_train, monkeypatch):
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))
    np.save(tmp_path / "a.npy", mnist_train[:1000])
    cold = genbench.score(tmp_path / "a.npy", "mnist", **fast_api())
    assert cold.record["reference"]["from_cache"] == []
    warm = genbench.score(tmp_path / "a.npy", "mnist", **fast_api())
    assert warm.scores == cold.scores and len(warm.record["reference"]["from_cache"]) >= 3
    assert "train_sha256" not in warm.record["reference"]  # no metric read the training images
    # memorization reads them: its entries are keyed by them too, and found again
    memo = [genbench.score(tmp_path / "a.npy", "mnist", ["memorization"], real_images=REAL) for _ in range(2)]
    assert memo[0].scores == memo[1].scores and memo[0].scores["memorization"] == 1.0  # training images
    assert "train_sha256" in memo[1].record["reference"]
    assert any("train_points" in key for key in memo[1].record["reference"]["from_cache"])
    # another image count is another reference: nothing reused
    other = genbench.score(tmp_path / "a.npy", "mnist", **{**fast_api(), "real_images": REAL - 1})
    assert other.record["reference"]["from_cache"] == [] and other.scores["fid"] != cold.scores["fid"]
    # a damaged entry is noticed, computed again, and the scores stand
    entries = sorted((reference.cache_root() / "reference").rglob("*.npz"))
    for path in entries:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    again = genbench.score(tmp_path / "a.npy", "mnist", **fast_api())
    assert again.scores == cold.scores
    no_cache = genbench.score(tmp_path / "a.npy", "mnist", **fast_api(cache=False))
    assert no_cache.scores == cold.scores and no_cache.record["reference"]["from_cache"] == []


def test_a_changed_extractor_never_reuses_an_entry(tmp_path):
    ident = {"dataset": "mnist", "extractor": {"sha256": "a" * 64}}
    stored = reference.StoredCache(tmp_path, ident)
    stored[("features", "domain")] = (torch.ones(3, 2), None)
    assert ("features", "domain") in reference.StoredCache(tmp_path, dict(ident))
    assert ("features", "domain") not in reference.StoredCache(tmp_path, {**ident, "extractor": {"sha256": "b" * 64}})
    value = reference.StoredCache(tmp_path, dict(ident))[("features", "domain")]
    assert torch.equal(value[0], torch.ones(3, 2)) and value[1] is None


def test_exported_reference_statistics_are_plain_npz_and_import_only_where_they_belong(tmp_path, mnist_train, capsys):
    np.save(tmp_path / "a.npy", mnist_train[:1000])
    ref = tmp_path / "ref.npz"
    first = genbench.score(tmp_path / "a.npy", "mnist", **fast_api(cache=False, export_reference=ref))
    with np.load(ref, allow_pickle=False) as npz:  # no pickle anywhere
        assert "meta" in npz.files and all(npz[k].dtype != object for k in npz.files)
    imported = genbench.score(tmp_path / "a.npy", "mnist", **fast_api(cache=False, reference=ref))
    assert imported.scores == first.scores and imported.record["reference"]["imported"]
    code = main(["score", str(tmp_path / "a.npy"), "--dataset", "mnist", "--reference", str(ref),
                 *FAST[:0], "--real-images", "500", "--metrics", "fid", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "computed for another reference" in err and "images" in err
    assert not (tmp_path / "o").exists()
    ref.write_bytes(ref.read_bytes()[:-100])
    assert main(["score", str(tmp_path / "a.npy"), "--dataset", "mnist", "--reference", str(ref), *FAST]) == 2
    assert "not a genbench reference file" in capsys.readouterr().err


def _lying_npz(path: Path) -> None:
    """An .npz whose array header claims 10^9 images: refused before any allocation."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                   "shape": (10**9, 28, 28)})
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("samples.npy", header.getvalue() + b"\0" * 784)


def _pickle(path: Path) -> None:
    import pickle

    path.write_bytes(pickle.dumps({"x": 1}))


BAD = {
    "shape.npy": (lambda p: np.save(p, np.zeros((10, 32, 32), np.uint8)), "shape (10, 32, 32)"),
    "channels.npy": (lambda p: np.save(p, np.zeros((10, 3, 28, 28), np.uint8)), "shape (10, 3, 28, 28)"),
    "dtype.npy": (lambda p: np.save(p, np.zeros((10, 28, 28), np.int64)), "dtype int64"),
    "range.npy": (lambda p: np.save(p, np.full((300, 28, 28), 1.5, np.float32)), "value 1.5"),
    "nan.npy": (lambda p: np.save(p, np.where(np.arange(300)[:, None, None] == 7, np.nan,
                                              np.zeros((300, 28, 28), np.float32))), "image 7 holds a value NaN"),
    "inf.npy": (lambda p: np.save(p, np.full((300, 28, 28), np.inf, np.float32)), "value infinite"),
    "few.npy": (lambda p: np.save(p, np.zeros((50, 28, 28), np.uint8)), "subset_size 200"),
    "object.npz": (lambda p: np.savez(p, samples=np.array([{"a": 1}] * 3, dtype=object)), "not a readable .npz"),
    "pickle.npy": (_pickle, "not a NumPy array file"),
    "lying.npz": (_lying_npz, "declares 784,000,000,000 bytes but holds"),
    "dict.pt": (lambda p: torch.save({"samples": torch.zeros(10, 28, 28)}, p), "holds a dict, not a tensor"),
    "object.pt": (lambda p: torch.save(Path("x"), p), "not a plain tensor file"),
    "text.txt": (lambda p: p.write_text("hello"), "unknown sample format"),
    "empty": (lambda p: p.mkdir(), "no .png, .jpg, .jpeg images"),
    "truncated": (lambda p: (p.mkdir(), Image.new("L", (28, 28), 9).save(p / "a.png"),
                             (p / "b.png").write_bytes((p / "a.png").read_bytes()[:40])), "b.png: not a readable image"),
    "big": (lambda p: (p.mkdir(), Image.new("L", (64, 64)).save(p / "a.png")), "the image is 64x64"),
    "colour": (lambda p: (p.mkdir(), Image.new("RGB", (28, 28), (1, 2, 3)).save(p / "a.png")), "has 3 channels"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_sample_sets_are_one_line_exit_2_and_nothing_written(tmp_path, capsys, name):
    make, expected = BAD[name]
    path = tmp_path / name
    make(path)
    out = tmp_path / "out"
    flags = ["--real-images", str(REAL), "--metrics", "fid"] if path.is_dir() else FAST  # folders of 1 or 2 images
    assert main(["score", str(path), "--dataset", "mnist", *flags, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert expected in err and str(path) in err and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and not out.exists()


def test_sets_are_grouped_as_seeds_and_clashes_are_refused(tmp_path, mnist_train, capsys):
    for i in range(2):
        np.save(tmp_path / f"run{i}.npy", mnist_train[i * 1000:(i + 1) * 1000])
    results = genbench.score_sets([tmp_path / "run0.npy", tmp_path / "run1.npy"], "mnist", group="mine",
                                  **fast_api())
    assert [(r.label, r.seed) for r in results] == [("mine", 0), ("mine", 1)]
    np.save(tmp_path / "a-seed1.npy", mnist_train[:1000])
    np.save(tmp_path / "a_seed1.npy", mnist_train[:1000])
    assert main(["score", str(tmp_path / "a-seed1.npy"), str(tmp_path / "a_seed1.npy"), "--dataset", "mnist",
                 *FAST]) == 2
    assert "configuration 'a' seed 1 is also" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "a-seed1.npy"), "--dataset", "mnist", "--metrics", "elbo"]) == 2
    assert "needs a model, not only samples" in capsys.readouterr().err
    assert main(["score", str(tmp_path / "a-seed1.npy"), "--dataset", "mnist", "--metrics", "cond_accuracy"]) == 2
    assert "--labels" in capsys.readouterr().err


def test_labels_enable_the_conditional_metrics(tmp_path, data_root):
    from genbench.api.dataset import read_idx

    images = read_idx(data_root / "mnist" / "train-images-idx3-ubyte.gz")[:2000]
    labels = read_idx(data_root / "mnist" / "train-labels-idx1-ubyte.gz")[:2000]
    (tmp_path / "labels.txt").write_text("\n".join(map(str, labels)))
    right = genbench.score(images, "mnist", ["cond_accuracy", "fid_per_class"], labels=tmp_path / "labels.txt",
                           real_images=2000)
    wrong = genbench.score(images, "mnist", ["cond_accuracy"], labels=(labels + 1) % 10, real_images=2000)
    assert right.scores["cond_accuracy"] > 0.95 and wrong.scores["cond_accuracy"] < 0.05
    assert len(right.details["fid_per_class"]["per_class"]) == 10


def test_a_third_party_sample_metric_is_scored_too(mock_plugins, mnist_train):
    """A plugin's metric that declares it needs only samples joins the default metrics."""
    def brightness(ctx):
        return float(ctx.samples.mean()), {"features": int(ctx.sample_features[0].shape[1])}
    metric = genbench.Metric("brightness", brightness, {genbench.Capability.SAMPLE}, uses_samples=True)
    mock_plugins("mock_brightness", register_metrics=lambda register: register(metric))
    from genbench.engine import pluginmanager, score

    defaults = score.choose_metrics(pluginmanager.get_registry(), (), labelled=False)
    assert "brightness" in [m.name for m in defaults]
    result = genbench.score(mnist_train[:500], "mnist", ["brightness", "fid"], real_images=REAL)
    assert result.scores["brightness"] == pytest.approx(mnist_train[:500].mean() / 255, rel=1e-5)
    assert result.details["brightness"] == {"features": 128}


@pytest.mark.slow
def test_inception_features_from_a_local_weights_file(tmp_path, monkeypatch, mnist_train, capsys):
    """The Inception path end to end, with weights the test makes (none can be downloaded)."""
    from genbench.api import extractor as ext
    from genbench.api import fidelity

    fidelity.torch_fidelity()
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    with monkeypatch.context() as m:  # a randomly initialised network, never a download
        m.setattr(inception, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        torch.manual_seed(0)
        net = inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    weights = tmp_path / "inception.pth"
    torch.save(net.state_dict(), weights)
    np.save(tmp_path / "s.npy", mnist_train[:12])
    assert main(["score", str(tmp_path / "s.npy"), "--dataset", "mnist", "--extractor", "inception"]) == 2
    assert "--extractor-weights FILE" in capsys.readouterr().err
    result = genbench.score(mnist_train[:12], "mnist", ["fid"], extractor="inception", extractor_weights=str(weights),
                            real_images=12)
    assert result.details["feature_extractor"] == {"name": "inception-v3-compat", "weights": str(weights),
                                                   "sha256": ext.file_sha256(weights)}
    assert result.record["reference"]["extractor"]["sha256"] == ext.file_sha256(weights)
    assert result.scores["fid"] is not None and result.scores["fid"] > 0


def test_the_validation_split_is_a_reference_too(mnist_train):
    """--split validation: 10,000 training images held out (the same ones as a suite's
    dataset.validation: 10000), recorded as the reference."""
    result = genbench.score(mnist_train[:1000], "mnist", ["fid"], split="validation", real_images=REAL)
    assert result.record["reference"]["split"] == "validation" and result.record["eval_split"] == "validation"
    # another reference, another FID
    test = genbench.score(mnist_train[:1000], "mnist", ["fid"], real_images=REAL)
    assert result.scores["fid"] != test.scores["fid"] and result.record["reference"]["images"] == REAL
