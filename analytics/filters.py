"""The one filter every dashboard panel, CSV export and JSON metric takes: a period and optional slices."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from ops_platform.core.localday import day_end, day_start

MAX_DAYS = 366
PRESET_DAYS = (7, 14, 28, 90)  # the periods the dashboards offer (and the capacity forecasts are fitted for)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The local day as [start, end) instants."""
    return day_start(day), day_end(day)


def days_through(start: date, end: date) -> Iterator[date]:
    """Every local day from ``start`` to ``end`` inclusive."""
    day = start
    while day <= end:
        yield day
        day += timedelta(days=1)


def local_dates(qs: QuerySet[Any], field: str) -> set[date]:
    """The distinct local dates of ``field`` over ``qs``, computed in the database."""
    return set(qs.order_by().annotate(_d=TruncDate(field)).values_list("_d", flat=True).distinct())


# The classifier panels' choices (``analytics.models.TruthSource`` and ``ClassifierView``; spelled here, as the
# filter module reads no models): which human label counts as the truth, and the per-category or binary view.
TRUTHS = ("decision", "qa", "imported")
VIEWS = ("category", "any")


@dataclass(frozen=True)
class MetricFilter:
    """Days ``start`` to ``end`` inclusive (local dates), and optionally one queue, vendor and policy; for the
    classifier panels, the truth source and the view (other panels ignore them)."""

    start: date
    end: date
    queue_id: int | None = None
    vendor_id: int | None = None
    policy_id: int | None = None
    truth: str = TRUTHS[0]
    view: str = VIEWS[0]

    def __post_init__(self) -> None:
        if self.truth not in TRUTHS:
            raise ApplicationError(f"The truth source is one of {', '.join(TRUTHS)}.", field="truth")
        if self.view not in VIEWS:
            raise ApplicationError(f"The view is one of {', '.join(VIEWS)}.", field="view")
        if self.end < self.start:
            raise ApplicationError("The period ends before it starts.", field="end")
        if (self.end - self.start).days >= MAX_DAYS:
            raise ApplicationError(f"A period is at most {MAX_DAYS} days.", field="start")

    @classmethod
    def last_days(cls, days: int, *, today: date | None = None, **slices: Any) -> MetricFilter:
        today = today or timezone.localdate()
        return cls(start=today - timedelta(days=days - 1), end=today, **slices)

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    @property
    def start_at(self) -> datetime:
        return day_start(self.start)

    @property
    def end_at(self) -> datetime:
        """The first instant after the period."""
        return day_end(self.end)
