"""Headline numbers for the ops-manager home, each one indexed query (received_at, queue/state)."""

from __future__ import annotations

from django.db.models import Count, F, Q

from analytics.filters import MetricFilter
from analytics.tables import items_url
from queues.models import ItemState, ReviewItem

# Golden items are QA's probes, not platform traffic: left out of every operational figure.
_OPERATIONAL = Q(is_golden=False)


def _today() -> MetricFilter:
    return MetricFilter.last_days(1)


def intake_today() -> str:
    f = _today()
    n = ReviewItem.objects.filter(_OPERATIONAL, received_at__gte=f.start_at, received_at__lt=f.end_at).count()
    return f"{n:,}"


def backlog() -> str:
    n = ReviewItem.objects.filter(_OPERATIONAL, state__in=[ItemState.QUEUED, ItemState.CLAIMED]).count()
    return f"{n:,}"


def backlog_url() -> str:
    return items_url(MetricFilter.last_days(90), state="open", on="received")


def sla_attainment_7d() -> str:
    """Items received in the last 7 days and decided: share decided by their due time."""
    f = MetricFilter.last_days(7)
    counts = ReviewItem.objects.filter(
        _OPERATIONAL,
        received_at__gte=f.start_at,
        received_at__lt=f.end_at,
        decided_at__isnull=False,
        due_at__isnull=False,
    ).aggregate(decided=Count("id"), met=Count("id", filter=Q(decided_at__lte=F("due_at"))))
    if not counts["decided"]:
        return "—"
    return f"{counts['met'] / counts['decided'] * 100:.1f}%"


def automation_today() -> str:
    """Share of today's closed items closed by a rule rather than a reviewer."""
    f = _today()
    counts = ReviewItem.objects.filter(_OPERATIONAL, received_at__gte=f.start_at, received_at__lt=f.end_at).aggregate(
        closed=Count("id", filter=Q(state__in=[ItemState.AUTO_ACTIONED, ItemState.DECIDED])),
        auto=Count("id", filter=Q(state=ItemState.AUTO_ACTIONED)),
    )
    if not counts["closed"]:
        return "—"
    return f"{counts['auto'] / counts['closed'] * 100:.1f}%"
