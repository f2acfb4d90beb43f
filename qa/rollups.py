"""The scorecard rollup (``QaScorecardDaily``): one local day's closed samples grouped and summed in the database,
and the figures of a set of such groups. ``qa.selectors`` reads scorecards and the coaching page from it, and
computes the same figures from raw samples through ``scorecard_groups`` (one definition, two sources).
``analytics.rollups`` recomputes a day's rows with its own quality rollups (``scorecard_rows``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

from django.db import transaction
from django.db.models import Count, F, FloatField, Q, QuerySet, Sum
from django.db.models.functions import Cast

from ops_platform.core.localday import day_end, day_start
from qa.models import QaSample, QaScorecardDaily, SampleState

GROUP_FIELDS = {  # rollup field: sample field
    "reviewer_id": "original_reviewer_id",
    "vendor_id": "original_vendor_id",
    "queue_id": "original_queue_id",
    "original_violation": "original_is_violation",
    "original_policy_id": "original_policy_id",
    "review_violation": "review__is_violation",
    "review_policy_id": "review__policy_id",
    "error_type": "error_type",
}


def sample_groups(samples: QuerySet[QaSample]) -> list[dict[str, Any]]:
    """``samples`` summed per rollup key, as the rollup's field values: the one grouping the rollup and a direct
    computation share."""
    weight = 1.0 / Cast("inclusion_probability", FloatField())
    out = []
    for adjudicated in (True, False):
        groups = (
            samples.filter(adjudication__isnull=not adjudicated)
            .values(*GROUP_FIELDS.values())
            .annotate(n=Count("pk"), w=Sum(weight), w2=Sum(weight * weight), loss=Sum(F("severity") * weight))
            .order_by()
        )
        out += [
            {
                **{field: g[source] for field, source in GROUP_FIELDS.items()},
                "adjudicated": adjudicated,
                "samples": g["n"],
                "weight": g["w"] or 0.0,
                "weight_sq": g["w2"] or 0.0,
                "loss": g["loss"] or 0.0,
            }
            for g in groups
        ]
    return out


def scorecard_rows(day: date) -> list[QaScorecardDaily]:
    """Samples closed on the local day, summed per rollup key."""
    closed = QaSample.objects.filter(state=SampleState.CLOSED, closed_at__gte=day_start(day))
    closed = closed.filter(closed_at__lt=day_end(day))
    return [QaScorecardDaily(day=day, **group) for group in sample_groups(closed)]


@transaction.atomic
def scorecard_rollups_rebuild(days: Iterable[date]) -> int:
    """Replace the scorecard rows of ``days``; the number of rows written."""
    written = 0
    for day in days:
        QaScorecardDaily.objects.filter(day=day).delete()
        written += len(QaScorecardDaily.objects.bulk_create(scorecard_rows(day), batch_size=2_000))
    return written


def group_filter(*, reviewer_id: int | None, vendor_id: int | None, queue_id: int | None, policy_id: int | None) -> Q:
    wanted = {"reviewer_id": reviewer_id, "vendor_id": vendor_id, "queue_id": queue_id}
    q = Q(**{name: value for name, value in wanted.items() if value})
    if policy_id:
        q &= Q(original_policy_id=policy_id) | Q(review_policy_id=policy_id)
    return q
