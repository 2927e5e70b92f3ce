"""``genbench check-metrics``: do the sample metrics respond to the defects they claim to?

Real held-out images (a class-stratified validation split of the training set, never
trained on by anything here) are degraded in known ways at four strengths and scored as
if a model had generated them, against the test split, through the same metric code
and feature extractor as a suite. Each metric's :class:`~genbench.api.metric.Claim`\\ s
are then checked against the scores. Every draw comes from generators seeded by
``seed``, so the degraded images are the same on every machine.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..api.dataset import to_float
from ..api.metric import DEGRADATIONS, Claim, EvalOptions, Metric
from ..api.model import Capability, Model, NoOptions
from ..errors import UserError, did_you_mean
from .config import DatasetConfig
from .data import DeviceData, prepare
from .evaluate import derive_seed, evaluate
from .pluginmanager import Registry

# The strengths of each degradation (level 0, shared by all, is the clean images).
LEVELS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.05, 0.1, 0.2, 0.4),   # noise standard deviation (images in [0, 1])
    "blur": (0.5, 1.0, 1.5, 2.0),              # Gaussian blur sigma, pixels
    "salt_pepper": (0.02, 0.05, 0.1, 0.2),     # share of pixels set to 0 or 1
    "uniform_swap": (0.1, 0.25, 0.5, 1.0),     # share of images replaced by uniform noise
    "drop_classes": (2, 5, 8, 9),              # classes left out (of 10)
    "one_per_class": (50, 10, 3, 1),           # distinct images kept per class, repeated
    "train_copies": (0.1, 0.25, 0.5, 1.0),     # share of images replaced by training images
}
assert tuple(LEVELS) == DEGRADATIONS


@dataclasses.dataclass
class Source:
    """What the degradations draw from: held-out real images and the training images."""

    images: Tensor   # floats in [0, 1], (N, C, H, W)
    labels: Tensor
    train: Tensor    # floats in [0, 1]
    n: int           # images per degraded set
    seed: int = 0


def _blur(x: Tensor, sigma: float) -> Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    w = w / w.sum()
    c = x.shape[1]
    x = F.pad(x, (radius,) * 4, mode="reflect")
    x = F.conv2d(x, w.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(x, w.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def _repeat_to(index: Tensor, n: int, g: Tensor | torch.Generator) -> Tensor:
    """``n`` indices cycling through ``index`` in a random order (each used equally often)."""
    order = index[torch.randperm(len(index), generator=g)]
    return order.repeat(-(-n // len(order)))[:n]


def degrade(name: str, level: float, src: Source, g: torch.Generator) -> Tensor:
    """``src.n`` images with degradation ``name`` at strength ``level`` (0: clean)."""
    n = src.n
    base = src.images[:n]
    if level == 0:
        return base.clone()
    if name == "gaussian_noise":
        return (base + level * torch.randn(base.shape, generator=g)).clamp(0, 1)
    if name == "blur":
        return _blur(base, level).clamp(0, 1)
    if name == "salt_pepper":
        u = torch.rand(base.shape, generator=g)
        out = base.clone()
        out[u < level / 2] = 0.0
        out[(u >= level / 2) & (u < level)] = 1.0
        return out
    if name in ("uniform_swap", "train_copies"):
        out = base.clone()
        swap = torch.randperm(n, generator=g)[:round(level * n)]
        if name == "uniform_swap":
            out[swap] = torch.rand((len(swap), *base.shape[1:]), generator=g)
        else:
            out[swap] = src.train[torch.randperm(len(src.train), generator=g)[:len(swap)]]
        return out
    classes = int(src.labels.max()) + 1
    if name == "drop_classes":  # nested: the classes kept at a level are kept at every weaker one
        order = torch.randperm(classes, generator=torch.Generator().manual_seed(src.seed))
        kept = order[:classes - int(level)]
        index = torch.nonzero(torch.isin(src.labels, kept))[:, 0]
        return src.images[_repeat_to(index, n, g)]
    if name == "one_per_class":
        per_class = [torch.nonzero(src.labels == c)[:int(level), 0] for c in range(classes)]
        return src.images[_repeat_to(torch.cat(per_class), n, g)]
    raise ValueError(f"unknown degradation {name!r}")


class Replay(Model):
    """A 'model' whose samples are given images, in order."""

    name = "check-metrics"
    capabilities = frozenset({Capability.SAMPLE})

    def __init__(self, images: Tensor, data):
        super().__init__(NoOptions(), data.info)
        self.images, self.at = images, 0

    def train_step(self, batch, step):  # pragma: no cover - never trained
        raise NotImplementedError

    def sample(self, n, labels=None):
        out = self.images[self.at:self.at + n]
        self.at += n
        return out


def sample_metrics(registry: Registry, names: list[str] | None) -> list[Metric]:
    """The metrics to check: those named, or every one that scores unconditional samples."""
    usable = {name: m for name, m in sorted(registry.metrics.items())
              if m.uses_samples and m.requires <= {Capability.SAMPLE}}
    if not names:
        return list(usable.values())
    for name in names:
        if name not in usable:
            hint = did_you_mean(name, usable)
            raise UserError(f"--metrics: '{name}' is not a metric of unconditional samples{hint}; "
                            f"these are: {', '.join(usable)}")
    return [usable[n] for n in names]


def _options(metric: Metric, n: int, eval_size: int, kid_subsets: int | None = None):
    options = metric.default_options()
    if options is not None and hasattr(options, "subset_size"):  # KID's subsets must fit
        options = dataclasses.replace(options, subset_size=min(options.subset_size, n, eval_size))
        if kid_subsets:
            options = dataclasses.replace(options, subsets=kid_subsets)
    return options


def load(registry: Registry, dataset: str, samples: int, test_images: int | None,
         device: torch.device, seed: int = 0) -> tuple[DeviceData, Source]:
    if dataset not in registry.datasets:
        raise UserError(f"data set '{dataset}' is not installed{did_you_mean(dataset, registry.datasets)}")
    held_out = max(samples, 10000)
    data = prepare(registry.datasets[dataset](), DatasetConfig(name=dataset, validation=held_out,
                                                               test_subset=test_images), device, download=False)
    if data.extractor is None:
        raise UserError(f"data set '{dataset}' ships no feature extractor to check")
    order = torch.randperm(held_out, generator=torch.Generator().manual_seed(0))  # mixed classes
    src = Source(to_float(data.validation.images.cpu())[order], data.validation.labels.cpu()[order],
                 to_float(data.train.images.cpu()), samples, seed)
    return data, src


def run(registry: Registry, dataset: str, samples: int = 5000, seed: int = 0, metrics: list[str] | None = None,
        test_images: int | None = None, device: torch.device | str = "cpu",
        keep_images: Callable[[str, float, Tensor], None] | None = None,
        say: Callable[[str], None] = print, kid_subsets: int | None = None) -> dict:
    """Score every degradation at every level; return the rows, the claims' verdicts and
    what was used (extractor, counts)."""
    device = torch.device(device)
    chosen = sample_metrics(registry, metrics)
    data, src = load(registry, dataset, samples, test_images, device, seed)
    options = {m.name: _options(m, samples, len(data.eval), kid_subsets) for m in chosen}
    eval_options = EvalOptions(num_samples=samples)
    rows, details = [], {}
    plan = [("clean", 0.0)] + [(name, level) for name in DEGRADATIONS for level in LEVELS[name]]
    for i, (name, level) in enumerate(plan):
        g = torch.Generator().manual_seed(derive_seed(seed, f"{name}:{level}"))
        images = degrade(name, level, src, g)
        if keep_images is not None:
            keep_images(name, level, images)
        scores, info = evaluate(Replay(images.to(device), data), data, chosen, eval_options, seed, options)
        details.setdefault("feature_extractor", info.get("feature_extractor"))
        for metric in chosen:
            rows.append({"degradation": name, "level": level, "metric": metric.name, "value": scores[metric.name]})
        say(f"[{i + 1}/{len(plan)}] {name} {level:g}: " + ", ".join(
            f"{m.name} {_fmt(scores[m.name])}" for m in chosen))
    verdicts = [verdict(m, c, rows) for m in chosen for c in m.claims]
    return {"dataset": dataset, "samples": samples, "test_images": len(data.eval), "held_out_pool": len(src.images),
            "train_images": len(src.train), "seed": seed, "feature_extractor": details["feature_extractor"],
            "levels": {k: list(v) for k, v in LEVELS.items()}, "rows": rows, "claims": verdicts,
            "metric_options": {k: dataclasses.asdict(v) for k, v in options.items() if v is not None},
            "metrics": {m.name: {"higher_is_better": m.higher_is_better, "unit": m.unit} for m in chosen}}


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def series(rows: list[dict], metric: str, degradation: str) -> list[float | None]:
    """The metric's scores at levels 0 (clean) to 4 of one degradation."""
    clean = [r["value"] for r in rows if r["metric"] == metric and r["degradation"] == "clean"]
    return clean + [r["value"] for r in rows if r["metric"] == metric and r["degradation"] == degradation]


