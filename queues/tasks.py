"""Queue housekeeping tasks: thin wrappers over services."""

from celery import shared_task

from queues import notices
from queues.accounts.actions import account_actions_expire
from queues.retention import services as retention
from queues.services import claims


@shared_task
def leases_expire_task() -> int:
    """Every minute: items whose reviewer's lease ran out go back to their queue, items whose reservation for a
    named colleague ran out go back to everyone, and skips past their hold-off are forgotten."""
    returned = claims.leases_expire()
    released = claims.reservations_expire()
    claims.skips_purge()
    return returned + released


@shared_task(autoretry_for=(OSError,), retry_backoff=60, retry_backoff_max=3600, max_retries=8)
def escalation_notice_task(queue_id: int, item_ids: list[int], rule: str) -> int:
    """Email a queue's leads that items were escalated into it (retried while the mail server is unreachable;
    ``smtplib``'s errors are ``OSError``s)."""
    return notices.escalation_notice_send(queue_id=queue_id, item_ids=item_ids, rule=rule)


@shared_task
def content_purge_task() -> dict[str, object]:
    """Hourly: empty the content of items past their policy's retention, in committed batches (docs/retention.md)."""
    return retention.items_content_purge().as_dict()


@shared_task
def account_actions_expire_task() -> int:
    """Every minute: restrictions and suspensions whose duration ended are lifted (audited, in the account's
    history, an ``account.action`` webhook with ``state: "expired"``)."""
    return account_actions_expire()
