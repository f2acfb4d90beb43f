"""Kernel Celery tasks: webhook delivery, on the ``webhooks`` queue so a slow receiver never holds up triage,
and the daily refresh of the embedded database's planner statistics."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from ops_platform.core import webhooks
from ops_platform.core.db_statistics import database_statistics_gather


@shared_task(bind=True, acks_late=True, max_retries=None)
def webhook_deliver_task(self: Any, event_id: str) -> bool:
    """One attempt at delivering an event, then a retry with backoff while attempts remain.

    The event row, not Celery, counts attempts (so a re-drive starts afresh and a crash still counts),
    hence no Celery retry limit. A delivered or given-up event is left alone: running it twice sends once.
    """
    outcome = webhooks.webhook_deliver(event_id=event_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.delivered


@shared_task
def webhook_events_sweep_task() -> int:
    return webhooks.webhook_events_sweep()


@shared_task
def database_statistics_task() -> bool:
    """Daily planner statistics on SQLite (``ops_platform.core.db_statistics``); a no-op on PostgreSQL."""
    return database_statistics_gather()
