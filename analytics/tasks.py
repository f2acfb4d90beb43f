"""Analytics periodic tasks: thin wrappers over the rollup upkeep (routed to the ``analytics`` queue)."""

import dataclasses
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from analytics import alerts, rollups
from analytics.exporter.refresh import metrics_snapshot_refresh
from analytics.panels import charts_warm
from analytics.selectors.capacity import capacity_forecasts_warm
from analytics.selectors.operations import backlog_counts_publish
from qa.selectors import scorecards_warm


@shared_task
def rollups_refresh_task() -> int:
    """Every ANALYTICS_REFRESH_EVERY (a minute): recompute the days touched by rows added since the last run, count
    the live backlog for the pages, then draw the dashboards' default charts and compute QA's default scorecards
    ahead of them (only those whose data changed are computed again); returns the days."""
    days = len(rollups.rollups_refresh())
    backlog_counts_publish()
    charts_warm()
    scorecards_warm()
    return days


@shared_task
def metrics_refresh_task() -> int:
    """Every METRICS_REFRESH_EVERY (15 s): the figures /metrics serves; returns how many counter series it keeps."""
    return sum(len(series) for series in metrics_snapshot_refresh().values())


@shared_task
def backlog_snapshot_task() -> int:
    """Every 15 minutes: count open items per queue and age bucket; returns the rows written."""
    return rollups.backlog_snapshot_take()


@shared_task
def classifier_rollups_refresh_task() -> int:
    """CLASSIFIER_ROLLUPS_EVERY: recompute the weeks of classifier figures touched since the last run, then (when
    any was) compute the default period's figures and charts ahead of the pages (cached per rewrite)."""
    weeks = len(rollups.classifier_rollups_refresh())
    if weeks:
        charts_warm()
    return weeks


@shared_task
def alerts_evaluate_task() -> dict[str, list[int]]:
    """Every minute (ANALYTICS_REFRESH_EVERY): open, update or resolve alerts; returns the alert ids by outcome."""
    return dataclasses.asdict(alerts.alerts_evaluate())


@shared_task
def capacity_forecasts_warm_task() -> int:
    """Every 30 minutes: fit the capacity forecasts of the preset periods ahead of the page (cached by history)."""
    return capacity_forecasts_warm()


@shared_task
def rollups_nightly_task() -> dict[str, int]:
    """Nightly: recompute the last days of operations rollups and the last weeks of classifier rollups from raw
    rows (rows whose transactions committed after a cursor read past them land there), and purge old backlog
    snapshots. Returns what it did."""
    today = timezone.localdate()
    days = rollups.rollups_rebuild(today - timedelta(days=settings.ANALYTICS_NIGHTLY_REBUILD_DAYS), today)
    weeks = rollups.classifier_rollups_rebuild(today - timedelta(weeks=settings.ANALYTICS_NIGHTLY_REBUILD_WEEKS), today)
    return {"days": days, "weeks": len(weeks), "snapshots_purged": rollups.backlog_snapshots_purge()}
