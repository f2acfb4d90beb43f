"""Analytics periodic tasks: thin wrappers over the rollup upkeep (routed to the ``analytics`` queue)."""

import dataclasses

from celery import shared_task

from analytics import alerts, classifier_rollups, rollups
from analytics.selectors.capacity import capacity_forecasts_warm


@shared_task
def rollups_refresh_task() -> int:
    """Every 5 minutes: recompute the days touched by rows added since the last run; returns how many."""
    return len(rollups.rollups_refresh())


@shared_task
def backlog_snapshot_task() -> int:
    """Every 15 minutes: count open items per queue and age bucket; returns the rows written."""
    return rollups.backlog_snapshot_take()


@shared_task
def classifier_rollups_refresh_task() -> int:
    """Every 15 minutes: recompute the weeks of classifier figures touched since the last run."""
    return len(classifier_rollups.classifier_rollups_refresh())


@shared_task
def alerts_evaluate_task() -> dict[str, list[int]]:
    """Every 5 minutes: open, update or resolve alerts; returns the alert ids by outcome."""
    return dataclasses.asdict(alerts.alerts_evaluate())


@shared_task
def capacity_forecasts_warm_task() -> int:
    """Every 30 minutes: fit the capacity forecasts of the preset periods ahead of the page (cached by history)."""
    return capacity_forecasts_warm()
