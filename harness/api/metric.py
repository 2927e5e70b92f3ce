"""The metric plugin interface and the evaluation of one trained model.

A metric declares which capabilities it needs; the evaluator skips it (leaving a dash
on the leaderboard) for a model that lacks one. Expensive intermediate results (the
reconstructions, the posterior, the generated samples and their features) are computed
once per run and shared by every metric through :class:`EvalContext`; the features of
the real evaluation split are computed once per suite.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, Optional, Union

import torch
from torch import Tensor

from . import outputs
from .dataset import to_float
from .extractor import ExtractorFile
from .model import Capability, DataInfo, Model, expand
from .options import option

if TYPE_CHECKING:  # the engine builds it; the API only describes it
    from ..engine.data import DeviceData


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """The suite's ``evaluation:`` section: what every metric shares.

    A setting that only one metric uses is that metric's own option (see
    :attr:`Metric.Options`), written in the suite as ``metrics: [{name: kid, subset_size: 500}]``.
    """

    num_samples: int = option(10000, "images generated for sample metrics (FID, KID, precision/recall)", min=2)
    feature_extractor: Union[Literal["domain", "inception"], ExtractorFile] = option(
        "domain", "features for FID/KID/precision/recall: the data set's shipped extractor (domain); "
        "torch-fidelity's Inception-v3 (inception, needs feature_extractor_weights_path); or one you trained "
        "with `genbench extractor train`, pinned as {path: FILE, sha256: HEX}")
    feature_extractor_weights_path: Optional[str] = option(
        None, "local Inception weights file (pt_inception-2015-12-05-6726825d.pth); nothing is downloaded")
    save_samples: bool = option(False, "also keep the samples each run was scored on, as runs/<run>/samples.npz "
                                "(uint8, with their labels for a conditional model), e.g. for `genbench score` "
                                "or other code")
    curve_metrics: tuple[str, ...] = option(
        (), "metrics also computed during training, for the training-curve figure (budget clock paused)")
    curve_every: float = option(1.0, "epochs between two evaluations during training", min=0.01)
    curve_images: int = option(1000, "evaluation images (and samples) used during training", min=2)


@dataclasses.dataclass(frozen=True)
class MetricSetup:
    """What a metric's ``check`` sees before anything trains (``genbench validate`` and ``run``).

    Attributes:
        options: the metric's options as the suite sets them (an instance of
            ``Metric.Options``), or None for a metric without options.
        evaluation: the suite's shared ``evaluation:`` settings (``num_samples``,
            ``feature_extractor``, ...).
        eval_images: how many images the evaluation split holds.
        info: the data set's image shape, pixel count and number of classes.
    """

    options: Any
    evaluation: EvalOptions
    eval_images: int
    info: DataInfo


DEGRADATIONS = ("gaussian_noise", "blur", "salt_pepper", "uniform_swap", "drop_classes", "one_per_class",
                "train_copies")
"""What ``genbench check-metrics`` does to real held-out images, each at four strengths:
additive Gaussian noise, Gaussian blur, salt-and-pepper pixels, a share of images swapped
for uniform noise, classes dropped (mode collapse), a few images per class repeated (no
diversity), and a share of images swapped for training images (memorization)."""


@dataclasses.dataclass(frozen=True)
class Claim:
    """A defect a sample metric promises to respond to, checked by ``genbench check-metrics``.

    Attributes:
        degradation: one of :data:`DEGRADATIONS`.
        expect: ``"worse"``: the score gets worse as the defect grows (no level better than
            the one before, by more than 5% of the whole change) and ends worse than on
            clean images; ``"steady"``: every level stays within ``tolerance`` of clean
            (a fidelity metric should not punish lost diversity, and the reverse).
        bound: with ``"worse"``, the strongest level must score at least this badly, e.g.
            precision of images that are all uniform noise at most 0.1.
        tolerance: with ``"steady"``, the largest allowed distance from the clean score.
        monotone: with ``"worse"``, whether every level must be no better than the one
            before; False claims only the end point (and ``bound``).
    """

    degradation: str
    expect: Literal["worse", "steady"] = "worse"
    bound: Optional[float] = None
    tolerance: float = 0.0
    monotone: bool = True

    def __post_init__(self):
        if self.degradation not in DEGRADATIONS:
            raise ValueError(f"claim on unknown degradation {self.degradation!r}; known: {', '.join(DEGRADATIONS)}")
        if self.expect not in ("worse", "steady"):
            raise ValueError(f"claim expect must be 'worse' or 'steady', not {self.expect!r}")

    def describe(self, higher_is_better: bool) -> str:
        if self.expect == "steady":
            return f"steady under {self.degradation} (within {self.tolerance:g})"
        text = f"worse with more {self.degradation}" if self.monotone else f"worse at the strongest {self.degradation}"
        if self.bound is not None:
            text += f", {'at most' if higher_is_better else 'at least'} {self.bound:g} there"
        return text


@dataclasses.dataclass(frozen=True)
class Metric:
    """A score computed on a trained model.

    Attributes:
        name: what users list under ``metrics:`` in a suite.
        compute: ``compute(ctx: EvalContext) -> float``, or ``(float, details)`` where
            ``details`` is a JSON-friendly dict kept in the run record. A metric with
            ``Options`` is called as ``compute(ctx, options)``.
        requires: the capabilities a model must have for the metric to apply.
        higher_is_better: sorting direction on the leaderboard.
        unit: shown next to the value, e.g. ``"nats/image"``.
        description: one line for ``genbench plugins``.
        uses_samples: True if the metric scores generated samples (it then needs
            ``evaluation.num_samples`` and a feature extractor, checked before training,
            and records the extractor's SHA-256).
        Options: a dataclass of the metric's own settings, fields declared with
            :func:`genbench.option`. A suite sets them as
            ``metrics: [{name: kid, subset_size: 500}]``; they are validated like model
            options and listed by ``genbench plugins --metric NAME``.
        check: ``check(setup: MetricSetup) -> list[str]``, the metric's preconditions,
            run before training: each returned line is a problem that would make the
            metric fail (e.g. a subset larger than the images there will be).
        claims: for a sample metric, the defects it promises to respond to
            (:class:`Claim`); ``genbench check-metrics`` scores degraded real images and
            reports every claim that does not hold.
    """

    name: str
    compute: Callable[..., Any]
    requires: frozenset[Capability] = frozenset()
    higher_is_better: bool = False
    unit: str = ""
    description: str = ""
    uses_samples: bool = False
    Options: Optional[type] = None
    check: Optional[Callable[[MetricSetup], Iterable[str]]] = None
    claims: tuple[Claim, ...] = ()

    def __post_init__(self):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name or ""):
            raise ValueError(f"metric name {self.name!r} must match [a-z][a-z0-9_]*")
        if not callable(self.compute):
            raise ValueError(f"metric {self.name!r}: compute must be callable")
        if self.Options is not None and not (isinstance(self.Options, type) and dataclasses.is_dataclass(self.Options)):
            raise ValueError(f"metric {self.name!r}: Options must be a dataclass (fields declared with genbench.option)")
        if self.check is not None and not callable(self.check):
            raise ValueError(f"metric {self.name!r}: check must be callable")
        object.__setattr__(self, "requires", frozenset(Capability(c) for c in self.requires))
        object.__setattr__(self, "claims", tuple(self.claims))
        if not all(isinstance(c, Claim) for c in self.claims):
            raise ValueError(f"metric {self.name!r}: claims must be genbench.Claim objects")

    def info(self) -> dict:
        """What a run record keeps about the metric, so a report needs no plugin."""
        return {"unit": self.unit, "higher_is_better": self.higher_is_better,
                "requires": sorted(c.value for c in self.requires), "description": self.description}

    def default_options(self) -> Any:
        """The metric's options with every default (None for a metric without options)."""
        return None if self.Options is None else self.Options()

    def score(self, ctx: EvalContext, options: Any = None) -> Any:
        """Call ``compute`` as the metric declares it, with its default options if none are given."""
        if self.Options is None:
            return self.compute(ctx)
        return self.compute(ctx, self.default_options() if options is None else options)

    def preconditions(self, setup: MetricSetup) -> list[str]:
        """The problems ``check`` finds (none without a check)."""
        return [str(p) for p in (self.check(setup) or ())] if self.check else []

    def applies_to(self, model: type[Model] | Model) -> bool:
        """Whether ``model`` declares what the metric requires (and, for an instance, offers it
        under its options: see :meth:`Model.unavailable`)."""
        return self.requires <= expand(model.capabilities) and not self.unavailable_reason(model)

    def unavailable_reason(self, model: type[Model] | Model) -> str | None:
        """Why a configured model that declares the requirements still cannot be scored."""
        if isinstance(model, type):
            return None
        off = model.unavailable()
        reasons = [f"{cap.value}: {off[cap]}" for cap in sorted(self.requires, key=str) if cap in off]
        return "; ".join(reasons) or None


class EvalContext:
    """What metrics see of one trained model; intermediate results are cached."""

    def __init__(self, model: Model, data: DeviceData, options: EvalOptions | None = None,
                 batch_size: int | None = None):
        self.model = model
        self.data = data
        self.options = options or EvalOptions()
        # Sized for the device: a GPU is idle between small batches; on the CPU larger
        # ones gain nothing and cost memory.
        self.batch_size = batch_size or (4096 if data.eval.images.device.type == "cuda" else 1000)
        self.conditional = model.has(Capability.CONDITIONAL)
        self.details: dict[str, Any] = {}  # facts to record, e.g. the extractor's hash
        self._shared: dict[Any, Any] = {}

    @functools.cached_property
    def images(self) -> Tensor:
        """The evaluation split as floats in [0, 1] (N, C, H, W)."""
        return to_float(self.data.eval.images)

    @property
    def labels(self) -> Tensor:
        return self.data.eval.labels

    def _cond(self, y: Tensor) -> Tensor | None:
        return y if self.conditional else None

    def _batched(self, fn, *tensors):
        return [fn(*(t[i:i + self.batch_size] for t in tensors)) for i in range(0, len(tensors[0]), self.batch_size)]

    @property
    def device(self) -> torch.device:
        return self.images.device

    def _reconstruct(self, x: Tensor, y: Tensor) -> Tensor:
        out = self.model.reconstruct(x, self._cond(y))
        return outputs.images(self.model, "reconstruct", out, len(x), self.data.info.image_shape, self.device)

    @functools.cached_property
    def reconstructions(self) -> Tensor:
        """``model.reconstruct`` of the evaluation split, checked to be images in [0, 1]."""
        return torch.cat(self._batched(self._reconstruct, self.images, self.labels))

    def _reconstruct_logits(self, x: Tensor, y: Tensor) -> Tensor:
        out = self.model.reconstruct_logits(x, self._cond(y))
        out = out.flatten(1) if isinstance(out, Tensor) and out.dim() > 1 else out
        return outputs.tensor(self.model, "reconstruct_logits", out, (len(x), self.data.info.num_pixels),
                              self.device, unit_range=False)

    @functools.cached_property
    def reconstruction_logits(self) -> Tensor | None:
        """Pixel logits (N, pixels) of the reconstructions, or None when the model has no
        ``reconstruct_logits``."""
        if not callable(getattr(self.model, "reconstruct_logits", None)):
            return None
        return torch.cat(self._batched(self._reconstruct_logits, self.images, self.labels))

    def _posterior(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        return outputs.posterior(self.model, self.model.posterior(x, self._cond(y)), len(x), self.device)

    @functools.cached_property
    def posterior(self) -> tuple[Tensor, Tensor]:
        """Posterior means and log-variances of the evaluation split."""
        parts = self._batched(self._posterior, self.images, self.labels)
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _codes(self, x: Tensor, y: Tensor) -> Tensor:
        return outputs.codes(self.model, self.model.latent(x, self._cond(y)), len(x), self.device)

    @functools.cached_property
    def codes(self) -> Tensor:
        """``model.latent`` of the evaluation split (N, d): the deterministic code (a VAE's
        posterior mean). ``self.data.eval.factors`` holds the same images' factor levels
        when the data set declares factors."""
        return torch.cat(self._batched(self._codes, self.images, self.labels))

    def _log_likelihood(self, x: Tensor, y: Tensor) -> Tensor:
        return outputs.log_likelihoods(self.model, self.model.log_likelihood(x, self._cond(y)), len(x), self.device)

    def log_likelihood(self, images: int | None = None) -> Tensor:
        """``model.log_likelihood`` of the first ``images`` evaluation images (all when None),
        float64 nats per image, computed once per run for each count."""
        n = len(self.images) if images is None else min(images, len(self.images))
        return self.shared(("log_likelihood", n), lambda: torch.cat(
            self._batched(self._log_likelihood, self.images[:n], self.labels[:n])).double())

    def decode_logits(self, z: Tensor, y: Tensor | None) -> Tensor:
        """Pixel logits (N, pixels); from ``decode`` when the model has no logits method."""
        fn = getattr(self.model, "decode_logits", None)
        shape = (len(z), self.data.info.num_pixels)
        if fn is not None:
            out = fn(z, self._cond(y) if y is not None else None)
            out = out.flatten(1) if isinstance(out, Tensor) and out.dim() > 1 else out
            return outputs.tensor(self.model, "decode_logits", out, shape, self.device, unit_range=False)
        out = outputs.images(self.model, "decode", self.model.decode(z, y), len(z), self.data.info.image_shape,
                             self.device)
        return torch.logit(out.flatten(1), eps=1e-6)

    @functools.cached_property
    def sample_labels(self) -> Tensor | None:
        """The classes asked of a conditional model: each equally often."""
        if not self.conditional:
            return None
        n = self.options.num_samples
        return torch.arange(n, device=self.images.device) % self.data.info.num_classes

    @functools.cached_property
    def samples(self) -> Tensor:
        """``num_samples`` generated images, quantised to 8 bits like the real ones."""
        n, out = self.options.num_samples, []
        for start in range(0, n, self.batch_size):
            size = min(self.batch_size, n - start)
            labels = None if self.sample_labels is None else self.sample_labels[start:start + size]
            out.append(outputs.images(self.model, "sample", self.model.sample(size, labels), size,
                                      self.data.info.image_shape, self.device))
        return torch.cat(out).mul_(255).round_().div_(255)

    @functools.cached_property
    def sample_features(self) -> tuple[Tensor, Tensor]:
        """(features, classifier logits) of the samples."""
        from . import fidelity

        return fidelity.features(self, self.samples)

    def shared(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per run: for results two metrics share (e.g. precision and recall)."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    def cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per suite: for results that depend only on the evaluation
        split (e.g. the real images' k-NN radii). Include your metric's name and options in
        ``key``."""
        key = ("cached", key)
        if key not in self.data.cache:
            self.data.cache[key] = compute()
        return self.data.cache[key]

    @property
    def real_features(self) -> tuple[Tensor, Tensor]:
        """(features, logits) of the evaluation split, computed once per suite."""
        from . import fidelity

        key = ("features", self.options.feature_extractor)
        if key not in self.data.cache:
            self.data.cache[key] = fidelity.features(self, self.images)
        return self.data.cache[key]


