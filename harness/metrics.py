"""The metric plugin interface and the evaluation of one trained model.

A metric declares which capabilities it needs; the evaluator skips it (leaving a dash
on the leaderboard) for a model that lacks one. Expensive intermediate results, such as
the reconstructions of the evaluation split, are computed once per run and shared by
every metric through :class:`EvalContext`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Callable

import torch
from torch import Tensor

from .data import DeviceData
from .model import Capability, Model


@dataclasses.dataclass(frozen=True)
class Metric:
    """A score computed on a trained model.

    Attributes:
        name: what users list under ``metrics:`` in a suite.
        compute: ``compute(ctx: EvalContext) -> float``.
        requires: the capabilities a model must have for the metric to apply.
        higher_is_better: sorting direction on the leaderboard.
        unit: shown next to the value, e.g. ``"nats/image"``.
        description: one line for ``genbench plugins``.
    """

    name: str
    compute: Callable[[EvalContext], float]
    requires: frozenset[Capability] = frozenset()
    higher_is_better: bool = False
    unit: str = ""
    description: str = ""

    def __post_init__(self):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name or ""):
            raise ValueError(f"metric name {self.name!r} must match [a-z][a-z0-9_]*")
        if not callable(self.compute):
            raise ValueError(f"metric {self.name!r}: compute must be callable")
        object.__setattr__(self, "requires", frozenset(Capability(c) for c in self.requires))

    def applies_to(self, model: type[Model] | Model) -> bool:
        return self.requires <= frozenset(model.capabilities)


class EvalContext:
    """What metrics see of one trained model; intermediate results are cached."""

    def __init__(self, model: Model, data: DeviceData, batch_size: int = 1000):
        self.model = model
        self.data = data
        self.batch_size = batch_size
        self.conditional = model.has(Capability.CONDITIONAL)

    @functools.cached_property
    def images(self) -> Tensor:
        """The evaluation split as floats in [0, 1] (N, C, H, W)."""
        return torch.cat([b.x for b in self.data.eval_batches(self.batch_size)])

    @property
    def labels(self) -> Tensor:
        return self.data.eval.labels

    def _labels_for(self, y: Tensor) -> Tensor | None:
        return y if self.conditional else None

    @functools.cached_property
    def reconstructions(self) -> Tensor:
        """``model.reconstruct`` of the evaluation split, in [0, 1]."""
        out = [self.model.reconstruct(b.x, self._labels_for(b.y))
               for b in self.data.eval_batches(self.batch_size)]
        return torch.cat(out).clamp_(0.0, 1.0)

    @functools.cached_property
    def posterior(self) -> tuple[Tensor, Tensor]:
        """Posterior means and log-variances of the evaluation split."""
        parts = [self.model.posterior(b.x, self._labels_for(b.y))
                 for b in self.data.eval_batches(self.batch_size)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def evaluate(model: Model, data: DeviceData, metrics: list[Metric]) -> dict[str, float | None]:
    """Score ``model`` on every metric; None where the model lacks a capability."""
    ctx = EvalContext(model, data)
    model.eval()
    out: dict[str, float | None] = {}
    with torch.no_grad():
        for metric in metrics:
            if not metric.applies_to(model):
                out[metric.name] = None
                continue
            value = float(metric.compute(ctx))
            out[metric.name] = value if math.isfinite(value) else float("nan")
    return out
