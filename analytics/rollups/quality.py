"""Quality rollups (``analytics.models.quality``): one local day's closed QA samples and scored golden copies,
grouped and summed in the database, and the days that changed since a time.

Samples and golden results change by update (a sample closes, a copy is scored), not by insert, so the
operations cursor's ids do not see them; ``touched_days`` reads the days of rows closed or scored since the
last refresh minus ``QUALITY_OVERLAP``, which covers transactions that set the time and committed later.
``analytics.rollups.operations.day_recompute`` replaces these rows with the operations rows of the same day.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from django.db import transaction
from django.db.models import Count, F, FloatField, Q, Sum
from django.db.models.functions import Cast

from analytics.filters import day_bounds, days_through, local_dates
from analytics.models import GoldenDaily, QaSampleDaily
from qa.models import GoldenInjection, QaSample, SampleState
from qa.rollups import scorecard_rollups_rebuild

QUALITY_OVERLAP = timedelta(minutes=15)


def qa_sample_rows(day: date) -> list[QaSampleDaily]:
    """Samples closed on the local day, summed per rollup key."""
    start, end = day_bounds(day)
    weight = 1.0 / Cast("inclusion_probability", FloatField())
    groups = (
        QaSample.objects.filter(state=SampleState.CLOSED, closed_at__gte=start, closed_at__lt=end)
        .values(
            "original_vendor_id",
            "original_queue_id",
            "original_is_violation",
            "original_policy_id",
            "review__is_violation",
            "review__policy_id",
        )
        .annotate(
            n=Count("pk"),
            w=Sum(weight),
            loss=Sum(F("severity") * weight),
            err=Sum(weight, filter=~Q(error_type="")),
        )
        .order_by()
    )
    return [
        QaSampleDaily(
            day=day,
            vendor_id=g["original_vendor_id"],
            queue_id=g["original_queue_id"],
            original_violation=g["original_is_violation"],
            original_policy_id=g["original_policy_id"],
            review_violation=g["review__is_violation"],
            review_policy_id=g["review__policy_id"],
            samples=g["n"],
            weight=g["w"] or 0.0,
            loss=g["loss"] or 0.0,
            error_weight=g["err"] or 0.0,
        )
        for g in groups
    ]


def golden_rows(day: date) -> list[GoldenDaily]:
    """Golden copies scored on the local day, per vendor, queue and expected policy."""
    start, end = day_bounds(day)
    groups = (
        GoldenInjection.objects.filter(scored_at__gte=start, scored_at__lt=end)
        .values("vendor_id", "golden__queue_id", "golden__expected_policy_id")
        .annotate(n=Count("pk"), right=Count("pk", filter=Q(correct=True)))
        .order_by()
    )
    return [
        GoldenDaily(
            day=day,
            vendor_id=g["vendor_id"],
            queue_id=g["golden__queue_id"],
            policy_id=g["golden__expected_policy_id"],
            scored=g["n"],
            correct=g["right"],
        )
        for g in groups
    ]


def touched_days(since: datetime | None) -> set[date]:
    """Local days of samples closed and golden copies scored at or after ``since`` minus the overlap (all
    days when ``since`` is None)."""
    samples = QaSample.objects.filter(state=SampleState.CLOSED, closed_at__isnull=False)
    golden = GoldenInjection.objects.filter(scored_at__isnull=False)
    if since is not None:
        samples = samples.filter(closed_at__gte=since - QUALITY_OVERLAP)
        golden = golden.filter(scored_at__gte=since - QUALITY_OVERLAP)
    return local_dates(samples, "closed_at") | local_dates(golden, "scored_at")


@transaction.atomic
def quality_rollups_rebuild(start: date, end: date) -> int:
    """Replace the quality rows of the days ``start`` to ``end`` inclusive (backfills, fixes); the operations
    rollups and the cursor are left alone. Returns the number of days."""
    days = list(days_through(start, end))
    for day in days:
        QaSampleDaily.objects.filter(day=day).delete()
        QaSampleDaily.objects.bulk_create(qa_sample_rows(day))
        GoldenDaily.objects.filter(day=day).delete()
        GoldenDaily.objects.bulk_create(golden_rows(day))
    scorecard_rollups_rebuild(days)  # qa's own rollup of the same samples, per reviewer
    from analytics.rollups.operations import rollups_changed  # operations imports this module

    rollups_changed()
    return len(days)
