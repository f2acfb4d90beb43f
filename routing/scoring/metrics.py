"""Figures for a scorer against labels: AUPRC, prevalence, lift, precision/recall at a threshold, and the
threshold that reaches a target precision. scikit-learn does the arithmetic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve


@dataclass(frozen=True)
class CategoryFigures:
    n: int
    positives: int
    prevalence: float
    auprc: float | None
    threshold: float | None
    precision_at_threshold: float | None
    recall_at_threshold: float | None
    target_precision: float
    threshold_for_target: float | None
    recall_at_target: float | None

    @property
    def lift(self) -> float | None:
        return self.auprc / self.prevalence if self.auprc is not None and self.prevalence else None

    def as_dict(self) -> dict[str, float | int | None]:
        return {**asdict(self), "lift": self.lift}


def category_figures(
    y_true: Sequence[int] | np.ndarray,
    y_score: Sequence[float] | np.ndarray,
    *,
    threshold: float | None,
    target_precision: float = 0.9,
) -> CategoryFigures:
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(y_score, dtype=float)
    positives = int(y.sum())
    n = len(y)
    prevalence = positives / n if n else 0.0
    if positives == 0 or positives == n:
        return CategoryFigures(n, positives, prevalence, None, threshold, None, None, target_precision, None, None)
    auprc = float(average_precision_score(y, s))
    precision_at = recall_at = None
    if threshold is not None:
        flagged = s >= threshold
        true_pos = int((flagged & (y == 1)).sum())
        precision_at = true_pos / int(flagged.sum()) if flagged.any() else None
        recall_at = true_pos / positives
    precision, recall, thresholds = precision_recall_curve(y, s)
    # precision[i] and recall[i] belong to thresholds[i]; the last point (recall 0) has no threshold.
    reaching = np.flatnonzero(precision[:-1] >= target_precision)
    threshold_for_target = recall_for_target = None
    if reaching.size:
        first = int(reaching[0])  # the lowest threshold that reaches the target keeps the most recall
        threshold_for_target, recall_for_target = float(thresholds[first]), float(recall[first])
    return CategoryFigures(
        n,
        positives,
        prevalence,
        auprc,
        threshold,
        precision_at,
        recall_at,
        target_precision,
        threshold_for_target,
        recall_for_target,
    )


def f1_threshold(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray) -> float | None:
    """The score threshold with the best F1: the default operating point a new model ships with."""
    y = np.asarray(y_true, dtype=int)
    if y.sum() == 0 or y.sum() == len(y):
        return None
    precision, recall, thresholds = precision_recall_curve(y, np.asarray(y_score, dtype=float))
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])


# Fewer positives than this and a figure's interval says "too few" instead of a range.
MIN_POSITIVES_FOR_INTERVAL = 10
BOOTSTRAP_RESAMPLES = 1000


@dataclass(frozen=True)
class Estimate:
    """A figure and its bootstrap 95% interval (percentile method); no interval when there are too few."""

    value: float | None
    low: float | None = None
    high: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class IntervalFigures:
    n: int
    positives: int
    prevalence: float
    target_precision: float
    auprc: Estimate
    roc_auc: Estimate
    recall_at_target: Estimate
    threshold_for_target: float | None
    resamples: int

    @property
    def too_few(self) -> bool:
        return self.positives < MIN_POSITIVES_FOR_INTERVAL or self.n - self.positives < MIN_POSITIVES_FOR_INTERVAL

    def as_dict(self) -> dict[str, object]:
        return {
            "n": self.n,
            "positives": self.positives,
            "prevalence": self.prevalence,
            "target_precision": self.target_precision,
            "auprc": self.auprc.as_dict(),
            "roc_auc": self.roc_auc.as_dict(),
            "recall_at_target": self.recall_at_target.as_dict(),
            "threshold_for_target": self.threshold_for_target,
            "resamples": self.resamples,
            "too_few": self.too_few,
        }


def _weighted_figures(y: np.ndarray, ends: np.ndarray, weights: np.ndarray, target: float) -> np.ndarray:
    """AUPRC, ROC AUC and recall at the target precision for each row of ``weights`` (how many times each
    example counts: 1 for the sample itself, bootstrap counts for a resample). ``y`` is ordered by descending
    score and ``ends`` marks the last example of each run of tied scores, so ties are one threshold as in
    scikit-learn. A row without positives or negatives gives NaN."""
    tp = np.cumsum(weights * y, axis=1)[:, ends]
    fp = np.cumsum(weights * (1 - y), axis=1)[:, ends]
    positives, negatives = tp[:, -1:], fp[:, -1:]
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / positives
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 1.0)
        auprc = np.sum(np.diff(recall, axis=1, prepend=0.0) * precision, axis=1)
        tpr, fpr = recall, fp / negatives
        roc = np.sum(
            np.diff(fpr, axis=1, prepend=0.0) * (tpr + np.hstack([np.zeros_like(tpr[:, :1]), tpr[:, :-1]])) / 2, axis=1
        )
        reaching = np.where(precision >= target, recall, 0.0).max(axis=1)
    undefined = (positives[:, 0] == 0) | (negatives[:, 0] == 0)
    out = np.column_stack([auprc, roc, reaching])
    out[undefined] = np.nan
    return out


def interval_figures(
    y_true: Sequence[int] | np.ndarray,
    y_score: Sequence[float] | np.ndarray,
    *,
    target_precision: float,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> IntervalFigures:
    """AUPRC, ROC AUC and recall at ``target_precision`` (0 when no threshold reaches it), each with a
    bootstrap 95% interval over ``resamples`` resamples of the examples; no interval under
    ``MIN_POSITIVES_FOR_INTERVAL`` positives or negatives."""
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(y_score, dtype=float)
    n, positives = len(y), int(y.sum())
    prevalence = positives / n if n else 0.0
    if positives == 0 or positives == n:
        empty = Estimate(None)
        return IntervalFigures(n, positives, prevalence, target_precision, empty, empty, empty, None, 0)
    order = np.argsort(-s, kind="mergesort")
    y, s = y[order], s[order]
    ends = np.append(np.flatnonzero(np.diff(s)), n - 1)
    point = _weighted_figures(y, ends, np.ones((1, n)), target_precision)[0]
    figures = category_figures(y.astype(int), s, threshold=None, target_precision=target_precision)
    if positives < MIN_POSITIVES_FOR_INTERVAL or n - positives < MIN_POSITIVES_FOR_INTERVAL:
        auprc, roc, recall = (Estimate(float(v)) for v in point)
        return IntervalFigures(
            n, positives, prevalence, target_precision, auprc, roc, recall, figures.threshold_for_target, 0
        )
    rng = np.random.default_rng(seed)
    rows = []
    for start in range(0, resamples, 100):
        chunk = min(100, resamples - start)
        picks = rng.integers(0, n, size=(chunk, n)) + np.arange(chunk)[:, None] * n
        weights = np.bincount(picks.ravel(), minlength=chunk * n).reshape(chunk, n).astype(float)
        rows.append(_weighted_figures(y, ends, weights, target_precision))
    samples = np.vstack(rows)
    low, high = np.nanpercentile(samples, [2.5, 97.5], axis=0)
    auprc, roc, recall = (Estimate(float(p), float(lo), float(hi)) for p, lo, hi in zip(point, low, high, strict=True))
    return IntervalFigures(
        n, positives, prevalence, target_precision, auprc, roc, recall, figures.threshold_for_target, resamples
    )
