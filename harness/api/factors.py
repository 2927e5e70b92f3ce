"""Factors of variation: what a data set with ground truth declares about its images.

A data set such as dSprites is made from a few factors (shape, scale, position...),
each taking one of a fixed list of values. Disentanglement metrics ask how well a
model's code recovers them; they need each image's factors, given as level indices.
"""

from __future__ import annotations

import dataclasses
import math
import re


@dataclasses.dataclass(frozen=True)
class Factor:
    """One factor of variation and the value of each of its levels.

    ``ImageSet.factors[n, k]`` is the index into ``values`` of factor ``k`` of image ``n``;
    metrics treat the indices as discrete classes (as disentanglement_lib does) and use
    ``values`` only to label figures.
    """

    name: str
    values: tuple[float, ...]

    def __post_init__(self):
        if not re.fullmatch(r"[a-z][a-z0-9_]*", self.name or ""):
            raise ValueError(f"factor name {self.name!r} must match [a-z][a-z0-9_]*")
        values = tuple(float(v) for v in self.values)
        if len(values) < 2 or not all(math.isfinite(v) for v in values):
            raise ValueError(f"factor {self.name!r}: give at least two finite values")
        object.__setattr__(self, "values", values)

    @property
    def levels(self) -> int:
        return len(self.values)
