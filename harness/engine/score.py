"""``genbench score``: sample sets made elsewhere, scored like the samples of a run.

Each set is replayed as the samples of a model that has nothing else (:class:`Given`),
through the same :func:`~genbench.engine.evaluate.evaluate`, metrics, feature extractor
and seeded streams as ``genbench run``; its features are computed a batch at a time.
The real side comes from :mod:`reference` (computed once per reference, then read
from the cache). Every set is checked and scored before anything is written, and the
folder written is a results folder like ``run``'s, so ``report`` and ``compare`` read it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from ..api import fidelity, options as opt
from ..api.extractor import ExtractorFile, file_sha256
from ..api.metric import EvalContext, EvalOptions, Metric
from ..api.model import Capability, DataInfo, Model, NoOptions
from ..errors import UserError, did_you_mean
from ..results import files, record, schema
from . import reference, snapshot
from .config import DatasetConfig, metric_entry
from .data import DeviceData, load_split, prepare
from .evaluate import check_metrics, evaluate
from .pluginmanager import Registry
from .samplefiles import BadSamples, SampleSet, split_key

ALLOWED = frozenset({Capability.SAMPLE, Capability.CONDITIONAL})
# Images read and featurised at a time: a multiple of the extraction batches (256 on a
# CPU, 4096 on a GPU), so a set's features are bit for bit those of the same images in a run.
STREAM = 8192


@dataclasses.dataclass(frozen=True)
class Settings:
    """What ``genbench score`` is asked: the reference, the metrics and where results go."""

    dataset: str
    split: str = "test"                  # test, or validation (10,000 training images held out)
    metrics: tuple[str, ...] = ()        # empty: every metric that needs only samples
    metric_options: dict = dataclasses.field(default_factory=dict)  # name -> {option: value}
    extractor: str = "domain"            # domain, inception, or a trained extractor's weights file
    extractor_weights: str | None = None
    real_images: int | None = None       # score against only the first N reference images
    cache: bool = True
    reference: Path | None = None        # an exported reference to use (checked to be this one)
    device: str = "cpu"


class Given(Model):
    """A 'model' whose samples are a given set, in order (by asked class when labelled)."""

    name = "samples"
    capabilities = frozenset({Capability.SAMPLE})

    @staticmethod
    def of(samples: SampleSet, data: DeviceData) -> Given:
        return (Labelled if samples.labels is not None else Given)(samples, data)

    def __init__(self, samples: SampleSet, data: DeviceData):
        super().__init__(NoOptions(), data.info)
        self.set, self.where = samples, data.eval.images.device

    def train_step(self, batch, step):  # pragma: no cover - never trained
        raise NotImplementedError

    def sample(self, n: int, labels: Tensor | None = None) -> Tensor:
        """The first ``n`` images, or for each asked class the next image of that class."""
        if labels is None:  # a set smaller than the grid repeats
            return self.set.take([i % self.set.count for i in range(n)]).to(self.where)
        pools = {int(c): (self.set.labels == c).nonzero()[:, 0].tolist() for c in labels.unique().tolist()}
        used = {c: 0 for c in pools}
        index = []
        for c in labels.tolist():
            pool = pools[int(c)] or [0]
            index.append(pool[used[int(c)] % len(pool)])
            used[int(c)] += 1
        return self.set.take(index).to(self.where)


class Labelled(Given):
    """Given samples with the class of each: scored as a conditional model's."""

    capabilities = frozenset({Capability.SAMPLE, Capability.CONDITIONAL})


def quantised(images: Tensor) -> Tensor:
    """To 8 bits, as a run's samples and the real images are."""
    return images.mul(255).round_().div_(255)


class ScoreContext(EvalContext):
    """What metrics see of a given sample set: features computed a batch at a time."""

    @functools.cached_property
    def samples(self) -> Tensor:  # only a metric in pixel space asks for all of them at once
        return quantised(self.model.set.all()).to(self.device)

    @functools.cached_property
    def sample_labels(self) -> Tensor | None:
        labels = self.model.set.labels
        return None if labels is None else labels.to(self.device)

    @functools.cached_property
    def sample_features(self) -> tuple[Tensor, Tensor | None]:
        feats, logits = [], []
        for batch in self.model.set.batches(STREAM):
            f, lg = fidelity.features(self, quantised(batch).to(self.device))
            feats.append(f)
            logits.append(lg)
        return torch.cat(feats), None if logits[0] is None else torch.cat(logits)