def verdict(metric: Metric, claim: Claim, rows: list[dict]) -> dict:
    """Whether ``claim`` holds on the scores, and why not."""
    values = series(rows, metric.name, claim.degradation)
    out = {"metric": metric.name, "claim": claim.describe(metric.higher_is_better),
           "degradation": claim.degradation, "values": values}
    if any(v is None for v in values):
        return {**out, "holds": False, "why": "a score is missing"}
    # "badness": larger is worse, whatever the metric's direction
    bad = [-v if metric.higher_is_better else v for v in values]
    if claim.expect == "steady":
        far = max(abs(v - values[0]) for v in values)
        return {**out, "holds": far <= claim.tolerance,
                "why": "" if far <= claim.tolerance else f"moves {far:.3g} from clean, more than {claim.tolerance:g}"}
    change = bad[-1] - bad[0]
    slack = 0.05 * abs(change)
    if change <= 0:
        return {**out, "holds": False, "why": f"the strongest level scores {values[-1]:.4g}, no worse than "
                                              f"clean {values[0]:.4g}"}
    for i in range(1, len(bad) if claim.monotone else 0):
        if bad[i] < bad[i - 1] - slack:
            return {**out, "holds": False, "why": f"level {i} scores better than level {i - 1} "
                                                  f"({values[i]:.4g} vs {values[i - 1]:.4g})"}
    if claim.bound is not None:
        limit = -claim.bound if metric.higher_is_better else claim.bound
        if bad[-1] < limit:
            word = "above" if metric.higher_is_better else "below"
            return {**out, "holds": False, "why": f"the strongest level scores {values[-1]:.4g}, {word} "
                                                  f"{claim.bound:g}"}
    return {**out, "holds": True, "why": ""}
