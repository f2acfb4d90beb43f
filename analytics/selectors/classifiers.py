"""Classifier performance against human labels, read only from ``ClassifierRollup`` (plus the drill-down).

Definitions (weighted counts: 1 per item for ``decision`` and ``imported`` truth, 1/inclusion probability for
``qa``; the truth sources and the ``any`` pseudo-category are defined in ``analytics.rollups.classifiers``):

- flagged at threshold t: score >= t, applied at bucket edge k = ceil(100 t) (the hundredth at or above
  t); TP/FP = positive/negative weight in buckets >= k, FN/TN = in buckets < k.
- precision TP/(TP+FP); recall TP/(TP+FN); FPR FP/(FP+TN); F1 2PR/(P+R); prevalence
  (TP+FN)/(all); lift precision/prevalence. Undefined ratios (0/0) are None.
- active threshold: ``settings.ANALYTICS_CLASSIFIER_THRESHOLDS[category]``, else its ``"default"`` (0.5).
- PR curve: one point per bucket edge that holds scores, highest first; AUPRC is the step-wise average
  precision sum((R_k - R_{k+1}) P_k) over those edges, which is what scikit-learn's
  ``average_precision_score`` returns for the bucketed scores (with sample weights for ``qa``).
- threshold for a target precision: the lowest edge holding scores whose precision reaches the target
  (auto-action above it); for a target recall: the highest such edge whose recall still reaches it
  (send to review above it). Edges are scores seen in the data, as in ``precision_recall_curve``.
- calibration: 10 bins of 10 buckets ([0, 0.1), ... [0.9, 1.0]); mean predicted = weighted mean score,
  observed = weighted positive share.
- drift: the same figures per ISO week, plus the weighted mean score.

The period is whole weeks: a ``MetricFilter`` covers every week it touches. ``queue_id`` and
``vendor_id`` select the human decision's queue and the deciding reviewer's vendor (for QA: the
sampled decision's; for ``imported``: the item's queue, and no vendor). ``policy_id`` keeps only the categories
that policy maps to (and ``any``, which is not per policy); for any other category every figure is empty.
``model_version=None`` sums every version of the backend.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from functools import wraps
from typing import Any, TypeVar

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db.models import FloatField, OuterRef, Q, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Greatest

from analytics.filters import MetricFilter
from analytics.models import (
    ANY_VIOLATION,
    BUCKETS,
    ClassifierRollup,
    ClassifierRollupCursor,
    ClassifierView,
    TruthSource,
)
from analytics.rollups import (
    BUCKET_EPSILON,
    CATEGORIES,
    category_policies,
    current_final_decisions,
    latest_imported_labels,
    latest_qa_samples,
    score_value,
    week_bounds,
    week_start,
)
from ops_platform.core.errors import ApplicationError
from ops_platform.core.figures import wilson_interval, wilson_intervals
from ops_platform.core.models import ClassifierCategory, Policy
from queues.models import ReviewItem
from queues.selectors import ground_truth_latest
from routing.models import ClassifierScore

CALIBRATION_BINS = 10
CELLS = ("tp", "fp", "fn", "tn", "positive", "negative", "flagged", "all")
# Figures cached per rewrite of the rollups (``per_rollup_refresh``): a day at most, a rewrite changes the key.
CACHE_SECONDS = 24 * 3600

T = TypeVar("T")


def rollups_generation() -> int:
    """How many times the classifier rollups were rewritten (``week_replace``); 0 before the first refresh."""
    return ClassifierRollupCursor.objects.filter(name="classifier").values_list("generation", flat=True).first() or 0


def per_rollup_refresh(fn: Callable[..., T]) -> Callable[..., T]:
    """Cache a selector's result under its arguments and everything else it reads: the rollups' generation, the
    active thresholds and the filter's policy's categories. The summary, PR curve (with its Wilson intervals and
    bootstrap), calibration and drift are computed once per refresh of the rollups, not on every page (the
    periodic refresh warms the default period's: ``analytics.panels.charts_warm``)."""

    @wraps(fn)
    def cached(f: MetricFilter, **kwargs: Any) -> T:
        thresholds = getattr(settings, "ANALYTICS_CLASSIFIER_THRESHOLDS", {})
        what = [fn.__name__, asdict(f), kwargs, rollups_generation(), thresholds, sorted(_policy_categories(f) or [])]
        body = json.dumps(what, sort_keys=True, default=str)
        key = "analytics:clf:" + hashlib.sha256(body.encode()).hexdigest()
        hit: T | None = cache.get(key)
        if hit is None:
            hit = fn(f, **kwargs)
            cache.set(key, hit, CACHE_SECONDS)
        return hit

    return cached


def active_threshold(category: str) -> float:
    thresholds: dict[str, float] = getattr(settings, "ANALYTICS_CLASSIFIER_THRESHOLDS", {})
    return float(thresholds.get(category, thresholds.get("default", 0.5)))


def threshold_edge(threshold: float) -> int:
    """The bucket edge a threshold is applied at: ceil(100 t), 0..100 (100 flags nothing)."""
    return int(min(max(math.ceil(threshold * BUCKETS - BUCKET_EPSILON), 0), BUCKETS))


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


class Row:
    """Rendering help shared by the result rows: a flat dict of JSON/CSV-ready values."""

    def as_row(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, date) else v for k, v in asdict(self).items()}  # type: ignore[call-overload]


