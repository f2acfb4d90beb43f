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


def auprc_interval(
    y_true: Sequence[int] | np.ndarray,
    y_score: Sequence[float] | np.ndarray,
    *,
    resamples: int = 200,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float | None, float | None]:
    """A seeded percentile bootstrap interval of AUPRC over items (draws without a positive or a negative are
    skipped); (None, None) when the labels hold only one class."""
    y = np.asarray(y_true, dtype=int)
    s = np.asarray(y_score, dtype=float)
    if y.sum() == 0 or y.sum() == len(y):
        return None, None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        pick = rng.integers(0, len(y), len(y))
        if 0 < y[pick].sum() < len(pick):
            values.append(float(average_precision_score(y[pick], s[pick])))
    if not values:
        return None, None
    tail = (1 - confidence) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def f1_threshold(y_true: Sequence[int] | np.ndarray, y_score: Sequence[float] | np.ndarray) -> float | None:
    """The score threshold with the best F1: the default operating point a new model ships with."""
    y = np.asarray(y_true, dtype=int)
    if y.sum() == 0 or y.sum() == len(y):
        return None
    precision, recall, thresholds = precision_recall_curve(y, np.asarray(y_score, dtype=float))
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thresholds[int(np.argmax(f1))])
