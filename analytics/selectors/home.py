"""Headline numbers for the ops-manager home, each one indexed query (received_at, queue/state)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from django.core.cache import cache
from django.db.models import Q, Sum
from django.utils import timezone

from analytics.charts import Chart, line, stacked_bar, svgs_cached
from analytics.filters import MetricFilter
from analytics.models import OpsDecisionDaily, OpsReceivedDaily
from analytics.rollups import BACKLOG_AGES
from analytics.selectors.operations import backlog_counts_shared
from analytics.tables import Column, Kind, Row, Table, items_url
from queues.models import ReviewItem

# Golden items are QA's probes, not platform traffic: left out of every operational figure.
_OPERATIONAL = Q(is_golden=False)


def _today() -> MetricFilter:
    return MetricFilter.last_days(1)


def intake_today() -> str:
    f = _today()
    n = ReviewItem.objects.filter(_OPERATIONAL, received_at__gte=f.start_at, received_at__lt=f.end_at).count()
    return f"{n:,}"


def backlog() -> str:
    """Open items (queued or claimed, golden left out) now; the overdue and due-soon tiles beside it read the same
    count (``backlog_due``)."""
    due = backlog_due()
    return f"{int(due['waiting'] or 0):,}"


def backlog_as_of() -> datetime | None:
    at = backlog_due()["at"]
    return at if isinstance(at, datetime) else None


def backlog_url() -> str:
    return items_url(MetricFilter.last_days(90), state="open", on="received")


def sla_attainment_7d() -> str:
    """Items received in the last 7 days and decided: share decided by their due time (``OpsReceivedDaily``, kept by
    the rollup refresh: ``received_counts`` of those days' items)."""
    f = MetricFilter.last_days(7)
    counts = OpsReceivedDaily.objects.filter(day__gte=f.start, day__lte=f.end).aggregate(
        decided=Sum("sla_decided"), met=Sum("within_sla")
    )
    if not counts["decided"]:
        return "—"
    return f"{counts['met'] / counts['decided'] * 100:.1f}%"


def automation_today() -> str:
    """Share of today's closed items closed by a rule rather than a reviewer (``OpsReceivedDaily``)."""
    counts = OpsReceivedDaily.objects.filter(day=_today().start).aggregate(
        closed=Sum("closed"), auto=Sum("closed_by_rule")
    )
    if not counts["closed"]:
        return "—"
    return f"{counts['auto'] / counts['closed'] * 100:.1f}%"


# --- the picture of the day: 14 days of intake, SLA and automation, the backlog by age, the open alerts ------

DAY_CHART_DAYS = 14


# The three backlog tiles share one count for a few seconds (one page asks three times).
BACKLOG_CACHE_KEY = "analytics:home:backlog-due"
BACKLOG_CACHE_SECONDS = 5


def backlog_due() -> dict[str, Any]:
    """Open items now, overdue and due within the hour (not overdue): one index-only pass over item_backlog_idx
    (``backlog_counts``, as the backlog panel counts). Live, not the 15-minute snapshot: a decision shows on the home
    within a minute (tests/browser/test_live_dashboards.py)."""
    found: dict[str, Any] | None = cache.get(BACKLOG_CACHE_KEY)
    if found is None:
        now, rows = backlog_counts_shared()  # the backlog panel's own count, taken by the minute's refresh
        found = {
            "waiting": sum(r[2] for r in rows),
            "due_soon": sum(r[3] for r in rows),
            "overdue": sum(r[4] for r in rows),
            "taken": f"{timezone.localtime(now):%Y-%m-%d %H:%M:%S}",
            "at": now,
        }
        cache.set(BACKLOG_CACHE_KEY, found, BACKLOG_CACHE_SECONDS)
    return found


def overdue_now() -> str:
    due = backlog_due()
    share = f" ({int(due['overdue'] or 0) / int(due['waiting']):.0%} of the backlog)" if due["waiting"] else ""
    return f"{int(due['overdue'] or 0):,}{share}"


def due_within_hour() -> str:
    due = backlog_due()
    return f"{int(due['due_soon'] or 0):,}"


def _day_table(title: str, columns: list[Column], rows: list[Row]) -> Table:
    return Table(title=title, columns=columns, rows=rows)


def day_charts_drawn(today: date | None = None) -> list[dict[str, str]]:
    """The home's charts as titled SVGs, drawn once per distinct data (``svgs_cached``): a repeated page builds
    no chart spec."""
    parts = _day_parts(today)
    svgs = svgs_cached([[t.title, t.rows] for t, _ in parts], lambda: [draw(t) for t, draw in parts])
    return [{"title": t.title, "svg": svg} for (t, _), svg in zip(parts, svgs, strict=True)]


def day_charts(today: date | None = None) -> list[Chart]:
    return [draw(t) for t, draw in _day_parts(today)]


def _day_parts(today: date | None = None) -> list[tuple[Table, Callable[[Table], Chart]]]:
    """The home's charts over the last 14 days, from the rollups (the same as their panels), each as its table
    and how it is drawn: items received per day (closed by a rule or sent to people), SLA attainment of the items
    decided each day, the automation rate, and the backlog by age at the latest snapshot (overdue apart)."""
    from analytics.selectors import operations as ops

    f = MetricFilter.last_days(DAY_CHART_DAYS, today=today)
    intake = ops.automation_rate(f).as_dicts()
    days = [
        {"day": r["day"], "how": how, "items": r[key]}
        for r in intake
        for how, key in (("closed by a rule", "auto_actioned"), ("sent to reviewers", "routed_to_review"))
    ]
    day, items, how = Column("day", "Day", Kind.DATE), Column("items", "Items", Kind.INT), Column("how", "How")
    out: list[tuple[Table, Callable[[Table], Chart]]] = []
    if days:
        out.append(
            (
                _day_table("Items received per day", [day, items, how], days),
                lambda t: stacked_bar(t, x="day", y="items", color="how"),
            )
        )
    sla = (
        OpsDecisionDaily.objects.filter(day__gte=f.start, day__lte=f.end)
        .values("day")
        .annotate(counted=Sum("sla_counted"), within=Sum("within_sla"))
        .order_by("day")
    )
    attainment = Column("sla_attainment", "Decided within the SLA", Kind.PERCENT)
    sla_rows = [{"day": g["day"], "sla_attainment": g["within"] / g["counted"]} for g in sla if g["counted"]]
    if sla_rows:
        out.append(
            (
                _day_table("SLA attainment of the items decided each day", [day, attainment], sla_rows),
                lambda t: line(t, x="day", y="sla_attainment"),
            )
        )
    rate = Column("automation_rate", "Closed by a rule", Kind.PERCENT)
    auto_rows = [
        {"day": r["day"], "automation_rate": r["automation_rate"]} for r in intake if r["automation_rate"] is not None
    ]
    if auto_rows:
        out.append(
            (
                _day_table("Automation rate: share of the day's intake closed by a rule", [day, rate], auto_rows),
                lambda t: line(t, x="day", y="automation_rate"),
            )
        )
    backlog = ops.backlog(f).as_dicts()
    ages: dict[str, dict[str, int]] = {}
    for r in backlog:
        bucket = ages.setdefault(r["age_bucket"], {"overdue": 0, "not yet due": 0})
        bucket["overdue"] += r["overdue"] or 0
        bucket["not yet due"] += (r["items"] or 0) - (r["overdue"] or 0)
    age_rows = [
        {"age_bucket": str(name), "due": due, "items": n}
        for name, _ in BACKLOG_AGES
        if str(name) in ages
        for due, n in ages[str(name)].items()
    ]
    if age_rows:
        age, due = Column("age_bucket", "Age since received"), Column("due", "SLA")
        out.append(
            (
                _day_table("Waiting now, by age (overdue apart)", [age, items, due], age_rows),
                lambda t: stacked_bar(t, x="age_bucket", y="items", color="due"),
            )
        )
    return out
