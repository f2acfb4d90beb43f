"""Measuring a scorer on labelled data for the ``classifier_evaluate`` command: the local model
cross-validated on one file, trained on one file and tested on another it never saw, the active deployed
version on a file (no retraining), or another backend. Per category and overall: AUPRC, ROC AUC and recall at
the target precision, each with a bootstrap 95% interval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from ops_platform.core.models import Policy
from routing.scoring.base import BackendError, TextToScore
from routing.scoring.local_model import fit
from routing.scoring.metrics import BOOTSTRAP_RESAMPLES, IntervalFigures, category_figures, interval_figures
from routing.scoring.pipeline import backend_get
from routing.scoring.redaction import redact
from routing.scoring.registry import classifier_load, model_active
from routing.scoring.training import CATEGORIES, Labeled, LabeledFileError


@dataclass
class Evaluation:
    backend: str
    method: str
    figures: dict[str, IntervalFigures]
    overall: IntervalFigures | None
    scored: int
    total: int
    # Per category at the configured operating threshold: (threshold, precision, recall).
    at_threshold: dict[str, tuple[float | None, float | None, float | None]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def scores_from_backend(data: Labeled, backend_name: str) -> dict[str, np.ndarray]:
    """Score every text with a backend; a text it could not score stays NaN (and is left out)."""
    backend = backend_get(backend_name)
    policies: Sequence[Policy] = list(Policy.objects.filter(is_active=True).exclude(classifier_categories=[]))
    out = {category: np.full(len(data.texts), np.nan) for category in CATEGORIES}
    size: int = getattr(backend, "max_batch", 100)
    for start in range(0, len(data.texts), size):
        chunk = [
            TextToScore(i, redact(data.texts[i]).text if backend.external else data.texts[i])
            for i in range(start, min(start + size, len(data.texts)))
        ]
        try:
            result = backend.score(chunk, policies=policies)
        except BackendError:
            continue
        for item in result.items:
            for category, value in item.scores.items():
                if category in out:
                    out[category][item.item_id] = value
    return out


def _all_categories(predictions: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {c: predictions[c] if c in predictions else np.full(n, np.nan) for c in CATEGORIES}


def _normalised(text: str) -> str:
    return " ".join(text.split()).casefold()


def overlap_drop(train: Labeled, test: Labeled) -> tuple[Labeled, int]:
    """The test rows whose text (whitespace and case aside) is not in the training data, and how many were."""
    seen = {_normalised(t) for t in train.texts}
    keep = [i for i, t in enumerate(test.texts) if _normalised(t) not in seen]
    return test.subset(keep), len(test.texts) - len(keep)


def scores_train_test(train: Labeled, test: Labeled, *, seed: int) -> dict[str, np.ndarray]:
    model = fit(train.texts, train.labels, seed=seed)
    return _all_categories(model.predict(test.texts), len(test.texts))


def scores_active_model(test: Labeled) -> tuple[dict[str, np.ndarray], str]:
    """The active deployed version's scores, as the local backend would give them: nothing is retrained."""
    version = model_active()
    if version is None:
        raise LabeledFileError("no active local model: run manage.py classifier_train --promote")
    return _all_categories(classifier_load(version).predict(test.texts), len(test.texts)), version.label


def figures_from_scores(
    backend: str,
    method: str,
    data: Labeled,
    scores: dict[str, np.ndarray],
    *,
    target_precision: float,
    thresholds: dict[str, float],
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Evaluation:
    figures: dict[str, IntervalFigures] = {}
    at_threshold: dict[str, tuple[float | None, float | None, float | None]] = {}
    for category in CATEGORIES:
        rows = [i for i, row in enumerate(data.labels) if category in row and not np.isnan(scores[category][i])]
        if not rows:
            continue
        y = [data.labels[i][category] for i in rows]
        figures[category] = interval_figures(
            y, scores[category][rows], target_precision=target_precision, resamples=resamples, seed=seed
        )
        plain = category_figures(y, scores[category][rows], threshold=thresholds.get(category))
        at_threshold[category] = (plain.threshold, plain.precision_at_threshold, plain.recall_at_threshold)
    # Overall binary: does the text break any policy (any known positive), scored by its highest category.
    stacked = np.vstack([scores[c] for c in CATEGORIES])
    any_scored = ~np.all(np.isnan(stacked), axis=0)
    rows = [i for i in range(len(data.texts)) if any_scored[i] and data.labels[i]]
    overall = None
    if rows:
        y = [int(any(v == 1 for v in data.labels[i].values())) for i in rows]
        top = np.nanmax(stacked[:, rows], axis=0)
        overall = interval_figures(y, top, target_precision=target_precision, resamples=resamples, seed=seed)
    return Evaluation(backend, method, figures, overall, int(any_scored.sum()), len(data.texts), at_threshold)


def default_thresholds() -> dict[str, float]:
    return dict(settings.SCORING_THRESHOLDS)
