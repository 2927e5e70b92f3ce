"""Expected best score against the number of trials (issue 13, item 4).

After a search of N trials, "what would a search of k trials have found?" has an exact
answer for k <= N: the mean, over every k-subset of the N trials, of the subset's best
score. That mean is the unbiased (U-statistic) estimator of the expected maximum of k
independent trials, the one Dodge et al. recommend in "Show Your Work" (2019) and its
follow-up (Dodge et al. 2021), where the with-replacement plug-in of the 2019 paper is
shown to be biased low for small N. Both are given; the leaderboard uses the unbiased one.

With the scores sorted ascending, v(1) <= ... <= v(N), the best of a random k-subset is
v(i) exactly when v(i) is in it and the other k - 1 come from the i - 1 below it:
P = C(i-1, k-1) / C(N, k). With replacement, P = (i/N)^k - ((i-1)/N)^k.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np


@functools.lru_cache(maxsize=32)
def _weights(n: int) -> np.ndarray:
    """W[k-1, i-1] = C(i-1, k-1) / C(n, k): the chance that the i-th smallest of n trials is
    the best of a random k-subset (exact integers before the one division)."""
    return np.array([[math.comb(i - 1, k - 1) / math.comb(n, k) for i in range(1, n + 1)]
                     for k in range(1, n + 1)])


def expected_best(scores: Sequence[float], higher_is_better: bool = True) -> np.ndarray:
    """The unbiased expected best of k trials, for k = 1..N (an array of length N)."""
    v = _sorted(scores, higher_is_better)
    out = _weights(len(v)) @ v
    return out if higher_is_better else -out


def expected_best_with_replacement(scores: Sequence[float], higher_is_better: bool = True,
                                   ks: Sequence[int] | None = None) -> np.ndarray:
    """Dodge et al. (2019), eq. 1: the expected best of k draws from the N trials' empirical
    distribution, with replacement (defined for any k, biased for small N)."""
    v = _sorted(scores, higher_is_better)
    n = len(v)
    ks = range(1, n + 1) if ks is None else ks
    i = np.arange(1, n + 1)
    out = np.array([float(np.dot((i / n) ** k - ((i - 1) / n) ** k, v)) for k in ks])
    return out if higher_is_better else -out


def bootstrap_band(scores: Sequence[float], higher_is_better: bool = True, resamples: int = 1000,
                   seed: int = 0, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap band of :func:`expected_best`: the N trials resampled with
    replacement ``resamples`` times (seeded), the curve recomputed each time."""
    v = np.asarray(scores, dtype=float)
    if len(v) == 0:
        raise ValueError("no trials")
    rng = np.random.default_rng(seed)
    samples = np.stack([rng.choice(v, size=len(v), replace=True) for _ in range(resamples)])
    sign = 1 if higher_is_better else -1
    curves = sign * (np.sort(sign * samples, axis=1) @ _weights(len(v)).T)  # every resample at once
    tail = (1 - level) / 2 * 100
    return np.percentile(curves, tail, axis=0), np.percentile(curves, 100 - tail, axis=0)


def _sorted(scores: Sequence[float], higher_is_better: bool) -> np.ndarray:
    v = np.asarray(scores, dtype=float)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError("give a non-empty list of trial scores")
    if not np.all(np.isfinite(v)):
        raise ValueError("trial scores must be finite (leave out failed trials)")
    return np.sort(v if higher_is_better else -v)


def trial_value(rec: dict, metric: str) -> float | None:
    """A trial record's score, or None if it failed or gave none (a record read from a
    folder: anything but a finite number counts as none)."""
    if rec.get("status") != "ok":
        return None
    value = (rec.get("metrics") or {}).get(metric)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def best_trial(records: list[dict], metric: str, higher_is_better: bool) -> dict | None:
    """The trial with the best score (the lowest number among equals), or None."""
    scored = [(trial_value(r, metric), r["trial"]["number"], r) for r in records]
    scored = [t for t in scored if t[0] is not None]
    if not scored:
        return None
    return min(scored, key=lambda t: (-t[0] if higher_is_better else t[0], t[1]))[2]