def choose_metrics(registry: Registry, names: tuple[str, ...], labelled: bool) -> list[Metric]:
    """The metrics asked for, each checked to need only (labelled) samples."""
    usable = {n: m for n, m in registry.metrics.items() if m.uses_samples and m.requires <= ALLOWED}
    if not names:
        return [m for m in usable.values() if labelled or Capability.CONDITIONAL not in m.requires]
    out = []
    for name in names:
        if name not in registry.metrics:
            raise UserError(f"--metrics: '{name}' is not an installed metric{did_you_mean(name, registry.metrics)}")
        if name not in usable:
            raise UserError(f"--metrics: '{name}' needs a model, not only samples ({', '.join(sorted(c.value for c in registry.metrics[name].requires))}); "
                            f"these score samples: {', '.join(usable)}")
        if Capability.CONDITIONAL in usable[name].requires and not labelled:
            raise UserError(f"--metrics: '{name}' needs the class of each sample: give --labels FILE or an .npz "
                            f"with a 'labels' array")
        out.append(usable[name])
    return out


def metric_options(registry: Registry, metrics: list[Metric], given: dict) -> dict[str, Any]:
    """Each metric's options: its defaults, with ``--set METRIC.OPTION=VALUE`` applied and checked."""
    chosen = {m.name for m in metrics}
    unknown = sorted(set(given) - chosen)
    if unknown:
        raise UserError(f"--set {unknown[0]}.…: '{unknown[0]}' is not among the metrics scored "
                        f"({', '.join(sorted(chosen))})")
    out = {}
    for m in metrics:
        if m.Options is None:
            if m.name in given:
                raise UserError(f"--set {m.name}.…: metric '{m.name}' has no options")
            out[m.name] = None
            continue
        built, errors = opt.build(m.Options, given.get(m.name, {}), (m.name,))
        if errors:
            path, message = errors[0]
            raise UserError(f"--set {'.'.join(map(str, path))}: {message}")
        out[m.name] = built
    return out


def load_reference(registry: Registry, settings: Settings, warnings: list[str]) -> tuple[DeviceData, EvalOptions]:
    """The reference images on the device, with the cache of their statistics attached."""
    if settings.dataset not in registry.datasets:
        raise UserError(f"--dataset: '{settings.dataset}' is not installed{did_you_mean(settings.dataset, registry.datasets)}")
    if settings.split not in ("test", "validation"):
        raise UserError(f"--split {settings.split}: give test, or validation (10,000 training images held out)")
    if settings.extractor == "inception" and not settings.extractor_weights:
        raise UserError(fidelity.INCEPTION_HELP.replace("set evaluation.feature_extractor_weights_path",
                                                        "pass --extractor-weights FILE"))
    choice = settings.extractor
    if choice not in ("domain", "inception"):
        if not Path(choice).is_file():
            raise UserError(f"--extractor {choice}: no such file; give domain, inception, or a weights file that "
                            f"`genbench extractor train` wrote")
        choice = ExtractorFile(choice, file_sha256(choice))
    data = reference_data(registry, settings)
    if isinstance(choice, ExtractorFile):
        data.extractor = choice.spec(data.info.image_shape[0], data.info.num_classes)
    if choice == "domain" and data.extractor is None:
        raise UserError(f"data set '{settings.dataset}' ships no feature extractor; train one with `genbench "
                        f"extractor train {settings.dataset} --out FILE` and pass --extractor FILE, or pass "
                        f"--extractor inception --extractor-weights FILE")
    options = EvalOptions(feature_extractor=choice, feature_extractor_weights_path=settings.extractor_weights)
    ident = reference.identity(data, options)
    folder = reference.cache_root() / "reference" if settings.cache else None
    lazy = isinstance(data.train, reference.LazySplit)
    data.cache = reference.StoredCache(folder, ident, warnings, lambda: reference.train_identity(data),
                                       (lambda: data.train.loaded) if lazy else (lambda: True))
    if settings.reference is not None:
        try:
            data.cache.load(settings.reference, data.eval.images.device)
        except reference.BadReference as err:
            raise UserError(str(err)) from None
    return data, options


