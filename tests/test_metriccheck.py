"""genbench check-metrics: the degradations do what they say, the claims are judged right,
and every built-in sample metric keeps its claims on both shipped extractors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch

import genbench
from genbench.api import extractor as ext
from genbench.api import fidelity
from genbench.cli import main
from genbench.engine import metriccheck
from genbench.engine.metriccheck import LEVELS, Source, degrade, verdict


@pytest.fixture
def source():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(400, 1, 28, 28, generator=g) * 0.5 + 0.25
    return Source(images, torch.arange(400) % 10, torch.rand(300, 1, 28, 28, generator=g), n=200, seed=3)


def test_degradations_do_what_they_say(source):
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    base = source.images[:200]
    assert torch.equal(degrade("blur", 0, source, g()), base)  # strength 0 is the clean images
    noisy = degrade("gaussian_noise", 0.1, source, g())
    assert float((noisy - base).std()) == pytest.approx(0.1, rel=0.02)
    blurred = degrade("blur", 2.0, source, g())
    assert float(blurred.mean()) == pytest.approx(float(base.mean()), rel=0.01) and blurred.std() < 0.3 * base.std()
    salted = degrade("salt_pepper", 0.1, source, g())
    changed = salted != base
    assert float(changed.double().mean()) == pytest.approx(0.1, abs=0.01)
    assert set(salted[changed].unique().tolist()) <= {0.0, 1.0}
    swapped = degrade("uniform_swap", 0.25, source, g())
    assert int((swapped != base).flatten(1).any(1).sum()) == 50  # exactly a quarter of the images
    copies = degrade("train_copies", 0.5, source, g())
    is_train = [any(torch.equal(x, t) for t in source.train) for x in copies]
    assert sum(is_train) == 100
    kept_at = {}
    for dropped in LEVELS["drop_classes"]:
        out = degrade("drop_classes", dropped, source, g())
        labels = {int(source.labels[[torch.equal(x, y) for y in source.images].index(True)]) for x in out[:60]}
        kept_at[dropped] = labels
        assert len(labels) <= 10 - dropped and len(out) == 200
    assert kept_at[9] <= kept_at[8] <= kept_at[5] <= kept_at[2]  # nested: the same classes stay
    few = degrade("one_per_class", 3, source, g())
    assert len({x.numpy().tobytes() for x in few}) == 30


def test_claims_are_judged_on_the_scores():
    rows = [{"degradation": "clean", "level": 0, "metric": "m", "value": 0.9}]
    rows += [{"degradation": "blur", "level": lv, "metric": "m", "value": v}
             for lv, v in zip(LEVELS["blur"], [0.8, 0.6, 0.61, 0.05])]  # a wobble within 5% of the change
    rows += [{"degradation": "uniform_swap", "level": lv, "metric": "m", "value": v}
             for lv, v in zip(LEVELS["uniform_swap"], [0.8, 0.5, 0.9, 0.2])]
    rows += [{"degradation": "drop_classes", "level": lv, "metric": "m", "value": v}
             for lv, v in zip(LEVELS["drop_classes"], [0.92, 0.88, 0.95, 0.9])]
    up = genbench.Metric("m", lambda ctx: 0, higher_is_better=True)
    down = genbench.Metric("m", lambda ctx: 0, higher_is_better=False)
    assert verdict(up, genbench.Claim("blur", bound=0.1), rows)["holds"]
    assert verdict(up, genbench.Claim("uniform_swap", bound=0.3, monotone=False), rows)["holds"]
    assert "above 0.01" in verdict(up, genbench.Claim("blur", bound=0.01), rows)["why"]
    assert "level 3 scores better than level 2" in verdict(up, genbench.Claim("uniform_swap"), rows)["why"]
    assert "no worse than clean" in verdict(down, genbench.Claim("blur"), rows)["why"]
    assert verdict(up, genbench.Claim("drop_classes", "steady", tolerance=0.06), rows)["holds"]
    assert not verdict(up, genbench.Claim("drop_classes", "steady", tolerance=0.04), rows)["holds"]
    with pytest.raises(ValueError, match="unknown degradation 'fog'"):
        genbench.Claim("fog")


def frechet_numpy(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_every_sample_metric_keeps_its_claims_on_the_shipped_extractor(registry, dataset, tmp_path, capsys):
    out = tmp_path / "check"
    code = main(["check-metrics", dataset, "--samples", "2000", "--save-images",
                 "--kid-subsets", "10",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    result = json.loads((out / "check.json").read_text())
    failed = [f"{c['metric']}: {c['claim']}: {c['why']}" for c in result["claims"] if not c["holds"]]
    assert failed == [] and code == 0, printed
    assert {c["metric"] for c in result["claims"]} == {"fid", "kid", "precision", "recall", "density", "coverage",
                                                       "memorization"}
    assert len(result["rows"]) == 29 * 7 and (out / "check.png").stat().st_size > 10000
    assert "claims hold" in printed and "uniform_swap" in (out / "check.md").read_text()

    # the saved images, scored by independent code, give the recorded numbers
    spec = registry.datasets[dataset].extractor
    net = ext.load(spec)
    data, _ = metriccheck.load(registry, dataset, 2000, None, torch.device("cpu"))
    real = ext.extract(net, data.eval.images.float() / 255)[0]
    saved = np.load(out / "images.npz", allow_pickle=False)
    value = {(r["degradation"], r["level"], r["metric"]): r["value"] for r in result["rows"]}
    for key, level in (("clean@0", 0.0), ("uniform_swap@1", 1.0), ("blur@1", 1.0)):
        name = key.split("@")[0]
        fake = ext.extract(net, torch.from_numpy(saved[key]).float() / 255)[0]
        assert value[(name, level, "fid")] == pytest.approx(
            frechet_numpy(real.double().numpy(), fake.double().numpy()), rel=1e-3)
        assert value[(name, level, "precision")] == pytest.approx(fidelity.precision_recall(real, fake, 3)[0],
                                                                  abs=1e-9)
    # the extractor separates what the old one did not: uniform noise is not "precise"
    assert value[("uniform_swap", 1.0, "precision")] < 0.1 and value[("uniform_swap", 1.0, "density")] < 0.1


def test_bad_check_metrics_input_is_one_line(registry, capsys, tmp_path):
    assert main(["check-metrics", "mnsit", "--out", str(tmp_path)]) == 2
    assert "data set 'mnsit' is not installed; did you mean 'mnist'?" in capsys.readouterr().err
    assert main(["check-metrics", "mnist", "--metrics", "fid,bce", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--metrics: 'bce' is not a metric of unconditional samples" in err and "Traceback" not in err
    assert main(["check-metrics", "mnist", "--samples", "10", "--out", str(tmp_path)]) == 2
    assert "--samples and --test-images must be at least 100" in capsys.readouterr().err
