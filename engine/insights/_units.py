"""Units of recorded metrics: the usual spellings in, one stored unit per dimension out.

A value is stored in its dimension's canonical unit (seconds, megabytes of 1024 kB,
percent), so one metric's samples are comparable whatever spelling recorded them.
A metric whose name says what it measures (`duration`, `memory_mb`, `cpu_percent`) only
accepts a unit of that dimension, and the refusal lists the spellings it would take.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Dimension", "NormalisedValue", "check_dimension", "dimension_of_metric", "known_spellings", "normalise"]


@dataclass(frozen=True)
class Dimension:
    name: str
    canonical: str
    factors: dict[str, float]  # spelling -> factor to the canonical unit (matched without case)

    def spellings(self) -> str:
        return ", ".join(sorted(self.factors, key=lambda s: (self.factors[s], s.lower())))

    def factor(self, unit: str) -> float | None:
        key = unit.strip().lower()
        return next((f for s, f in self.factors.items() if s.lower() == key), None)


_KIB = 1 / 1024
TIME = Dimension("time", "s", {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "ms": 1e-3, "msec": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3,
    "us": 1e-6, "microseconds": 1e-6,
    "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
})
# Memory figures are binary, as the rest of the insights (1 MB = 1024 kB = 1024 * 1024 bytes):
# "MB" and "MiB" are the same unit here, as `ps`, `top` and cgroups mean them.
MEMORY = Dimension("memory", "MB", {
    "B": 1 / (1024 * 1024), "byte": 1 / (1024 * 1024), "bytes": 1 / (1024 * 1024),
    "kB": _KIB, "KiB": _KIB, "kilobytes": _KIB,
    "MB": 1, "MiB": 1, "megabytes": 1,
    "GB": 1024, "GiB": 1024, "gigabytes": 1024,
    "TB": 1024 * 1024, "TiB": 1024 * 1024,
})
PERCENT = Dimension("percentage", "percent", {"%": 1, "percent": 1, "pct": 1, "percentage": 1})
_OTHER = {"count": "count", "ratio": "ratio", "s/run": "s/run", "s/day": "s/day"}
DIMENSIONS = (TIME, MEMORY, PERCENT)

# Metric names whose dimension is known from the name (the original design's and ours).
_BY_NAME: tuple[tuple[re.Pattern[str], Dimension], ...] = (
    (re.compile(r"(^|[._-])(duration|time|latency|elapsed|seconds|wait)([._-]|$)|_s$|_ms$"), TIME),
    (re.compile(r"(^|[._-])(memory|mem|rss)([._-]|$)|_mb$|_bytes$|_kb$"), MEMORY),
    (re.compile(r"(^|[._-])(percent|pct|utilization|utilisation)([._-]|$)|^cpu$|^cpu_percent$"), PERCENT),
)


@dataclass(frozen=True)
class NormalisedValue:
    value: float
    unit: str


def dimension_of_metric(name: str) -> Dimension | None:
    """The dimension a metric's name implies, or None when the name does not say."""
    lowered = name.lower()
    for pattern, dim in _BY_NAME:
        if pattern.search(lowered):
            return dim
    return None


def _dimension_of_unit(unit: str) -> Dimension | None:
    return next((d for d in DIMENSIONS if d.factor(unit) is not None), None)


def known_spellings() -> str:
    return ", ".join([d.spellings() for d in DIMENSIONS] + sorted(_OTHER))


def normalise(value: float, unit: str) -> NormalisedValue:
    """The value in its dimension's stored unit.

    Raises:
        ValueError: an unknown unit (the message lists the accepted spellings).
    """
    if unit in _OTHER:
        return NormalisedValue(value, _OTHER[unit])
    dim = _dimension_of_unit(unit)
    if dim is None:
        raise ValueError(f"unknown unit {unit!r}; use one of {known_spellings()}")
    factor = dim.factor(unit)
    assert factor is not None
    return NormalisedValue(value * factor, dim.canonical)


def check_dimension(name: str, unit: str) -> None:
    """Refuse a unit of another dimension than the metric's name says it measures.

    Raises:
        ValueError: the unit does not fit (the message names the spellings that do).
    """
    expected = dimension_of_metric(name)
    if expected is not None and _dimension_of_unit(unit) is not expected:
        raise ValueError(
            f"{unit!r} is not a unit of {expected.name}, which {name!r} measures; "
            f"use one of {expected.spellings()} (stored as {expected.canonical!r})"
        )
