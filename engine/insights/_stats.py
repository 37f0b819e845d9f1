"""Descriptive statistics and least-squares trends: pure functions over numbers.

The SQL aggregations in `_queries.py` compute the same figures inside SQLite (so a
million rows never become a Python list); the definitions here are the reference
the tests hold the SQL to:

- median: the middle value, or the mean of the two middle values for an even count;
- p95: nearest rank, the value at rank ceil(0.95 * n) in ascending order;
- stddev: the sample standard deviation (n - 1), undefined (None) below two samples.

A trend is a least-squares line fitted from running sums (n, Σx, Σy, Σxx, Σxy, Σyy),
which SQL produces in one pass. Its verdict is `increasing` or `decreasing` only when
there are enough samples, the slope is distinguishable from noise (|t| >= 2) and the
fitted change across the window is at least 5% of the mean; otherwise `stable`, or
`insufficient_data` with the count that was available.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "MIN_TREND_SAMPLES",
    "Fit",
    "Sums",
    "Summary",
    "SumsBuilder",
    "TrendVerdict",
    "fit_line",
    "percentile_rank",
    "summarize",
    "sums_of",
    "verdict",
]

MIN_TREND_SAMPLES = 5
# Below this fitted relative change over the window a trend is called stable.
_STABLE_FRACTION = 0.05
# |slope / standard error| needed before a slope counts as real.
_T_THRESHOLD = 2.0

TrendVerdict = Literal["increasing", "decreasing", "stable", "insufficient_data"]


@dataclass(frozen=True)
class Summary:
    count: int
    mean: float
    median: float
    p95: float
    min: float
    max: float
    stddev: float | None


def percentile_rank(n: int, fraction: float) -> int:
    """1-based nearest rank of a percentile among n sorted values."""
    return max(1, math.ceil(fraction * n - 1e-9))


def summarize(values: Sequence[float]) -> Summary | None:
    """Summary of the values, or None when there are none."""
    n = len(values)
    if n == 0:
        return None
    ordered = sorted(values)
    mean = math.fsum(ordered) / n
    if n % 2:
        median = ordered[n // 2]
    else:
        median = (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    p95 = ordered[percentile_rank(n, 0.95) - 1]
    stddev = math.sqrt(math.fsum((v - mean) ** 2 for v in ordered) / (n - 1)) if n > 1 else None
    return Summary(n, mean, median, p95, ordered[0], ordered[-1], stddev)


@dataclass(frozen=True)
class Sums:
    """Running sums of (x, y) pairs: everything a least-squares line needs."""

    n: int
    sx: float
    sy: float
    sxx: float
    sxy: float
    syy: float


def sums_of(points: Iterable[tuple[float, float]]) -> Sums:
    builder = SumsBuilder()
    for x, y in points:
        builder.add(x, y)
    return builder.sums()


class SumsBuilder:
    """Accumulates Sums one point at a time (for streamed rows: nothing is kept)."""

    __slots__ = ("_hi", "_lo", "n", "sx", "sxx", "sxy", "sy", "syy")

    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sy = self.sxx = self.sxy = self.syy = 0.0
        self._lo = math.inf
        self._hi = -math.inf

    def add(self, x: float, y: float) -> None:
        self.n += 1
        self.sx += x
        self.sy += y
        self.sxx += x * x
        self.sxy += x * y
        self.syy += y * y
        if x < self._lo:
            self._lo = x
        if x > self._hi:
            self._hi = x

    @property
    def span(self) -> float:
        return self._hi - self._lo if self.n else 0.0

    def sums(self) -> Sums:
        return Sums(self.n, self.sx, self.sy, self.sxx, self.sxy, self.syy)


@dataclass(frozen=True)
class Fit:
    slope: float
    intercept: float
    stderr: float | None  # standard error of the slope; None with fewer than 3 points
    x_span: float  # max(x) - min(x) is not in the sums; the caller supplies it


def fit_line(s: Sums, x_span: float) -> Fit | None:
    """Least-squares line through the points; None when x does not vary (or n < 2)."""
    if s.n < 2:
        return None
    sxx_c = s.sxx - s.sx * s.sx / s.n  # Σ(x - x̄)²
    if sxx_c <= 1e-12 * max(1.0, abs(s.sxx)):
        return None
    sxy_c = s.sxy - s.sx * s.sy / s.n
    syy_c = s.syy - s.sy * s.sy / s.n
    slope = sxy_c / sxx_c
    intercept = (s.sy - slope * s.sx) / s.n
    stderr = None
    if s.n > 2:
        residual = max(0.0, syy_c - slope * sxy_c)
        stderr = math.sqrt(residual / (s.n - 2) / sxx_c)
    return Fit(slope, intercept, stderr, x_span)


def verdict(s: Sums, fit: Fit | None) -> tuple[TrendVerdict, str]:
    """A plain verdict on a fitted trend, with the reason in words."""
    if s.n < MIN_TREND_SAMPLES:
        return (
            "insufficient_data",
            f"{s.n} sample(s) in the window; a trend needs at least {MIN_TREND_SAMPLES}",
        )
    if fit is None:
        return "insufficient_data", "all samples share one x value; no slope can be fitted"
    mean = s.sy / s.n
    change = fit.slope * fit.x_span
    relative = abs(change) / abs(mean) if mean else math.inf
    if fit.stderr is not None and fit.stderr > 0 and abs(fit.slope) / fit.stderr < _T_THRESHOLD:
        return "stable", f"slope is within noise (|t| = {abs(fit.slope) / fit.stderr:.1f} < {_T_THRESHOLD:g})"
    if relative < _STABLE_FRACTION:
        return (
            "stable",
            f"fitted change over the window is {relative:.1%} of the mean (< {_STABLE_FRACTION:.0%})",
        )
    word: TrendVerdict = "increasing" if fit.slope > 0 else "decreasing"
    return word, f"fitted change over the window is {change:+.3g} ({relative:.1%} of the mean)"