# --- bucket arithmetic (pure; the selectors below only load the arrays) ------------------------------


@dataclass
class BucketCounts:
    """Weighted positive/negative counts, weighted score sums and raw counts per score bucket."""

    positive: np.ndarray = field(default_factory=lambda: np.zeros(BUCKETS))
    negative: np.ndarray = field(default_factory=lambda: np.zeros(BUCKETS))
    score_sum: np.ndarray = field(default_factory=lambda: np.zeros(BUCKETS))
    n: np.ndarray = field(default_factory=lambda: np.zeros(BUCKETS, dtype=np.int64))

    def add(self, bucket: int, positive: float, negative: float, score_sum: float, n: int) -> None:
        self.positive[bucket] += positive
        self.negative[bucket] += negative
        self.score_sum[bucket] += score_sum
        self.n[bucket] += n

    @property
    def total(self) -> float:
        return float(self.positive.sum() + self.negative.sum())

    def _from_top(self) -> tuple[np.ndarray, np.ndarray]:
        """TP and FP weight flagged at each edge k = 0..99 (cumulative from the top bucket down)."""
        return np.cumsum(self.positive[::-1])[::-1], np.cumsum(self.negative[::-1])[::-1]

    def at_edge(self, edge: int, *, threshold: float | None = None) -> ThresholdMetrics:
        tp, fp = float(self.positive[edge:].sum()), float(self.negative[edge:].sum())
        fn, tn = float(self.positive[:edge].sum()), float(self.negative[:edge].sum())
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        prevalence = _ratio(tp + fn, tp + fp + fn + tn)
        f1 = None
        if precision is not None and recall is not None and precision + recall > 0:
            f1 = 2 * precision * recall / (precision + recall)
        return ThresholdMetrics(
            threshold=edge / BUCKETS if threshold is None else threshold,
            edge=edge / BUCKETS,
            tp=tp,
            fp=fp,
            fn=fn,
            tn=tn,
            n=int(self.n.sum()),
            precision=precision,
            recall=recall,
            fpr=_ratio(fp, fp + tn),
            f1=f1,
            prevalence=prevalence,
            lift=None if precision is None or not prevalence else precision / prevalence,
        )

    def at(self, threshold: float) -> ThresholdMetrics:
        return self.at_edge(threshold_edge(threshold), threshold=threshold)

    def pr_points(self) -> list[PrPoint]:
        """One point per edge holding scores, highest threshold first."""
        tps, fps = self._from_top()
        positives = float(self.positive.sum())
        points = []
        edges = [k for k in range(BUCKETS - 1, -1, -1) if self.positive[k] + self.negative[k] > 0]
        flagged = [float(tps[k] + fps[k]) for k in edges]
        hits = [float(tps[k]) for k in edges]
        precision_cis = wilson_intervals(hits, flagged)
        recall_cis = wilson_intervals(hits, [positives] * len(edges))
        for k, precision_ci, recall_ci in zip(edges, precision_cis, recall_cis, strict=True):
            tp, fp = float(tps[k]), float(fps[k])
            points.append(
                PrPoint(
                    threshold=k / BUCKETS,
                    precision=tp / (tp + fp),
                    recall=_ratio(tp, positives),
                    tp=tp,
                    fp=fp,
                    flagged=tp + fp,
                    positives=positives,
                    precision_low=precision_ci[0],
                    precision_high=precision_ci[1],
                    recall_low=recall_ci[0],
                    recall_high=recall_ci[1],
                )
            )
        return points

    def average_precision(self) -> float | None:
        if self.positive.sum() <= 0:
            return None
        ap, previous_recall = 0.0, 0.0
        for point in self.pr_points():
            assert point.recall is not None
            ap += (point.recall - previous_recall) * point.precision
            previous_recall = point.recall
        return ap

    def average_precision_interval(
        self, *, resamples: int = 200, seed: int = 0, confidence: float = 0.95
    ) -> tuple[float | None, float | None]:
        """A seeded percentile bootstrap of ``average_precision``: the (bucket, label) counts resampled as a
        multinomial of the same total, the average precision recomputed for each draw."""
        total = self.total
        if self.positive.sum() <= 0 or total <= 0:
            return None, None
        cells = np.concatenate([self.positive, self.negative])
        draws = np.random.default_rng(seed).multinomial(round(total), cells / cells.sum(), size=resamples)
        pos, neg = draws[:, :BUCKETS][:, ::-1].astype(float), draws[:, BUCKETS:][:, ::-1].astype(float)
        tps, fps = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tps + fps > 0, tps / (tps + fps), 0.0)
            ap = (pos * precision).sum(axis=1) / pos.sum(axis=1)
        ap = ap[np.isfinite(ap)]
        if not len(ap):
            return None, None
        tail = (1 - confidence) / 2 * 100
        return float(np.percentile(ap, tail)), float(np.percentile(ap, 100 - tail))

    def threshold_for_precision(self, target: float) -> ThresholdMetrics | None:
        for point in reversed(self.pr_points()):  # lowest threshold first
            if point.precision >= target:
                return self.at_edge(round(point.threshold * BUCKETS))
        return None

    def threshold_for_recall(self, target: float) -> ThresholdMetrics | None:
        for point in self.pr_points():  # highest threshold first
            if point.recall is not None and point.recall >= target:
                return self.at_edge(round(point.threshold * BUCKETS))
        return None

    def calibration(self, bins: int = CALIBRATION_BINS) -> list[CalibrationBin]:
        width = BUCKETS // bins
        out = []
        parts = [slice(b * width, (b + 1) * width) for b in range(bins)]
        observed_cis = wilson_intervals(
            [float(self.positive[p].sum()) for p in parts],
            [float(self.positive[p].sum() + self.negative[p].sum()) for p in parts],
        )
        for b in range(bins):
            part = parts[b]
            pos, neg = float(self.positive[part].sum()), float(self.negative[part].sum())
            observed_ci = observed_cis[b]
            out.append(
                CalibrationBin(
                    lower=b * width / BUCKETS,
                    upper=(b + 1) * width / BUCKETS,
                    mean_predicted=_ratio(float(self.score_sum[part].sum()), pos + neg),
                    observed_rate=_ratio(pos, pos + neg),
                    weight=pos + neg,
                    n=int(self.n[part].sum()),
                    observed_low=observed_ci[0],
                    observed_high=observed_ci[1],
                )
            )
        return out

    def mean_score(self) -> float | None:
        return _ratio(float(self.score_sum.sum()), self.total)


