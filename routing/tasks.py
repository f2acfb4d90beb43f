"""Triage Celery tasks: thin wrappers that take ids and call services."""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from routing import services


@shared_task(
    acks_late=True,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=8,
)
def items_triage_task(item_ids: list[int]) -> int:
    """Triage a batch of items. Running it twice has one effect: only 'received' items move."""
    return len(services.items_triage(item_ids=item_ids))


@shared_task
def items_sweep_untriaged_task() -> int:
    return services.items_sweep_untriaged()


@shared_task
def idempotency_records_purge_task() -> int:
    return services.idempotency_records_purge()
