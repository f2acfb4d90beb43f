"""A reviewer hands a claimed item up: to the queue's escalation target, or to a named senior colleague."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, Conflict
from ops_platform.core.models import User
from queues.models import ItemState, Queue, ReviewItem
from queues.services.claims import item_requeue, lease_check, reviewer_may_work_item
from queues.wellness import ExposureCapReached, exposure_guard


@transaction.atomic
def item_escalate(
    *,
    item: ReviewItem,
    actor: User,
    reason: str,
    to_user: User | None = None,
    at: datetime | None = None,
) -> Queue:
    """Hand a claimed item up: to the queue's escalation target, or to a named senior colleague (who alone
    may claim it, in the escalation target if there is one, else in this queue)."""
    now = at or timezone.now()
    if not reason.strip():
        raise ApplicationError("Say why you escalate this item.", field="reason")
    item = ReviewItem.objects.select_for_update(of=("self",)).select_related("queue").get(pk=item.pk)
    if item.state != ItemState.CLAIMED or item.assignee_id != actor.pk:
        raise Conflict("Only the reviewer holding the item can escalate it.", field="item")
    lease_check(item, now=now)
    assert item.queue is not None
    target = item.queue.escalation_target or item.queue
    if to_user is not None:
        if to_user.pk == actor.pk:
            raise ApplicationError("Escalate to someone else.", field="to_user")
        # Reserved for someone claim-next would never give it to, the item would wait for nobody.
        if (refusal := reviewer_may_work_item(item, target, to_user)) is not None:
            raise ApplicationError(refusal, field="to_user")
        # Nor for someone the queue's daily exposure cap keeps from claiming it today.
        if target.exposure_category_id is not None:
            try:
                exposure_guard(target, to_user, now=now)
            except ExposureCapReached as capped:
                raise ApplicationError(
                    f"{to_user.get_username()} has reached today's cap of {capped.category.name} items; "
                    "escalate to the queue or to another colleague.",
                    field="to_user",
                ) from None
    elif item.queue.escalation_target is None:
        raise ApplicationError(
            f"'{item.queue.name}' has no escalation queue; name a senior colleague.", field="to_user"
        )
    item_requeue(
        item,
        now=now,
        actor=actor,
        event="escalated",
        data={
            "reason": reason[:500],
            "from_queue": item.queue.slug,
            "to_user": to_user.get_username() if to_user else None,
        },
        queue=target,
        priority=max(item.priority, 50),
        reserved_for=to_user,
        reserved_until=now + settings.ESCALATION_RESERVATION if to_user else None,
    )
    return target