def reference_data(registry: Registry, settings: Settings) -> DeviceData:
    """The reference split on the device; the training images are read only if a metric
    uses them (the validation split is carved from them, so it reads them at once)."""
    dataset = registry.datasets[settings.dataset]()
    device = torch.device(settings.device)
    if settings.split == "validation":
        config = DatasetConfig(name=settings.dataset, test_subset=settings.real_images, validation=10000,
                               eval_split="validation")
        return prepare(dataset, config, device, download=False)
    test = load_split(dataset, "test", None, False)
    if settings.real_images:
        test = test.take(slice(0, settings.real_images))
    info = DataInfo(name=dataset.name, image_shape=tuple(test.images.shape[1:]),
                    num_classes=len(dataset.class_names) or int(test.labels.max()) + 1,
                    class_names=tuple(dataset.class_names), train_size=0,  # unknown until read; no model reads it
                    factors=tuple(dataset.factors))
    train = reference.LazySplit(lambda: load_split(dataset, "train", None, False).to(device))
    return DeviceData(info, train, test.to(device), "test", dataset.extractor)


def check_sets(sets: list[SampleSet], metrics: list[Metric], options: dict, data: DeviceData,
               eval_options: EvalOptions) -> None:
    """Before any scoring: each set's shape, labels and count suit the data set and metrics."""
    for s in sets:
        if s.shape != data.info.image_shape:
            c, h, w = data.info.image_shape
            raise BadSamples(f"{s.name}: images are {'x'.join(map(str, s.shape))}; data set '{data.info.name}' "
                             f"has {c}x{h}x{w}")
        if s.labels is not None and len(s.labels) and int(s.labels.max()) >= data.info.num_classes:
            raise BadSamples(f"{s.name}: labels up to {int(s.labels.max())}; the data set's classes are "
                             f"0..{data.info.num_classes - 1}")
        problems, _ = check_metrics(metrics, options, dataclasses.replace(eval_options, num_samples=s.count),
                                    len(data.eval), data.info)
        for name, found in problems.items():
            raise BadSamples(f"{s.name}: {s.count} samples: metric '{name}': {found[0]}"
                             + (f" (e.g. --set {name}.subset_size=N)" if "subset_size" in found[0] else ""))


def score_set(samples: SampleSet, data: DeviceData, metrics: list[Metric], eval_options: EvalOptions,
              options: dict) -> tuple[dict, dict]:
    """One set's record (without run_id) and snapshot arrays."""
    started, clock = record.utc_now(), time.perf_counter()
    model = Given.of(samples, data)
    scores, details = evaluate(model, data, metrics, dataclasses.replace(eval_options, num_samples=samples.count),
                               samples.seed, options, context=ScoreContext)
    rec = {"schema_version": schema.SCHEMA_VERSION, "label": samples.label, "model": Given.name, "seed": samples.seed,
           "options": {}, "dataset": {"name": data.info.name, "eval_split": data.eval_split},
           "eval_split": data.eval_split, "metrics_requested": [m.name for m in metrics],
           "evaluation": opt.as_dict(dataclasses.replace(eval_options, num_samples=samples.count)),
           "metric_options": {k: opt.as_dict(v) for k, v in options.items() if v is not None},
           "device": str(data.eval.images.device), "versions": record.versions(),
           "machine": record.machine(str(data.eval.images.device)), "started": started, "status": "ok",
           "metric_info": {m.name: m.info() for m in metrics}, "metrics": scores,
           "metric_errors": details.pop("errors", {}), "metric_details": details,
           "samples": {"source": samples.name, "format": samples.format, "count": samples.count,
                       "labelled": samples.labels is not None, "sha256": _file_sha(split_key(Path(samples.name))[0])},
           "reference": {**{k: v for k, v in data.cache.identity.items() if k != "format"},
                         "from_cache": sorted(set(data.cache.hits)), "imported": bool(data.cache.imported)}}
    rec["eval_seconds"] = round(time.perf_counter() - clock, 3)
    rec["finished"] = record.utc_now()
    arrays = snapshot.take(model, data, samples.seed, latent_points=0)
    return rec, arrays


