"""Statistics over seeds and the leaderboard built on them, against known values."""

from __future__ import annotations

import math

import pytest

from genbench.render import leaderboard
from genbench.results import stats


def test_confidence_half_width_uses_the_t_distribution():
    s = stats.summarize([1.0, 2.0, 3.0])
    # t(0.975, 2 degrees of freedom) = 4.3027 (any t table); std 1, n 3
    assert s.mean == 2.0 and s.std == 1.0 and s.n == 3
    assert s.half_width == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4)
    five = stats.summarize([10, 12, 11, 13, 9])  # t(0.975, 4) = 2.7764, std sqrt(2.5)
    assert five.half_width == pytest.approx(2.7764 * math.sqrt(2.5) / math.sqrt(5), abs=1e-4)


def test_summaries_skip_missing_values_and_say_when_there_is_no_interval():
    assert stats.summarize([None, 4.0]).n == 1 and math.isnan(stats.summarize([4.0]).half_width)
    assert math.isnan(stats.summarize([]).mean) and math.isnan(stats.summarize([float("nan")]).mean)


def test_welch_p_value_matches_the_textbook_example():
    # means 2 and 5, variances 1 and 1, n 3 each: t = -3.674, df = 4, p = 0.0213
    assert stats.welch_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.0213, abs=5e-4)
    assert math.isnan(stats.welch_p([1.0], [2.0, 3.0]))
    assert stats.welch_p([2, 2], [2, 2]) == 1.0 and stats.welch_p([2, 2], [3, 3]) == 0.0


@pytest.mark.parametrize("mean, half, text", [
    (73.524, 4.1, "73.5 ± 4.1"), (0.05234, 0.01234, "0.052 ± 0.012"), (224.4, 12.3, "224 ± 12"),
    (64.3, math.nan, "64.30"), (0.0523, math.nan, "0.0523"), (math.nan, 1.0, "-"), (5.0, 0.0, "5 ± 0"), (0.25, 0.0, "0.25 ± 0"),
])
def test_values_are_shown_to_the_precision_of_their_interval(mean, half, text):
    assert stats.format_value(mean, half) == text


def _records(values: dict[str, list[float | None]], higher: bool = False) -> list[dict]:
    return [{"run_id": f"{label}-{i}", "label": label, "model": label, "seed": i, "status": "ok",
             "options": {}, "budget_used": {"seconds": 1.0, "steps": 10},
             "metrics": {"m": v}, "metric_info": {"m": {"unit": "u", "higher_is_better": higher}}}
            for label, vs in values.items() for i, v in enumerate(vs)]


def test_leaderboard_marks_the_best_and_the_statistically_tied():
    records = _records({"a": [10.0, 10.5, 9.5], "b": [10.4, 11.6, 9.9], "c": [20.0, 20.5, 19.5],
                        "d": [None, None, None]})
    board = leaderboard.build(records, ["m"], "m", "t")
    assert [r.label for r in board.rows] == ["a", "b", "c", "d"]  # lower is better; no value last
    a, b, c, d = (r.cells["m"] for r in board.rows)
    assert a.best and not a.tied and b.tied and not b.best and not c.tied and not c.best
    assert d.text() == "-"
    md = leaderboard.markdown(board)
    assert "| m ↓ (u)" in md and f"**{a.text()}**" in md and f"{b.text()}" in md and b.text().endswith("†")
    assert "Welch" in md and "95%" in md
    up = leaderboard.build(_records({"a": [1.0, 1.1], "b": [5.0, 5.2]}, higher=True), ["m"], "m", "t")
    assert [r.label for r in up.rows] == ["b", "a"] and up.rows[0].cells["m"].best


def test_rich_leaderboard_drops_metrics_that_do_not_fit():
    records = _records({"a": [1.0, 2.0]})
    for r in records:
        r["metrics"].update({f"x{i}": 1.0 for i in range(20)})
    board = leaderboard.build(records, ["m"] + [f"x{i}" for i in range(20)], "m", "t")
    table = leaderboard.rich_table(board, width=80)
    assert 2 < len(table.columns) < 22 and "more metrics in leaderboard.md" in table.caption
