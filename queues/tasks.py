"""Queue housekeeping tasks: thin wrappers over services."""

from celery import shared_task

from queues import services


@shared_task
def leases_expire_task() -> int:
    """Every minute: items whose reviewer's lease ran out go back to their queue."""
    return services.leases_expire()