# --- result rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdMetrics(Row):
    threshold: float
    edge: float  # the bucket edge actually applied
    tp: float
    fp: float
    fn: float
    tn: float
    n: int
    precision: float | None
    recall: float | None
    fpr: float | None
    f1: float | None
    prevalence: float | None
    lift: float | None


@dataclass(frozen=True)
class PrPoint(Row):
    threshold: float
    precision: float
    recall: float | None
    tp: float
    fp: float
    # What each ratio rests on and its 95% Wilson interval: precision on the flagged items (tp + fp), recall on
    # the positives; from too few of them the page says so instead of the figure (``figure_text``).
    flagged: float = 0.0
    positives: float = 0.0
    precision_low: float | None = None
    precision_high: float | None = None
    recall_low: float | None = None
    recall_high: float | None = None


@dataclass(frozen=True)
class PrCurve(Row):
    points: list[PrPoint]
    auprc: float | None
    prevalence: float | None
    auprc_low: float | None = None  # a seeded bootstrap's 95% interval (``average_precision_interval``)
    auprc_high: float | None = None


@dataclass(frozen=True)
class CalibrationBin(Row):
    lower: float
    upper: float
    mean_predicted: float | None
    observed_rate: float | None
    weight: float
    n: int
    # The observed rate's 95% Wilson interval (weighted counts).
    observed_low: float | None = None
    observed_high: float | None = None


