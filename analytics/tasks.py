"""Analytics periodic tasks: thin wrappers over the rollup upkeep (routed to the ``analytics`` queue)."""

from celery import shared_task

from analytics import rollups


@shared_task
def rollups_refresh_task() -> int:
    """Every 5 minutes: recompute the days touched by rows added since the last run; returns how many."""
    return len(rollups.rollups_refresh())


@shared_task
def backlog_snapshot_task() -> int:
    """Every 15 minutes: count open items per queue and age bucket; returns the rows written."""
    return rollups.backlog_snapshot_take()
