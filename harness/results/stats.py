"""Statistics over seeds: confidence intervals and ties with the best configuration.

scipy (already required by scikit-image) supplies the t distribution and Welch's test.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95  # confidence level of the intervals
ALPHA = 0.05  # significance level of "tied with the best"


@dataclasses.dataclass(frozen=True)
class Summary:
    """A metric over seeds: mean, sample std, 95% CI half-width (nan below two values)."""

    mean: float
    std: float
    half_width: float
    n: int
    values: tuple[float, ...]


def summarize(values: Sequence[float | None], level: float = LEVEL) -> Summary:
    """Mean and two-sided t-distribution confidence half-width of finite ``values``."""
    xs = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(xs)
    if n == 0:
        return Summary(math.nan, math.nan, math.nan, 0, ())
    if n == 1:
        return Summary(float(xs[0]), math.nan, math.nan, 1, (float(xs[0]),))
    std = float(xs.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n))
    return Summary(float(xs.mean()), std, half, n, tuple(map(float, xs)))


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided p-value of Welch's t-test; nan when either side has fewer than 2 values."""
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if np.std(a) == 0 and np.std(b) == 0:  # deterministic metric: equal or clearly not
        return 1.0 if np.mean(a) == np.mean(b) else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def tied(best: Summary, other: Summary, alpha: float = ALPHA) -> bool:
    """Whether ``other`` is not significantly different from ``best`` (Welch, p >= alpha)."""
    p = welch_p(best.values, other.values)
    return not math.isnan(p) and p >= alpha


def format_value(mean: float, half_width: float = math.nan) -> str:
    """``mean ± half`` with the half-width to two significant digits; a dash for nan."""
    if mean is None or math.isnan(mean):
        return "-"
    if half_width is None or math.isnan(half_width):
        return f"{mean:.{_decimals(mean, 4)}f}"
    if half_width == 0:  # every seed agrees: no spurious trailing zeros
        text = f"{mean:.{_decimals(mean, 4)}f}"
        return (text.rstrip("0").rstrip(".") if "." in text else text) + " ± 0"
    decimals = _decimals(half_width, 2)
    return f"{mean:.{decimals}f} ± {half_width:.{decimals}f}"


def _decimals(x: float, significant: int) -> int:
    if x == 0 or not math.isfinite(x):
        return 2
    return min(4, max(0, significant - 1 - math.floor(math.log10(abs(x)))))
