"""Who holds an item: claims (next or a given item), leases, skips, reservations for a named colleague, and the
checks of who may work a queue or an item."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, Conflict, NotPermitted
from ops_platform.core.models import User
from ops_platform.core.services import actor_label, audit_record
from queues import sql
from queues.models import Decision, ItemEvent, ItemSkip, ItemState, Queue, ReviewItem, check_transition
from queues.wellness import exposure_guard

DEFAULT_LEASE = timedelta(minutes=15)


def claimable(queue: Queue, actor: User, *, now: datetime | None = None) -> QuerySet[ReviewItem]:
    """Items of ``queue`` this reviewer may take: waiting, not reserved for someone else, not an item they
    already reviewed (independent reviews), not an appeal of their own decision, not one they skipped lately.

    ``queues.sql.CLAIM_SQL`` says the same in SQL for PostgreSQL; change both together.
    """
    now = now or timezone.now()
    return (
        ReviewItem.objects.filter(queue=queue, state=ItemState.QUEUED)
        .filter(Q(reserved_for__isnull=True) | Q(reserved_for=actor))
        .exclude(decisions__reviewer=actor)
        .exclude(appeal_of__decisions__reviewer=actor)
        .exclude(pk__in=ItemSkip.objects.filter(reviewer=actor, until__gt=now).values("item_id"))
    )


def reviewer_may_work(queue: Queue, actor: User) -> bool:
    """The review permission (the view has asked it already, so it is cached on the user), then the
    queue's allow-lists and required skills in one query."""
    return queue.is_active and actor.has_perm("core.review_items") and queue.admits(actor.pk)


def item_claim_next(
    *, queue: Queue, actor: User, lease: timedelta = DEFAULT_LEASE, at: datetime | None = None
) -> ReviewItem | None:
    """Give the reviewer the next item of ``queue`` (highest priority, then earliest due) under a lease.

    Exactly one reviewer gets each item: on PostgreSQL the candidate row is taken with
    ``FOR UPDATE SKIP LOCKED`` (concurrent reviewers pass over each other's rows instead of waiting);
    elsewhere a conditional update that only succeeds while the row is still 'queued', retried
    (``queues.sql.claim_next``). A reviewer already holding an item in this queue gets that one back, its
    lease renewed.
    """
    if not reviewer_may_work(queue, actor):
        raise NotPermitted(f"You may not review items in '{queue.name}'.")
    now = at or timezone.now()
    if queue.exposure_category_id is None:
        return _claim_next(queue, actor, now=now, expires=now + lease)
    with transaction.atomic():
        # One capped claim at a time per reviewer, the count read and the claim made under the lock: two tabs
        # claiming at the same instant would otherwise both read a count under the cap and go one past it.
        list(User.objects.select_for_update().filter(pk=actor.pk).values_list("pk", flat=True))
        if not _holds_item(queue, actor):
            # Only a new item counts toward the day's exposure; the one they hold is returned as ever.
            exposure_guard(queue, actor, now=now)
        return _claim_next(queue, actor, now=now, expires=now + lease)


def _claim_next(queue: Queue, actor: User, *, now: datetime, expires: datetime) -> ReviewItem | None:
    return sql.claim_next(
        queue,
        actor,
        now=now,
        expires=expires,
        candidates=lambda: claimable(queue, actor, now=now).order_by(*sql.claim_order(queue)),
    )


def _holds_item(queue: Queue, actor: User) -> bool:
    return ReviewItem.objects.filter(queue=queue, state=ItemState.CLAIMED, assignee=actor).exists()


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


def lease_renew(*, item: ReviewItem, actor: User, lease: timedelta = DEFAULT_LEASE) -> datetime:
    """Extend the lease while the reviewer's page is open; refused once the item is no longer theirs."""
    now = timezone.now()
    expires = now + lease
    # A lease that ran out is gone even before the sweep returns the item: someone else may be next.
    renewed = ReviewItem.objects.filter(
        pk=item.pk, state=ItemState.CLAIMED, assignee=actor, lease_expires_at__gt=now
    ).update(lease_expires_at=expires)
    if not renewed:
        raise Conflict("This item is no longer yours: its lease expired or it was released.", field="item")
    return expires