@dataclass(frozen=True)
class DriftWeek(Row):
    week: date
    precision: float | None
    recall: float | None
    auprc: float | None
    prevalence: float | None
    mean_score: float | None
    n: int
    # What precision and recall are made of, and their 95% intervals (Wilson; a bootstrap for AUPRC).
    tp: float = 0.0
    fp: float = 0.0
    positives: float = 0.0
    precision_low: float | None = None
    precision_high: float | None = None
    recall_low: float | None = None
    recall_high: float | None = None
    auprc_low: float | None = None
    auprc_high: float | None = None


@dataclass(frozen=True)
class ClassifierSummaryRow(Row):
    backend: str
    model_version: str
    category: str
    threshold: float
    precision: float | None
    recall: float | None
    fpr: float | None
    f1: float | None
    prevalence: float | None
    lift: float | None
    auprc: float | None
    n: int
    # What the ratios are made of (the drill-down lists the tp and fp items) and their 95% intervals: Wilson for
    # precision and recall, a bootstrap for AUPRC.
    tp: float = 0.0
    fp: float = 0.0
    positives: float = 0.0
    precision_low: float | None = None
    precision_high: float | None = None
    recall_low: float | None = None
    recall_high: float | None = None
    auprc_low: float | None = None
    auprc_high: float | None = None


# --- loading ----------------------------------------------------------------------------------------


def _check(category: str, truth: str) -> None:
    if category not in ClassifierCategory.values and category != ANY_VIOLATION:
        raise ApplicationError(f"Unknown classifier category '{category}'.", field="category")
    if truth not in TruthSource.values:
        raise ApplicationError(f"Unknown truth source '{truth}'.", field="truth")


def _policy_categories(f: MetricFilter) -> set[str] | None:
    if f.policy_id is None:
        return None
    categories = Policy.objects.filter(pk=f.policy_id).values_list("classifier_categories", flat=True).first()
    return {*(categories or []), ANY_VIOLATION}


def _rollups(
    f: MetricFilter,
    *,
    truth: str,
    category: str | None = None,
    backend: str | None = None,
    model_version: str | None = None,
) -> QuerySet[ClassifierRollup]:
    rows = ClassifierRollup.objects.filter(truth=truth, week__gte=week_start(f.start), week__lte=f.end)
    if category is not None:
        rows = rows.filter(category=category)
    if backend is not None:
        rows = rows.filter(backend=backend)
    if model_version is not None:
        rows = rows.filter(model_version=model_version)
    if f.queue_id is not None:
        rows = rows.filter(queue_id=f.queue_id)
    if f.vendor_id is not None:
        rows = rows.filter(vendor_id=f.vendor_id)
    allowed = _policy_categories(f)
    if allowed is not None:
        rows = rows.filter(category__in=allowed)
    return rows


_SUMS = {"p": Sum("positive"), "ng": Sum("negative"), "s": Sum("score_sum"), "k": Sum("n")}


