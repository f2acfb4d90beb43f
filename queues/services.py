"""Writes on items: placing them in queues, claiming them, recording decisions. Each records history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import DecisionLabel, EnforcementAction, Policy, User
from ops_platform.core.services import actor_label
from queues.models import Decision, ItemEvent, ItemState, Queue, ReviewItem, check_transition

DEFAULT_LEASE = timedelta(minutes=15)


def queue_default_intake() -> Queue:
    queue = Queue.objects.filter(is_default_intake=True, is_active=True).first()
    if queue is None:
        raise ApplicationError("No active default intake queue is configured.")
    return queue


@transaction.atomic
def items_enqueue(
    *,
    item_ids: Sequence[int],
    queue: Queue,
    actor: str,
    priority: int = 0,
    reason: str = "",
    data: dict[str, object] | None = None,
    tags: Sequence[str] = (),
    required_reviews: int = 1,
    at: datetime | None = None,
) -> list[int]:
    """Move received items into ``queue``; items no longer in 'received' are left alone.

    Safe to run twice and from concurrent workers: rows are locked (skipping ones another worker
    holds) and only rows still 'received' change, so each item is queued exactly once.
    """
    check_transition(ItemState.RECEIVED, ItemState.QUEUED)
    now = at or timezone.now()
    ids = list(
        ReviewItem.objects.select_for_update(skip_locked=True)
        .filter(pk__in=item_ids, state=ItemState.RECEIVED)
        .values_list("pk", flat=True)
    )
    if not ids:
        return []
    ReviewItem.objects.filter(pk__in=ids).update(
        state=ItemState.QUEUED,
        queue=queue,
        priority=priority,
        triaged_at=now,
        queued_at=now,
        due_at=F("received_at") + queue.sla,
        tags=sorted(set(tags)),
        required_reviews=required_reviews,
    )
    event_data = {**({"reason": reason} if reason else {}), **(data or {})}
    ItemEvent.objects.bulk_create(
        ItemEvent(
            item_id=pk,
            at=now,
            actor_label=actor,
            event="queued",
            from_state=ItemState.RECEIVED,
            to_state=ItemState.QUEUED,
            queue=queue,
            data=event_data,
        )
        for pk in ids
    )
    return ids


@transaction.atomic
def items_auto_action(
    *,
    item_ids: Sequence[int],
    actor: str,
    policy: Policy,
    action: EnforcementAction,
    reason: str,
    data: dict[str, object] | None = None,
    tags: Sequence[str] = (),
    at: datetime | None = None,
) -> list[int]:
    """Close received items by rule, with a policy and an enforcement action; no person reviews them."""
    check_transition(ItemState.RECEIVED, ItemState.AUTO_ACTIONED)
    if policy.human_review_only:
        raise ApplicationError(f"Policy '{policy.slug}' is human-review only; it cannot be auto-actioned.")
    now = at or timezone.now()
    ids = list(
        ReviewItem.objects.select_for_update(skip_locked=True)
        .filter(pk__in=item_ids, state=ItemState.RECEIVED)
        .values_list("pk", flat=True)
    )
    if not ids:
        return []
    ReviewItem.objects.filter(pk__in=ids).update(
        state=ItemState.AUTO_ACTIONED, triaged_at=now, decided_at=now, tags=sorted(set(tags))
    )
    ItemEvent.objects.bulk_create(
        ItemEvent(
            item_id=pk,
            at=now,
            actor_label=actor,
            event="auto_actioned",
            from_state=ItemState.RECEIVED,
            to_state=ItemState.AUTO_ACTIONED,
            data={"reason": reason, "policy": policy.slug, "action": action.slug, **(data or {})},
        )
        for pk in ids
    )
    return ids


@transaction.atomic
def item_move(
    *,
    item_id: int,
    queue: Queue | None,
    actor: str,
    priority: int,
    event: str,
    reason: str,
    data: dict[str, object] | None = None,
    at: datetime | None = None,
) -> bool:
    """Move a queued (unclaimed) item to another queue and/or priority; false when it is no longer queued."""
    now = at or timezone.now()
    item = ReviewItem.objects.select_for_update(skip_locked=True).filter(pk=item_id, state=ItemState.QUEUED).first()
    if item is None:
        return False
    check_transition(item.state, ItemState.QUEUED, item_id=item.pk)
    target = queue or item.queue
    ReviewItem.objects.filter(pk=item.pk).update(queue=target, priority=priority)
    ItemEvent.objects.create(
        item=item,
        at=now,
        actor_label=actor,
        event=event,
        from_state=ItemState.QUEUED,
        to_state=ItemState.QUEUED,
        queue=target,
        data={"reason": reason, "from_queue": item.queue.slug if item.queue else None, "priority": priority,
              **(data or {})},
    )  # fmt: skip
    return True


@transaction.atomic
def item_claim(*, item: ReviewItem, actor: User, lease: timedelta = DEFAULT_LEASE, at: datetime | None = None) -> None:
    """Give a queued item to ``actor`` under a lease; refuses if someone else got there first."""
    now = at or timezone.now()
    check_transition(item.state, ItemState.CLAIMED, item_id=item.pk)
    changed = ReviewItem.objects.filter(pk=item.pk, state=ItemState.QUEUED, assignee__isnull=True).update(
        state=ItemState.CLAIMED, assignee=actor, claimed_at=now, lease_expires_at=now + lease
    )
    if not changed:
        raise ApplicationError("Another reviewer claimed this item first.", field="item")
    ItemEvent.objects.create(
        item=item,
        at=now,
        actor=actor,
        actor_label=actor_label(actor),
        event="claimed",
        from_state=ItemState.QUEUED,
        to_state=ItemState.CLAIMED,
        queue_id=item.queue_id,
    )
    item.refresh_from_db()


@transaction.atomic
def decision_submit(
    *,
    item: ReviewItem,
    actor: User,
    is_violation: bool,
    policy: Policy | None = None,
    labels: Sequence[DecisionLabel] = (),
    action: EnforcementAction | None = None,
    rationale: str = "",
    at: datetime | None = None,
) -> Decision:
    """Record the claiming reviewer's decision and close the item."""
    now = at or timezone.now()
    item = ReviewItem.objects.select_for_update().get(pk=item.pk)
    if item.state != ItemState.CLAIMED or item.assignee_id != actor.pk:
        raise ApplicationError("Only the reviewer holding the item's lease can decide it.", field="item")
    check_transition(item.state, ItemState.DECIDED, item_id=item.pk)
    if is_violation and policy is None:
        raise ApplicationError("A violation needs the policy it violates.", field="policy")
    if item.queue and item.queue.requires_rationale and not rationale.strip():
        raise ApplicationError(f"Queue '{item.queue.slug}' requires a rationale.", field="rationale")
    decision = Decision.objects.create(
        item=item,
        reviewer=actor,
        queue=item.queue,
        policy=policy,
        action=action,
        is_violation=is_violation,
        rationale=rationale,
        claimed_at=item.claimed_at,
        decided_at=now,
        handle_time=now - item.claimed_at if item.claimed_at else None,
    )
    if labels:
        decision.labels.set(labels)
    ReviewItem.objects.filter(pk=item.pk).update(
        state=ItemState.DECIDED, decided_at=now, assignee=None, lease_expires_at=None
    )
    ItemEvent.objects.create(
        item=item,
        at=now,
        actor=actor,
        actor_label=actor_label(actor),
        event="decided",
        from_state=ItemState.CLAIMED,
        to_state=ItemState.DECIDED,
        queue_id=item.queue_id,
        data={"decision": decision.pk, "violation": is_violation, "policy": policy.slug if policy else None},
    )
    return decision
