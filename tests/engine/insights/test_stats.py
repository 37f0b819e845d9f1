"""The pure statistics: summaries, least-squares fits and trend verdicts."""

import math
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.insights._stats import MIN_TREND_SAMPLES, fit_line, summarize, sums_of, verdict


def test_summary_of_nothing_is_none() -> None:
    assert summarize([]) is None


def test_summary_of_known_values() -> None:
    s = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert s is not None
    assert (s.count, s.mean, s.median, s.min, s.max) == (5, 3.0, 3.0, 1.0, 5.0)
    assert s.p95 == 5.0
    assert s.stddev == pytest.approx(statistics.stdev([1, 2, 3, 4, 5]))


def test_summary_of_one_value_has_no_stddev() -> None:
    s = summarize([7.0])
    assert s is not None and s.stddev is None and s.median == 7.0 and s.p95 == 7.0


def test_p95_is_nearest_rank() -> None:
    s = summarize([float(i) for i in range(1, 101)])
    assert s is not None and s.p95 == 95.0 and s.median == 50.5


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=200))
def test_summary_matches_statistics_module(values: list[float]) -> None:
    s = summarize(values)
    assert s is not None
    assert s.median == pytest.approx(statistics.median(values))
    assert s.mean == pytest.approx(statistics.fmean(values), abs=1e-6)
    assert s.min <= s.median <= s.max and s.min <= s.p95 <= s.max
    rank = math.ceil(0.95 * len(values))
    assert s.p95 == sorted(values)[rank - 1]


def test_fit_recovers_a_line() -> None:
    points = [(float(x), 2.5 * x + 10) for x in range(10)]
    fit = fit_line(sums_of(points), x_span=9)
    assert fit is not None
    assert fit.slope == pytest.approx(2.5) and fit.intercept == pytest.approx(10)
    assert fit.stderr == pytest.approx(0, abs=1e-6)


def test_fit_needs_varying_x() -> None:
    assert fit_line(sums_of([(1.0, 2.0), (1.0, 3.0)]), 0) is None
    assert fit_line(sums_of([(1.0, 2.0)]), 0) is None


def test_verdict_increasing_decreasing_stable() -> None:
    up = [(float(x), 10 + x) for x in range(8)]
    down = [(float(x), 20 - x) for x in range(8)]
    flat = [(float(x), 10 + (0.5 if x % 2 else -0.5)) for x in range(8)]
    assert verdict(sums_of(up), fit_line(sums_of(up), 7))[0] == "increasing"
    assert verdict(sums_of(down), fit_line(sums_of(down), 7))[0] == "decreasing"
    assert verdict(sums_of(flat), fit_line(sums_of(flat), 7))[0] == "stable"


def test_verdict_says_when_there_are_too_few_samples() -> None:
    pts = [(float(x), 10.0 * x) for x in range(MIN_TREND_SAMPLES - 1)]
    word, why = verdict(sums_of(pts), fit_line(sums_of(pts), 3))
    assert word == "insufficient_data"
    assert f"{MIN_TREND_SAMPLES - 1} sample" in why


def test_tiny_slope_is_stable_even_when_exact() -> None:
    pts = [(float(x), 100 + 0.001 * x) for x in range(10)]
    assert verdict(sums_of(pts), fit_line(sums_of(pts), 9))[0] == "stable"
