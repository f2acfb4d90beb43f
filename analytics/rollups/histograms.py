"""Latency histograms: durations kept as counts per log-scale bucket, so any period or slice is a sum of rows.

A duration of s seconds goes to bucket 0 when s < 1 and else to ``1 + floor(ln s / ln 1.02)``, so
bucket b >= 1 holds [1.02^(b-1), 1.02^b). Durations are clamped to [0, 60 days] (782 buckets). A percentile
is the inverted-CDF order statistic (numpy ``method="inverted_cdf"``: the smallest value with at least a
share q of the values at or below it), reported as its bucket's geometric midpoint 1.02^(b-0.5): within
sqrt(1.02) - 1 < 1% of the true order statistic for durations of 1 s to 60 days (bucket 0 reports 0.5 s).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

BUCKET_RATIO = 1.02
MAX_SECONDS = 60 * 24 * 3600.0
_LN_RATIO = math.log(BUCKET_RATIO)
MAX_BUCKET = 1 + math.floor(math.log(MAX_SECONDS) / _LN_RATIO)
# The documented bound: a reported percentile is within this relative error of the exact order statistic.
PERCENTILE_TOLERANCE = math.sqrt(BUCKET_RATIO) - 1


def buckets_of(seconds: np.ndarray) -> np.ndarray:
    """Bucket index of each duration (NaN in, -1 out: no value)."""
    s = np.clip(np.asarray(seconds, dtype=float), 0, MAX_SECONDS)
    with np.errstate(divide="ignore", invalid="ignore"):
        b = 1 + np.floor(np.log(np.maximum(s, 1.0)) / _LN_RATIO)
    b = np.where(s < 1, 0, np.minimum(b, MAX_BUCKET))
    return np.where(np.isnan(s), -1, b).astype(int)


def bucket_value(bucket: int) -> float:
    """The value a bucket reports: its geometric midpoint."""
    return 0.5 if bucket == 0 else BUCKET_RATIO ** (bucket - 0.5)


def histogram(seconds: Iterable[float]) -> dict[str, int]:
    b = buckets_of(np.fromiter(seconds, dtype=float))
    return {str(k): int(v) for k, v in sorted(Counter(b[b >= 0].tolist()).items())}


def hist_merge(histograms: Iterable[Mapping[str, int]]) -> Counter[int]:
    # Summed under the JSON's string keys, converted once at the end: a long period merges thousands of rows.
    total: Counter[str] = Counter()
    for h in histograms:
        total.update(h)
    return Counter({int(k): v for k, v in total.items()})


def hist_percentile(hist: Mapping[int, int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) of a merged histogram, by the inverted-CDF definition; None when empty."""
    n = sum(hist.values())
    if n == 0:
        return None
    rank = max(1, math.ceil(q * n - 1e-9))
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return bucket_value(bucket)
    return bucket_value(max(hist))
