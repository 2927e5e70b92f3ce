"""A test kit for plugin authors: call these from your own pytest suite.

    from genbench.testing import check_model

    def test_my_model():
        check_model(MyModel)

In the spirit of scikit-learn's ``check_estimator``: each check builds the plugin the
way the harness does, on a tiny procedurally generated data set, calls what it
declares, and raises ``AssertionError`` with a message naming the method and the rule
it broke. Nothing here needs a data file or a GPU.
"""

from __future__ import annotations

import dataclasses
import io
import math

import torch

from .api import outputs
from .api.dataset import Dataset, ImageSet
from .api.extractor import ARCHITECTURES, ExtractorMismatch, file_sha256
from .api.extractor import build as build_extractor
from .api.likelihood import Likelihood
from .api.metric import EvalOptions, Metric, MetricSetup
from .api.model import CAPABILITIES, Capability, DataInfo, Model, missing_methods
from .engine.data import DeviceData
from .engine.evaluate import evaluate
from .engine.train import train

__all__ = ["SHAPES", "check_dataset", "check_metric", "check_model", "tiny_data"]

SHAPES = ((1, 28, 28), (3, 32, 32), (3, 64, 64))  # check_model's default: grey, then colour at two sizes


def tiny_data(image_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10, n: int = 256,
              seed: int = 0) -> DeviceData:
    """``n`` images of ``image_shape``: class c brightens horizontal band c over noise."""
    g = torch.Generator().manual_seed(seed)
    c, h, w = image_shape
    labels = torch.arange(n) % num_classes
    images = torch.randint(0, 50, (n, c, h, w), generator=g, dtype=torch.uint8)
    band = max(1, h // num_classes)
    for k in range(num_classes):
        rows = slice((k * band) % h, (k * band) % h + band)
        images[labels == k, :, rows, :] += 200
    data = ImageSet(images, labels)
    info = DataInfo("tiny", image_shape, num_classes, tuple(str(k) for k in range(num_classes)), n)
    return DeviceData(info, data, data.take(slice(0, 64)), "test")


def _fail(cls, method: str, rule: str) -> None:
    raise AssertionError(f"{getattr(cls, '__name__', cls)}.{method}: {rule}")


def _build(cls: type[Model], options, data: DeviceData, seed: int) -> Model:
    torch.manual_seed(seed)
    model = cls(options if options is not None else cls.Options(), data.info)
    model.optimizers = model.configure_optimizers()
    if not isinstance(model.optimizers, dict) or not all(
            isinstance(o, torch.optim.Optimizer) for o in model.optimizers.values()):
        _fail(cls, "configure_optimizers", "must return a dict of torch.optim.Optimizer by name")
    return model


def check_model(cls: type[Model], options=None, image_shape: tuple[int, int, int] | None = None,
                num_classes: int = 10, steps: int = 3, batch_size: int = 32,
                image_shapes: tuple[tuple[int, int, int], ...] = SHAPES) -> None:
    """Check a model plugin class against every rule the harness relies on.

    It trains and checks the model on each of ``image_shapes`` (grey 28x28, colour 32x32
    and 64x64), or on ``image_shape`` alone when given. A shape the model refuses through
    ``unsupported_shape`` is skipped; a model must take at least one.
    """
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise AssertionError(f"{cls!r} is not a subclass of genbench.Model")
    if not (dataclasses.is_dataclass(cls.Options) and cls.Options.__dataclass_params__.frozen):
        _fail(cls, "Options", "must be a frozen dataclass")
    for cap, method in missing_methods(cls):
        _fail(cls, method, f"'{cap.value}' is declared but {method}() is not implemented")
    declared = {m for cap in cls.capabilities for m in CAPABILITIES[Capability(cap)].methods}
    for cap, contract in CAPABILITIES.items():
        for method in contract.methods:
            overridden = getattr(cls, method) is not getattr(Model, method)
            if overridden and method not in declared and not cls.has(cap):
                _fail(cls, method, f"is implemented but '{cap.value}' is not declared, so the harness "
                      f"never calls it: add Capability.{cap.name} to capabilities")
    if cls.has(Capability.LIKELIHOOD) and not isinstance(cls.likelihood, Likelihood):
        _fail(cls, "likelihood", "'likelihood' is declared: set likelihood = genbench.Likelihood(exact=..., "
              "method=...) to say what log_likelihood returns")
    shapes = [tuple(image_shape)] if image_shape is not None else [tuple(s) for s in image_shapes]
    opts = options if options is not None else cls.Options()
    taken = [s for s in shapes if not cls.unsupported_shape(opts, s)]
    if not taken:
        names = ", ".join(_shape(s) for s in shapes)
        _fail(cls, "unsupported_shape", f"refuses every shape checked ({names}): "
              f"{cls.unsupported_shape(opts, shapes[0])}")
    for shape in taken:
        try:
            _check_on(cls, options, shape, num_classes, steps, batch_size)
        except AssertionError as error:
            raise AssertionError(f"{error} (on {_shape(shape)} images)") from None


def _shape(shape) -> str:
    return "x".join(map(str, shape))


def _check_on(cls, options, image_shape, num_classes, steps, batch_size) -> None:
    data = tiny_data(image_shape, num_classes)
    _check_train_step(cls, _build(cls, options, data, seed=0), data, batch_size)  # its own instance
    model = _build(cls, options, data, seed=0)
    result = train(model, data, {"steps": steps}, batch_size, seed=0)
    if result.used["steps"] != steps:
        _fail(cls, "train_step", f"training stopped after {result.used['steps']} of {steps} steps")
    first = _outputs(cls, model, data)
    again = _build(cls, options, data, seed=0)
    train(again, data, {"steps": steps}, batch_size, seed=0)
    second = _outputs(cls, again, data)
    if second.keys() != first.keys() or any(not torch.equal(first[k], second[k]) for k in first):
        _fail(cls, "train_step", "the same seed gave different results: draw randomness only from torch's "
              "generators (the harness seeds them), never from time or unseeded sources")
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    reloaded = cls(options if options is not None else cls.Options(), data.info)
    reloaded.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    if any(not torch.equal(a, b) for a, b in zip(first.values(), _outputs(cls, reloaded, data).values())):
        _fail(cls, "state_dict", "a reloaded model gives other outputs: keep all state in parameters or buffers "
              "(genbench rescore reloads model.pt)")


def _check_train_step(cls, model: Model, data: DeviceData, batch_size: int) -> None:
    from .api.dataset import to_float
    from .api.model import Batch, Step

    model.train()
    batch = Batch(to_float(data.train.images[:batch_size]), data.train.labels[:batch_size])
    losses = model.train_step(batch, Step(0, 0, 0.0))
    if not isinstance(losses, dict) or not losses:
        _fail(cls, "train_step", "must return a non-empty dict of loss tensors")
    for key, value in losses.items():
        if not (isinstance(value, torch.Tensor) and value.dim() == 0):
            _fail(cls, "train_step", f"loss '{key}' must be a scalar tensor (return tensors, not floats: "
                  f"a float forces a device sync every step)")
        if value.requires_grad:
            _fail(cls, "train_step", f"loss '{key}' must be detached (.detach())")
        if not math.isfinite(float(value)):
            _fail(cls, "train_step", f"loss '{key}' is {float(value)} on the first step")


@torch.no_grad()
def _outputs(cls, model: Model, data: DeviceData, n: int = 8) -> dict[str, torch.Tensor]:
    """Every declared capability's output on ``n`` images, each checked as the harness does."""
    from .api.dataset import to_float

    model.eval()
    device = torch.device("cpu")
    x, y = to_float(data.eval.images[:n]), data.eval.labels[:n]
    cond = y if model.has(Capability.CONDITIONAL) else None
    shape = data.info.image_shape
    out = {}
    try:
        with torch.random.fork_rng():
            torch.manual_seed(1)
            if model.has(Capability.RECONSTRUCT):
                out["reconstruct"] = outputs.images(model, "reconstruct", model.reconstruct(x, cond), n, shape, device)
            if model.has(Capability.POSTERIOR):
                out["posterior"] = torch.cat(outputs.posterior(model, model.posterior(x, cond), n, device), 1)
            if model.has(Capability.LATENT):
                out["latent"] = outputs.codes(model, model.latent(x, cond), n, device)
                if model.has(Capability.DECODE):
                    out["decode"] = outputs.images(model, "decode", model.decode(out["latent"], cond), n, shape, device)
            if model.has(Capability.SAMPLE):
                out["sample"] = outputs.images(model, "sample", model.sample(n, cond), n, shape, device)
            if model.has(Capability.LIKELIHOOD) and Capability.LIKELIHOOD not in model.unavailable():
                out["log_likelihood"] = outputs.log_likelihoods(model, model.log_likelihood(x, cond), n, device)
    except outputs.ModelOutputError as err:
        raise AssertionError(f"{cls.__name__}: {err}") from None
    return out


def check_dataset(cls: type[Dataset], options=None, root=None) -> None:
    """Check a data set plugin: both splits load as the harness expects; a shipped extractor fits."""
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        raise AssertionError(f"{cls!r} is not a subclass of genbench.Dataset")
    dataset = cls(options if options is not None else cls.Options())
    for split in ("train", "test"):
        images = dataset.load(split, root, False)
        if not isinstance(images, ImageSet):
            _fail(cls, "load", f"the {split} split must be a genbench.ImageSet, got {type(images).__name__}")
        if tuple(images.images.shape[1:]) != cls.image_shape_of(dataset.options):
            _fail(cls, "load", f"{split} images are {tuple(images.images.shape[1:])}, image_shape says "
                  f"{cls.image_shape_of(dataset.options)}")
        if len(images) == 0:
            _fail(cls, "load", f"the {split} split is empty")
        if cls.class_names and not (0 <= int(images.labels.min()) and int(images.labels.max()) < len(cls.class_names)):
            _fail(cls, "load", f"{split} labels must be 0..{len(cls.class_names) - 1}")
    spec = cls.extractor
    if spec is not None:
        if not spec.path.is_file():
            _fail(cls, "extractor", f"{spec.path} does not exist (ship it as package data)")
        if file_sha256(spec.path) != spec.sha256:
            _fail(cls, "extractor", f"{spec.path} does not match its pinned sha256")
        if spec.in_channels != cls.image_shape[0] or (cls.class_names and spec.num_classes != len(cls.class_names)):
            _fail(cls, "extractor", "in_channels and num_classes must match image_shape and class_names")
        if spec.architecture not in (None, *ARCHITECTURES):
            _fail(cls, "extractor", f"architecture {spec.architecture!r} is not one of {', '.join(ARCHITECTURES)}")
        try:
            build_extractor(spec)
        except ExtractorMismatch as err:
            _fail(cls, "extractor", str(err))


def check_metric(metric: Metric, model_cls: type[Model], options=None,
                 evaluation: EvalOptions | None = None, image_shape=(1, 28, 28), num_classes: int = 10,
                 metric_options=None) -> None:
    """Check a metric on a model that has what it requires: a finite number (or a number and
    a JSON-friendly details dict), the same for the same seed; its options build from
    defaults and its ``check`` returns lines of text. ``options`` are the model's,
    ``metric_options`` the metric's (default: its defaults)."""
    import json

    if not isinstance(metric, Metric):
        raise AssertionError(f"{metric!r} is not a genbench.Metric")
    if not metric.applies_to(model_cls):
        raise AssertionError(f"metric '{metric.name}' requires {sorted(c.value for c in metric.requires)}; "
                             f"{model_cls.__name__} lacks some: check it with a model that has them")
    data = tiny_data(image_shape, num_classes)
    model = _build(model_cls, options, data, seed=0)
    train(model, data, {"steps": 2}, 32, seed=0)
    evaluation = evaluation or EvalOptions(num_samples=64)
    if metric_options is None:
        try:
            metric_options = metric.default_options()
        except TypeError as err:
            _fail(metric.name, "Options", f"every option needs a default, so `metrics: [{metric.name}]` works: {err}")
    try:
        problems = list(metric.check(MetricSetup(metric_options, evaluation, len(data.eval), data.info)) or ()) \
            if metric.check else []
    except Exception as err:
        _fail(metric.name, "check", f"raised {type(err).__name__}: {err}; return a list of problems instead")
    if not all(isinstance(p, str) for p in problems):
        _fail(metric.name, "check", "must return lines of text")
    chosen = {metric.name: metric_options}
    first, details = evaluate(model, data, [metric], evaluation, seed=0, metric_options=chosen)
    if "errors" in details:
        _fail(metric.name, "compute", f"raised {details['errors'][metric.name]['error']}")
    value = first[metric.name]
    if value is None:
        _fail(metric.name, "compute", f"gave no finite value ({details.get('not_finite')})")
    try:
        json.dumps(details.get(metric.name, {}), allow_nan=False)
    except (TypeError, ValueError) as err:
        _fail(metric.name, "compute", f"details must be JSON-friendly: {err}")
    second, _ = evaluate(model, data, [metric], evaluation, seed=0, metric_options=chosen)
    if second[metric.name] != value:
        _fail(metric.name, "compute", f"the same seed gave {value} and then {second[metric.name]}: draw "
              f"randomness only from torch's generators")