def _fill(counts: BucketCounts, rows: Iterable[dict[str, Any]]) -> BucketCounts:
    for row in rows:
        counts.add(row["bucket"], row["p"] or 0.0, row["ng"] or 0.0, row["s"] or 0.0, row["k"] or 0)
    return counts


def classifier_bucket_counts(
    f: MetricFilter, *, category: str, backend: str, model_version: str | None = None, truth: str = "decision"
) -> BucketCounts:
    """The slice's per-bucket sums over the period: every other selector's input."""
    _check(category, truth)
    rows = _rollups(f, truth=truth, category=category, backend=backend, model_version=model_version)
    return _fill(BucketCounts(), rows.values("bucket").annotate(**_SUMS).order_by())


# --- selectors --------------------------------------------------------------------------------------


def classifier_metrics_at(
    f: MetricFilter,
    *,
    category: str,
    backend: str,
    model_version: str | None = None,
    truth: str = "decision",
    threshold: float | None = None,
) -> ThresholdMetrics:
    """Confusion counts, precision, recall, FPR, F1, prevalence and lift at the (active) threshold."""
    counts = classifier_bucket_counts(f, category=category, backend=backend, model_version=model_version, truth=truth)
    return counts.at(active_threshold(category) if threshold is None else threshold)


@per_rollup_refresh
def classifier_pr_curve(
    f: MetricFilter, *, category: str, backend: str, model_version: str | None = None, truth: str = "decision"
) -> PrCurve:
    """PR points per bucket edge (highest threshold first) and the AUPRC."""
    counts = classifier_bucket_counts(f, category=category, backend=backend, model_version=model_version, truth=truth)
    prevalence = _ratio(float(counts.positive.sum()), counts.total)
    low, high = counts.average_precision_interval()
    return PrCurve(
        points=counts.pr_points(),
        auprc=counts.average_precision(),
        prevalence=prevalence,
        auprc_low=low,
        auprc_high=high,
    )


def classifier_threshold_for_precision(
    f: MetricFilter,
    *,
    category: str,
    backend: str,
    target: float,
    model_version: str | None = None,
    truth: str = "decision",
) -> ThresholdMetrics | None:
    """The lowest threshold whose precision reaches ``target`` (auto-action at or above it); None if none does."""
    counts = classifier_bucket_counts(f, category=category, backend=backend, model_version=model_version, truth=truth)
    return counts.threshold_for_precision(target)


def classifier_threshold_for_recall(
    f: MetricFilter,
    *,
    category: str,
    backend: str,
    target: float,
    model_version: str | None = None,
    truth: str = "decision",
) -> ThresholdMetrics | None:
    """The highest threshold that still keeps recall at ``target`` (review at or above it); None if none does."""
    counts = classifier_bucket_counts(f, category=category, backend=backend, model_version=model_version, truth=truth)
    return counts.threshold_for_recall(target)


@per_rollup_refresh
def classifier_calibration(
    f: MetricFilter,
    *,
    category: str,
    backend: str,
    model_version: str | None = None,
    truth: str = "decision",
    bins: int = CALIBRATION_BINS,
) -> list[CalibrationBin]:
    """Mean predicted score against the observed positive rate in ``bins`` equal-width score bins."""
    if BUCKETS % bins:
        raise ApplicationError(f"Calibration bins must divide {BUCKETS}.", field="bins")
    counts = classifier_bucket_counts(f, category=category, backend=backend, model_version=model_version, truth=truth)
    return counts.calibration(bins)