class LeaseExpired(Conflict):
    code = "lease_expired"


def lease_check(item: ReviewItem, *, now: datetime) -> None:
    """A reviewer acts on an item only under a live lease: once it ran out the item is no longer theirs, even
    before the sweep returns it to the queue (as renewing it is refused)."""
    if item.lease_expires_at is not None and item.lease_expires_at <= now:
        expired = timezone.localtime(item.lease_expires_at)
        raise LeaseExpired(
            f"This item is no longer yours: your lease on it expired at {expired:%H:%M}. "
            "Start reviewing again to claim it if it is still waiting.",
            field="item",
        )


@transaction.atomic
def item_release(*, item: ReviewItem, actor: User, reason: str, at: datetime | None = None) -> None:
    """Give a claimed item back to its queue (skip), with the reason. It goes to the other reviewers first:
    claim-next does not give it back to this reviewer for ``SKIP_HOLDOFF``."""
    now = at or timezone.now()
    if not reason.strip():
        raise ApplicationError("Say why you skip this item.", field="reason")
    item = ReviewItem.objects.select_for_update().get(pk=item.pk)
    if item.state != ItemState.CLAIMED or item.assignee_id != actor.pk:
        raise Conflict("Only the reviewer holding the item can release it.", field="item")
    lease_check(item, now=now)
    ItemSkip.objects.update_or_create(item=item, reviewer=actor, defaults={"until": now + settings.SKIP_HOLDOFF})
    item_requeue(item, now=now, actor=actor, event="released", data={"reason": reason[:500]})


def item_requeue(
    item: ReviewItem,
    *,
    now: datetime,
    actor: User | None,
    event: str,
    data: dict[str, object],
    queue: Queue | None = None,
    priority: int | None = None,
    reserved_for: User | None = None,
    reserved_until: datetime | None = None,
) -> None:
    """Put a claimed item back in a queue (its own unless ``queue``), unassigned, with the history row ``event``.
    The caller holds the item's row lock and has checked who may do it."""
    check_transition(item.state, ItemState.QUEUED, item_id=item.pk)
    target = queue or item.queue
    ReviewItem.objects.filter(pk=item.pk).update(
        state=ItemState.QUEUED,
        assignee=None,
        lease_expires_at=None,
        claimed_at=None,
        queue=target,
        priority=item.priority if priority is None else priority,
        reserved_for=reserved_for,
        reserved_until=reserved_until if reserved_for is not None else None,
    )
    ItemEvent.objects.create(
        item=item,
        at=now,
        actor=actor,
        actor_label=actor_label(actor),
        event=event,
        from_state=item.state,
        to_state=ItemState.QUEUED,
        queue=target,
        data=data,
    )


def leases_expire(*, now: datetime | None = None, limit: int = 5_000) -> int:
    """Return items whose lease ran out (closed tab, lost laptop) to their queue; one escalated to a named
    colleague stays theirs while the reservation lasts."""
    now = now or timezone.now()
    returned = 0
    with transaction.atomic():
        stale = list(
            ReviewItem.objects.select_for_update(skip_locked=True)
            .filter(state=ItemState.CLAIMED, lease_expires_at__lt=now)
            .order_by("lease_expires_at")[:limit]
        )
        for item in stale:
            kept = item.reserved_until is not None and item.reserved_until > now
            item_requeue(
                item,
                now=now,
                actor=None,
                event="lease_expired",
                data={"assignee": item.assignee_id},
                reserved_for=item.reserved_for if kept else None,
                reserved_until=item.reserved_until if kept else None,
            )
            returned += 1
    return returned


