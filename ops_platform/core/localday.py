"""The local day. Daily budgets, exposure caps and date filters count days from midnight in ``TIME_ZONE``, the
ops team's time zone, not UTC: one definition, so "today" means the same on every page and in every job."""

from datetime import date, datetime, time, timedelta

from django.utils import timezone


def day_start(day: date) -> datetime:
    """Midnight at the start of ``day``, local time, as an aware datetime."""
    return timezone.make_aware(datetime.combine(day, time.min))


def day_end(day: date) -> datetime:
    """Midnight at the end of ``day`` (the next day's start): an exclusive upper bound."""
    return day_start(day + timedelta(days=1))


def today_start(now: datetime | None = None) -> datetime:
    """The start of the local day that contains ``now`` (default: the current time)."""
    return day_start(timezone.localtime(now or timezone.now()).date())