@per_rollup_refresh
def classifier_drift(
    f: MetricFilter,
    *,
    category: str,
    backend: str,
    model_version: str | None = None,
    truth: str = "decision",
    threshold: float | None = None,
) -> list[DriftWeek]:
    """Per ISO week of the period: precision and recall at the (active) threshold, AUPRC, prevalence, mean score."""
    _check(category, truth)
    threshold = active_threshold(category) if threshold is None else threshold
    rows = _rollups(f, truth=truth, category=category, backend=backend, model_version=model_version)
    by_week: dict[date, BucketCounts] = {}
    for row in rows.values("week", "bucket").annotate(**_SUMS).order_by("week"):
        _fill(by_week.setdefault(row["week"], BucketCounts()), [row])
    weeks = []
    week = week_start(f.start)
    while week <= f.end:
        counts = by_week.get(week, BucketCounts())
        at = counts.at(threshold)
        precision_ci, recall_ci = wilson_interval(at.tp, at.tp + at.fp), wilson_interval(at.tp, at.tp + at.fn)
        auprc_ci = counts.average_precision_interval()
        weeks.append(
            DriftWeek(
                week=week,
                precision=at.precision,
                recall=at.recall,
                auprc=counts.average_precision(),
                prevalence=at.prevalence,
                mean_score=counts.mean_score(),
                n=at.n,
                tp=at.tp,
                fp=at.fp,
                positives=at.tp + at.fn,
                precision_low=precision_ci[0],
                precision_high=precision_ci[1],
                recall_low=recall_ci[0],
                recall_high=recall_ci[1],
                auprc_low=auprc_ci[0],
                auprc_high=auprc_ci[1],
            )
        )
        week += timedelta(days=7)
    return weeks


@per_rollup_refresh
def classifier_summary(
    f: MetricFilter,
    *,
    truth: str = "decision",
    backend: str | None = None,
    model_version: str | None = None,
    view: str = "category",
) -> list[ClassifierSummaryRow]:
    """One row per (backend, model version, category) with data: the figures at each category's active threshold;
    in the ``any`` view, one ``any`` row per (backend, model version)."""
    if truth not in TruthSource.values:
        raise ApplicationError(f"Unknown truth source '{truth}'.", field="truth")
    if view not in ClassifierView.values:
        raise ApplicationError(f"Unknown view '{view}'.", field="view")
    rows = _rollups(f, truth=truth, backend=backend, model_version=model_version)
    any_rows = Q(category=ANY_VIOLATION)
    rows = rows.filter(any_rows) if view == ClassifierView.ANY else rows.exclude(any_rows)
    groups: dict[tuple[str, str, str], BucketCounts] = {}
    for row in rows.values("backend", "model_version", "category", "bucket").annotate(**_SUMS).order_by():
        key = (row["backend"], row["model_version"], row["category"])
        _fill(groups.setdefault(key, BucketCounts()), [row])
    out = []
    for (backend_, version, category), counts in sorted(groups.items()):
        at = counts.at(active_threshold(category))
        precision_ci = wilson_interval(at.tp, at.tp + at.fp)
        recall_ci = wilson_interval(at.tp, at.tp + at.fn)
        auprc_ci = counts.average_precision_interval()
        out.append(
            ClassifierSummaryRow(
                backend=backend_,
                model_version=version,
                category=category,
                threshold=at.threshold,
                precision=at.precision,
                recall=at.recall,
                fpr=at.fpr,
                f1=at.f1,
                prevalence=at.prevalence,
                lift=at.lift,
                auprc=counts.average_precision(),
                n=at.n,
                tp=at.tp,
                fp=at.fp,
                positives=at.tp + at.fn,
                precision_low=precision_ci[0],
                precision_high=precision_ci[1],
                recall_low=recall_ci[0],
                recall_high=recall_ci[1],
                auprc_low=auprc_ci[0],
                auprc_high=auprc_ci[1],
            )
        )
    return out


def classifier_models(f: MetricFilter, *, truth: str = "decision") -> list[tuple[str, str]]:
    """The (backend, model version) pairs with rollups in the period, for filter menus."""
    rows = (
        _rollups(f, truth=truth).values_list("backend", "model_version").distinct().order_by("backend", "model_version")
    )
    return list(rows)


# --- drill-down -------------------------------------------------------------------------------------