def reservations_expire(*, now: datetime | None = None, limit: int = 5_000) -> int:
    """Give waiting items whose reservation for a named colleague ran out back to everyone who may work their
    queue: the colleague may be away, or have lost the access the item needs. Run with the lease sweep."""
    now = now or timezone.now()
    with transaction.atomic():
        # reserved_for IS NOT NULL: the partial index of reserved items, which are few.
        stale = list(
            ReviewItem.objects.select_for_update(skip_locked=True)
            .filter(state=ItemState.QUEUED, reserved_for__isnull=False)
            .filter(Q(reserved_until__isnull=True) | Q(reserved_until__lte=now))
            .values_list("pk", "reserved_for_id", "queue_id")[:limit]
        )
        if not stale:
            return 0
        ReviewItem.objects.filter(pk__in=[pk for pk, _, _ in stale]).update(reserved_for=None, reserved_until=None)
        ItemEvent.objects.bulk_create(
            ItemEvent(
                item_id=pk,
                at=now,
                actor_label=actor_label(None),
                event="reservation_expired",
                from_state=ItemState.QUEUED,
                to_state=ItemState.QUEUED,
                queue_id=queue_id,
                data={"reserved_for": reserved_for_id},
            )
            for pk, reserved_for_id, queue_id in stale
        )
    return len(stale)


def skips_purge(*, now: datetime | None = None) -> int:
    """Forget skips whose hold-off ran out (claim-next already ignores them); the history keeps the skip."""
    deleted, _ = ItemSkip.objects.filter(until__lte=now or timezone.now()).delete()
    return deleted


def reviewer_may_work_item(item: ReviewItem, queue: Queue, user: User) -> str | None:
    """Why ``user`` could never claim ``item`` in ``queue`` by the rules claim-next applies, or None if they can."""
    name = user.get_username()
    if not user.has_perm("core.bulk_decide") or not reviewer_may_work(queue, user):
        return f"{name} is not a senior reviewer of '{queue.name}' (its teams, vendors and skills)."
    if Decision.objects.filter(item=item, reviewer=user).exists():
        return f"{name} already reviewed this item; it needs someone else."
    if item.appeal_of_id is not None and Decision.objects.filter(item_id=item.appeal_of_id, reviewer=user).exists():
        return f"{name} decided the item under appeal; an appeal goes to someone else."
    return None


@transaction.atomic
def item_reservation_release(*, item: ReviewItem, actor: User, reason: str, at: datetime | None = None) -> None:
    """A lead gives an item reserved for a named colleague back to everyone who may work its queue (audited)."""
    now = at or timezone.now()
    item = ReviewItem.objects.select_for_update(of=("self",)).select_related("queue", "reserved_for").get(pk=item.pk)
    may = actor.has_perm("core.manage_wellness") or (
        actor.has_perm("core.bulk_decide") and item.queue is not None and reviewer_may_work(item.queue, actor)
    )
    if not may:
        raise NotPermitted("Releasing a reservation is for the queue's senior reviewers and ops managers.")
    if not reason.strip():
        raise ApplicationError("Say why you release the reservation.", field="reason")
    if item.reserved_for is None or item.state != ItemState.QUEUED:
        raise Conflict(f"Item {item.pk} is not waiting reserved for anyone.", field="item")
    before = {
        "reserved_for": item.reserved_for.get_username(),
        "reserved_until": item.reserved_until.isoformat() if item.reserved_until else None,
    }
    ReviewItem.objects.filter(pk=item.pk).update(reserved_for=None, reserved_until=None)
    ItemEvent.objects.create(
        item=item,
        at=now,
        actor=actor,
        actor_label=actor_label(actor),
        event="reservation_released",
        from_state=ItemState.QUEUED,
        to_state=ItemState.QUEUED,
        queue_id=item.queue_id,
        data={"reason": reason[:500], "reserved_for": item.reserved_for_id},
    )
    audit_record(
        actor=actor,
        action="item.reservation_release",
        target=item,
        before=before,
        after={"reserved_for": None, "reserved_until": None},
        reason=reason[:500],
    )
