"""The expected-best-of-k-trials estimators (issue 13, item 4), against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from genbench.results import tuning

SCORES = [0.61, 0.58, 0.70, 0.55, 0.66, 0.70, 0.49]  # a tie included


def test_the_unbiased_curve_is_the_mean_best_over_every_k_subset():
    curve = tuning.expected_best(SCORES)
    for k in range(1, len(SCORES) + 1):
        subsets = list(itertools.combinations(SCORES, k))
        assert curve[k - 1] == pytest.approx(np.mean([max(s) for s in subsets]), abs=1e-12)
    assert curve[0] == pytest.approx(np.mean(SCORES)) and curve[-1] == max(SCORES)
    assert np.all(np.diff(curve) >= -1e-15)  # more trials never hurt in expectation


def test_lower_is_better_gives_the_expected_minimum():
    fids = [88.1, 72.4, 95.0, 70.2, 81.3]
    curve = tuning.expected_best(fids, higher_is_better=False)
    for k in range(1, len(fids) + 1):
        assert curve[k - 1] == pytest.approx(np.mean([min(s) for s in itertools.combinations(fids, k)]))
    assert curve[-1] == min(fids)


def test_the_with_replacement_curve_is_the_mean_best_over_every_k_tuple():
    scores = [0.3, 0.9, 0.5, 0.7]
    curve = tuning.expected_best_with_replacement(scores, ks=[1, 2, 3])
    for k, value in zip([1, 2, 3], curve):
        tuples = list(itertools.product(scores, repeat=k))
        assert value == pytest.approx(np.mean([max(t) for t in tuples]), abs=1e-12)
    # biased low against the subsets' mean once k > 1 (repeats lower the best)
    assert np.all(curve[1:] < tuning.expected_best(scores)[1:3])


def test_the_bootstrap_band_is_seeded_and_holds_the_curve():
    low, high = tuning.bootstrap_band(SCORES, resamples=400, seed=3)
    again = tuning.bootstrap_band(SCORES, resamples=400, seed=3)
    assert np.array_equal(low, again[0]) and np.array_equal(high, again[1])
    curve = tuning.expected_best(SCORES)
    assert np.all(low <= curve + 1e-12) and np.all(curve <= high + 1e-12)
    assert np.all(low >= min(SCORES)) and np.all(high <= max(SCORES))


@pytest.mark.parametrize("bad", [[], [0.1, float("nan")], [[0.1, 0.2]]])
def test_bad_scores_are_refused(bad):
    with pytest.raises(ValueError):
        tuning.expected_best(bad)