def classifier_items(
    f: MetricFilter,
    *,
    category: str,
    backend: str,
    model_version: str | None = None,
    truth: str = "decision",
    cell: str = "fp",
    threshold: float | None = None,
    week: date | None = None,
) -> QuerySet[ReviewItem]:
    """The items behind a figure: ``cell`` is tp/fp/fn/tn at the (active) threshold, or positive/negative
    (by the human label), flagged (score at or above the threshold), or all; ``week`` narrows to one week.

    Applies the rollups' rules in SQL, annotated with ``clf_score`` (the latest score of the backend and
    model version) and ordered by it, highest first.
    """
    _check(category, truth)
    if cell not in CELLS:
        raise ApplicationError(f"Unknown cell '{cell}'; one of {', '.join(CELLS)}.", field="cell")
    allowed = _policy_categories(f)
    if allowed is not None and category not in allowed:
        return ReviewItem.objects.none()
    start, end = (
        week_bounds(week)
        if week is not None
        else (week_bounds(week_start(f.start))[0], week_bounds(week_start(f.end))[1])
    )
    policies = sorted(category_policies().get(category, set()))

    # A violation under a policy of the category; for ``any``, a violation under any policy.
    mapped = Q() if category == ANY_VIOLATION else Q(policy_id__in=policies)
    if truth == TruthSource.DECISION:
        decisions = current_final_decisions().filter(decided_at__gte=start, decided_at__lt=end)
        if f.queue_id is not None:
            decisions = decisions.filter(queue_id=f.queue_id)
        if f.vendor_id is not None:
            decisions = decisions.filter(vendor_id=f.vendor_id)
        items = ReviewItem.objects.filter(pk__in=decisions.values("item_id"))
        positive = Q(pk__in=decisions.filter(mapped, is_violation=True).values("item_id"))
    elif truth == TruthSource.IMPORTED:
        labels = latest_imported_labels().filter(item__received_at__gte=start, item__received_at__lt=end)
        if f.queue_id is not None:
            labels = labels.filter(item__queue_id=f.queue_id)
        if f.vendor_id is not None:
            labels = labels.none()  # imported labels have no vendor
        items = ReviewItem.objects.filter(pk__in=labels.values("item_id"))
        positive = Q(pk__in=labels.filter(mapped, is_violation=True).values("item_id"))
    else:
        samples = latest_qa_samples().filter(
            original_decided_at__gte=start, original_decided_at__lt=end, inclusion_probability__gt=0
        )
        if f.queue_id is not None:
            samples = samples.filter(original_queue_id=f.queue_id)
        if f.vendor_id is not None:
            samples = samples.filter(original_vendor_id=f.vendor_id)
        truths = ground_truth_latest()
        items = ReviewItem.objects.filter(pk__in=samples.values("item_id")).filter(pk__in=truths.values("item_id"))
        positive = Q(pk__in=truths.filter(mapped, is_violation=True).values("item_id"))

    scores = ClassifierScore.objects.filter(item_id=OuterRef("pk"), backend=backend)
    if model_version is not None:
        scores = scores.filter(model_version=model_version)
    value: Any = score_value(category)
    if category == ANY_VIOLATION:
        # The highest category score, as the rollups take it; -1 (below any score) for a category not scored.
        value = Greatest(*(Coalesce(score_value(c), Value(-1.0)) for c in CATEGORIES))
    score = Subquery(scores.order_by("-pk").annotate(value=value).values("value")[:1], output_field=FloatField())
    items = items.annotate(clf_score=score).filter(clf_score__isnull=False, clf_score__gte=0)
    edge = threshold_edge(active_threshold(category) if threshold is None else threshold)
    # Same rule as the buckets: bucket >= edge  <=>  score >= (edge - epsilon) / 100; edge 100 flags nothing.
    flagged = Q(clf_score__gte=(edge - BUCKET_EPSILON) / BUCKETS) if edge < BUCKETS else Q(pk__in=[])
    selection = {
        "tp": positive & flagged,
        "fp": ~positive & flagged,
        "fn": positive & ~flagged,
        "tn": ~positive & ~flagged,
        "positive": positive,
        "negative": ~positive,
        "flagged": flagged,
        "all": Q(),
    }[cell]
    return items.filter(selection).order_by("-clf_score", "pk")
