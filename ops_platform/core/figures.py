"""Figures from few observations, shown the same way on every page: a rate with its 95% interval, and "too few to
judge" instead of a figure that rests on fewer than ``MIN_POSITIVES`` positives or ``MIN_ITEMS`` items (a precision
of 100% from three items says nothing). Analytics tables, QA scorecards and model cards all call ``figure_text``
(templates through the ``figure`` tag in ``core/templatetags/figures.py``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from statsmodels.stats.proportion import proportion_confint

MIN_POSITIVES = 20
MIN_ITEMS = 30
TOO_FEW = "too few to judge"
CONFIDENCE = 0.95


def wilson_interval(successes: float, n: float, *, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """The Wilson score interval of successes / n (weighted counts allowed); (None, None) when n is 0."""
    if n <= 0:
        return None, None
    low, high = proportion_confint(min(successes, n), n, alpha=1 - confidence, method="wilson")
    return float(low), float(high)


def wilson_intervals(
    successes: Sequence[float], n: Sequence[float], *, confidence: float = CONFIDENCE
) -> list[tuple[float | None, float | None]]:
    """``wilson_interval`` of each pair, computed in one vectorised call (a curve's hundred points)."""
    s, t = np.asarray(successes, dtype=float), np.asarray(n, dtype=float)
    if not len(t):
        return []
    safe = np.where(t > 0, t, 1.0)
    low, high = proportion_confint(np.minimum(s, safe), safe, alpha=1 - confidence, method="wilson")
    return [(float(lo), float(hi)) if m > 0 else (None, None) for lo, hi, m in zip(low, high, t, strict=True)]


def too_few(*, items: float | None = None, positives: float | None = None) -> bool:
    """Whether a figure rests on too little to be judged: under MIN_ITEMS items or under MIN_POSITIVES positives."""
    return (items is not None and items < MIN_ITEMS) or (positives is not None and positives < MIN_POSITIVES)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def figure_text(
    value: float | None,
    low: float | None = None,
    high: float | None = None,
    *,
    items: float | None = None,
    positives: float | None = None,
    fmt: str = "{:.1%}",
) -> str:
    """ "83.3% [71.0%, 91.2%]", or "too few to judge (12 positives)", or "—" when there is no figure at all."""
    if value is None or not _finite(value):
        return "—"
    if positives is not None and positives < MIN_POSITIVES:
        return f"{TOO_FEW} ({positives:,.0f} positive{'' if round(positives) == 1 else 's'})"
    if items is not None and items < MIN_ITEMS:
        return f"{TOO_FEW} ({items:,.0f} item{'' if round(items) == 1 else 's'})"
    text = fmt.format(value)
    if _finite(low) and _finite(high):
        text += f" [{fmt.format(low)}, {fmt.format(high)}]"
    return text
