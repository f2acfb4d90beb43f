"""Scoring a labeled file with a backend (or cross-validating the local model on it) and the figures per
category, for the ``classifier_evaluate`` command."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from ops_platform.core.models import Policy
from routing.scoring.base import BackendError, TextToScore
from routing.scoring.metrics import CategoryFigures, category_figures
from routing.scoring.models import Backend
from routing.scoring.pipeline import backend_get
from routing.scoring.redaction import redact
from routing.scoring.training import CATEGORIES, Labeled, cross_validate


@dataclass
class Evaluation:
    backend: str
    method: str
    figures: dict[str, CategoryFigures]
    overall: CategoryFigures | None
    scored: int
    total: int


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


def evaluate_file(
    data: Labeled, *, backend: str, folds: int, seed: int, target_precision: float, thresholds: dict[str, float]
) -> Evaluation:
    if backend == Backend.LOCAL:
        scores, method = cross_validate(data, folds=folds, seed=seed), f"{folds}-fold stratified cross-validation"
    else:
        scores, method = scores_from_backend(data, backend), "scored through the backend"
    figures: dict[str, CategoryFigures] = {}
    for category in CATEGORIES:
        rows = [i for i, row in enumerate(data.labels) if category in row and not np.isnan(scores[category][i])]
        if not rows:
            continue
        y = [data.labels[i][category] for i in rows]
        figures[category] = category_figures(
            y, scores[category][rows], threshold=thresholds.get(category), target_precision=target_precision
        )
    # Overall binary: does the text break any policy (any known positive), scored by its highest category.
    stacked = np.vstack([scores[c] for c in CATEGORIES])
    any_scored = ~np.all(np.isnan(stacked), axis=0)
    rows = [i for i in range(len(data.texts)) if any_scored[i] and data.labels[i]]
    overall = None
    if rows:
        y = [int(any(v == 1 for v in data.labels[i].values())) for i in rows]
        top = np.nanmax(stacked[:, rows], axis=0)
        overall = category_figures(y, top, threshold=0.5, target_precision=target_precision)
    return Evaluation(backend, method, figures, overall, int(any_scored.sum()), len(data.texts))


def default_thresholds() -> dict[str, float]:
    return dict(settings.SCORING_THRESHOLDS)