def _file_sha(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_folder(out: Path, settings: Settings, outputs: list[tuple[dict, dict]], metrics: list[Metric],
                 options: dict, eval_options: EvalOptions, registry: Registry) -> None:
    """The results folder: suite.yaml, env.json and each set's record and snapshot."""
    from ..render import report
    from ..results import store

    device = torch.device(settings.device)
    suite = {"name": f"score-{settings.dataset}", "description": "sample sets scored by `genbench score`",
             "dataset": {"name": settings.dataset, "eval_split": settings.split, "test_subset": settings.real_images},
             "seeds": sorted({rec["seed"] for rec, _ in outputs}),
             "metrics": [metric_entry(m.name, options.get(m.name)) for m in metrics],
             "primary_metric": metrics[0].name,
             "evaluation": {**opt.as_dict(eval_options), "num_samples": min(rec["samples"]["count"] for rec, _ in outputs)},
             "score": {"sources": [rec["samples"]["source"] for rec, _ in outputs]},
             "runs": [{"label": label, "model": Given.name, "options": {}}
                      for label in dict.fromkeys(rec["label"] for rec, _ in outputs)]}
    files.check_writable(out)
    with files.FolderLock(out, "score", create=True):
        if record.read_records(out):
            raise UserError(f"{out} already holds results; choose another --out")
        record.write_text(out / "suite.yaml", yaml.safe_dump(suite, sort_keys=False))
        record.write_json(out / "env.json", record.environment(device, registry.plugin_sources(), registry.warnings))
        for rec, arrays in outputs:
            run_dir = files.inside(out, "runs", rec["run_id"])
            run_dir.mkdir(parents=True, exist_ok=True)
            record.write_bytes(run_dir / snapshot.SNAPSHOT, snapshot.to_bytes(arrays))
            record.write_json(run_dir / record.RECORD, rec)
        report.build(store.load(out))


def export(data: DeviceData, path: Path) -> int:
    """Write the reference statistics computed so far as one checked ``.npz``; return their count."""
    entries = data.cache.entries()
    files.write_bytes(Path(path), reference.pack(entries, data.cache.identity))
    return len(entries)


def run_id(label: str, seed: int) -> str:
    return files.slug(f"{label}-seed{seed}")


def score_all(registry: Registry, settings: Settings, sets: list[SampleSet], out: Path | None,
              export_to: Path | None = None, say: Callable[[str], None] = print) -> list[dict]:
    """Score every set; write ``out`` (when given) only once all are scored. Returns the records."""
    warnings: list[str] = []
    data, eval_options = load_reference(registry, settings, warnings)
    labelled = all(s.labels is not None for s in sets)
    metrics = choose_metrics(registry, settings.metrics, labelled)
    options = metric_options(registry, metrics, settings.metric_options)
    check_sets(sets, metrics, options, data, eval_options)
    outputs = []
    for i, s in enumerate(sets, 1):
        rec, arrays = score_set(s, data, metrics, eval_options, options)
        rec["run_id"] = run_id(s.label, s.seed)
        outputs.append((rec, arrays))
        shown = ", ".join(f"{k} {v:.4g}" for k, v in rec["metrics"].items() if v is not None)
        say(f"{i}/{len(sets)} {s.label} seed {s.seed} ({s.count} samples): {shown or '-'}")
        for name, failure in rec["metric_errors"].items():
            warnings.append(f"{s.name}: metric '{name}' failed: {failure['error']}")
    if export_to is not None:
        say(f"exported {export(data, export_to)} reference statistics to {export_to}")
    if out is not None:
        write_folder(out, settings, outputs, metrics, options, eval_options, registry)
    for w in dict.fromkeys(warnings):
        say(f"warning: {w}")
    return [rec for rec, _ in outputs]
