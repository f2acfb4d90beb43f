"""Writes on items: placing them in queues, claiming them, recording decisions. Each records history."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.db.models.sql import Query
from django.utils import timezone

from ops_platform.core.bulk import rows_insert, server_bound_cursor
from ops_platform.core.errors import ApplicationError, Conflict, NotPermitted
from ops_platform.core.models import ApiClient, DecisionLabel, EnforcementAction, Policy, User, WebhookEventType
from ops_platform.core.services import actor_label, audit_record
from ops_platform.core.webhooks import webhook_emit, webhooks_emit_many
from queues.models import (
    AppealOutcome,
    Decision,
    ItemEvent,
    ItemKind,
    ItemSkip,
    ItemState,
    Queue,
    QueueOrdering,
    ReviewItem,
    check_transition,
)
from queues.wellness import exposure_guard

DEFAULT_LEASE = timedelta(minutes=15)


def queue_default_intake() -> Queue:
    queue = Queue.objects.filter(is_default_intake=True, is_active=True).first()
    if queue is None:
        raise ApplicationError("No active default intake queue is configured.")
    return queue


def received_locked(item_ids: Sequence[int]) -> list[int]:
    """Lock the given items (skipping rows another transaction holds) and return, in id order, those still
    'received'. The rows are picked by id alone and their state checked after the lock: with
    ``state = 'received'`` in the WHERE the planner may take the partial un-triaged index, whose statistics
    predate any backlog, and read the whole backlog for every batch (bench/e2e.py saw 146,500 index entries
    read for 500 rows). Must run inside the caller's transaction, which keeps the lock."""
    rows = (
        ReviewItem.objects.select_for_update(skip_locked=True)
        .filter(pk__any=item_ids)
        .order_by("pk")
        .values_list("pk", "state")
    )
    return [pk for pk, state in rows if state == ItemState.RECEIVED]


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
    ids = received_locked(item_ids)
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
    rows_insert(
        ItemEvent,
        [
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
        ],
    )
    return ids


@dataclass(frozen=True)
class Enqueue:
    """One group of a triage batch bound for the same queue, priority, tags and history entry."""

    item_ids: Sequence[int]
    queue: Queue
    actor: str
    priority: int = 0
    reason: str = ""
    data: dict[str, object] | None = None
    tags: Sequence[str] = ()
    required_reviews: int = 1


@transaction.atomic
def items_enqueue_many(*, groups: Sequence[Enqueue], at: datetime | None = None) -> list[int]:
    """:func:`items_enqueue` for every group of a triage batch at once: one lock, one UPDATE and one history
    INSERT for the batch on PostgreSQL instead of three statements per group (a batch of 500 routed items
    falls into dozens of groups by rule, queue and tags). Same guarantees: only items still 'received' move,
    rows another worker holds are skipped, so each item is queued exactly once."""
    if connection.vendor != "postgresql":
        return [pk for g in groups for pk in items_enqueue(
            item_ids=g.item_ids, queue=g.queue, actor=g.actor, priority=g.priority, reason=g.reason, data=g.data,
            tags=g.tags, required_reviews=g.required_reviews, at=at,
        )]  # fmt: skip
    check_transition(ItemState.RECEIVED, ItemState.QUEUED)
    now = at or timezone.now()
    group_of = {pk: g for g in groups for pk in g.item_ids}
    locked = received_locked(list(group_of))
    if not locked:
        return []
    values = [
        {
            "id": pk,
            "queue_id": group_of[pk].queue.pk,
            "priority": group_of[pk].priority,
            "sla_seconds": group_of[pk].queue.sla.total_seconds(),
            "tags": sorted(set(group_of[pk].tags)),
            "required_reviews": group_of[pk].required_reviews,
        }
        for pk in locked
    ]
    table = connection.ops.quote_name(ReviewItem._meta.db_table)
    with server_bound_cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS i SET state = %s, queue_id = v.queue_id, priority = v.priority, "  # noqa: S608
            "triaged_at = %s, queued_at = %s, due_at = i.received_at + make_interval(secs => v.sla_seconds), "
            "tags = v.tags, required_reviews = v.required_reviews "
            "FROM jsonb_to_recordset(%s::jsonb) AS v(id bigint, queue_id bigint, priority smallint, "
            "sla_seconds double precision, tags jsonb, required_reviews smallint) "
            "WHERE i.id = v.id RETURNING i.id",  # locked above and seen 'received' after the lock
            [ItemState.QUEUED, now, now, json.dumps(values)],
        )
        moved = sorted(row[0] for row in cursor.fetchall())
    # Field values, not ItemEvent instances: the bulk insert fills in the defaults (ops_platform.core.bulk).
    event_data = {id(g): {**({"reason": g.reason} if g.reason else {}), **(g.data or {})} for g in groups}
    rows_insert(
        ItemEvent,
        [
            {
                "item_id": pk,
                "at": now,
                "actor_label": group_of[pk].actor,
                "event": "queued",
                "from_state": ItemState.RECEIVED,
                "to_state": ItemState.QUEUED,
                "queue_id": group_of[pk].queue.pk,
                "data": event_data[id(group_of[pk])],
            }
            for pk in moved
        ],
    )
    return moved


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
    ids = received_locked(item_ids)
    if not ids:
        return []
    # The kind is checked in the UPDATE itself, so triage pays no extra query for it.
    closed = (
        ReviewItem.objects.filter(pk__any=ids)
        .exclude(kind=ItemKind.APPEAL)
        .update(state=ItemState.AUTO_ACTIONED, triaged_at=now, decided_at=now, tags=sorted(set(tags)))
    )
    if closed != len(ids):
        raise ApplicationError(
            "An appeal ends only with an appeal outcome (upheld or overturned by a person); a rule cannot close it.",
            field="item_ids",
        )
    rows_insert(
        ItemEvent,
        [
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
        ],
    )
    extra = data or {}
    _auto_action_webhooks_emit(
        ids, policy=policy, action=action, label=extra.get("label_slug"), rule=extra.get("rule"), at=now
    )
    return ids


def _auto_action_webhooks_emit(
    ids: Sequence[int], *, policy: Policy, action: EnforcementAction, label: object, rule: object, at: datetime
) -> None:
    """A rule's decision is final too: its client hears about it as it would about a reviewer's (golden copies
    carry a client's source, but no client owns them)."""
    by_source: dict[str, list[tuple[int, str, str]]] = {}
    for pk, source, external_id, kind in ReviewItem.objects.filter(pk__in=ids, is_golden=False).values_list(
        "pk", "source", "external_id", "kind"
    ):
        by_source.setdefault(source, []).append((pk, external_id, kind))
    for client in ApiClient.objects.filter(source__in=by_source):
        webhooks_emit_many(
            client=client,
            event_type=WebhookEventType.DECISION_FINAL,
            payloads=[
                {
                    "item_id": pk,
                    "external_id": external_id,
                    "source": client.source,
                    "kind": kind,
                    "decision_id": None,
                    "decided_by": "rule",
                    "rule": rule,
                    "is_violation": True,
                    "policy": policy.slug,
                    "policy_version": policy.guidelines_version,
                    "labels": [label] if isinstance(label, str) and label else [],
                    "action": action.slug,
                    "decided_at": at.isoformat(),
                }
                for pk, external_id, kind in by_source[client.source]
            ],
        )


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


def _ordering(queue: Queue) -> list[str]:
    if queue.ordering == QueueOrdering.DUE_FIRST:
        return ["due_at", "pk"]
    if queue.ordering == QueueOrdering.OLDEST_FIRST:
        return ["received_at", "pk"]
    return ["-priority", "due_at", "pk"]


def claimable(queue: Queue, actor: User, *, now: datetime | None = None) -> QuerySet[ReviewItem]:
    """Items of ``queue`` this reviewer may take: waiting, not reserved for someone else, not an item they
    already reviewed (independent reviews), not an appeal of their own decision, not one they skipped lately.

    ``_CLAIM_SQL`` says the same in SQL for PostgreSQL; change both together.
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


# ``item_claim_next`` on PostgreSQL in one statement, so one round trip and atomic without a transaction:
# - held: the reviewer's unfinished item in this queue, its lease renewed (gone if the lease sweep took it);
# - claimed: else, as ``claimable`` says, the first row in the queue's order that no other transaction has
#   locked (SKIP LOCKED: concurrent reviewers pass over each other's rows instead of waiting), now theirs;
# - event: the 'claimed' history row for it.
# It is sent after ``_CLAIM_LOCK_SQL`` in the same message (see ``_claim_next_postgresql``).
_CLAIM_SQL = """
WITH held AS (
    UPDATE queues_reviewitem SET lease_expires_at = %(expires)s
    WHERE id = (
        SELECT id FROM queues_reviewitem
        WHERE queue_id = %(queue)s AND state = 'claimed' AND assignee_id = %(actor)s
        ORDER BY claimed_at LIMIT 1
    ) AND state = 'claimed' AND assignee_id = %(actor)s
    RETURNING *
), claimed AS (
    UPDATE queues_reviewitem
    SET state = 'claimed', assignee_id = %(actor)s, claimed_at = %(now)s, lease_expires_at = %(expires)s
    WHERE NOT EXISTS (SELECT FROM held) AND id = (
        SELECT id FROM queues_reviewitem AS item
        WHERE queue_id = %(queue)s AND state = 'queued'
          AND (reserved_for_id IS NULL OR reserved_for_id = %(actor)s)
          AND NOT EXISTS (SELECT FROM queues_decision WHERE item_id = item.id AND reviewer_id = %(actor)s)
          AND NOT EXISTS (SELECT FROM queues_decision WHERE item_id = item.appeal_of_id AND reviewer_id = %(actor)s)
          AND NOT EXISTS (
              SELECT FROM queues_itemskip WHERE item_id = item.id AND reviewer_id = %(actor)s AND until > %(now)s
          )
        ORDER BY {order}
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING *
), event AS (
    INSERT INTO queues_itemevent (item_id, at, actor_id, actor_label, event, from_state, to_state, queue_id, data)
    SELECT id, %(now)s, %(actor)s, %(actor_label)s, 'claimed', 'queued', 'claimed', queue_id, '{{}}' FROM claimed
)
SELECT * FROM held UNION ALL SELECT * FROM claimed
"""
# ``_ordering`` in SQL; each matches one of the item_queue_*_idx indexes, so the claim walks an index.
_CLAIM_SQL_BY_ORDERING = {
    QueueOrdering.PRIORITY_THEN_DUE: _CLAIM_SQL.format(order="priority DESC, due_at, id"),
    QueueOrdering.DUE_FIRST: _CLAIM_SQL.format(order="due_at, id"),
    QueueOrdering.OLDEST_FIRST: _CLAIM_SQL.format(order="received_at, id"),
}
# One claim at a time per reviewer and queue: two claims of the same reviewer at the same instant (two tabs, a
# double click) would each see no held item and each take one. The lock is taken by its own statement in the
# same message as the claim (one round trip, one implicit transaction that keeps the lock until the claim is
# committed), because only a statement that starts after the wait sees the other claim's item as held; other
# reviewers never wait on it.
_CLAIM_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(%(lock)s, 0));\n"


def item_claim_next(
    *, queue: Queue, actor: User, lease: timedelta = DEFAULT_LEASE, at: datetime | None = None
) -> ReviewItem | None:
    """Give the reviewer the next item of ``queue`` (highest priority, then earliest due) under a lease.

    Exactly one reviewer gets each item: on PostgreSQL the candidate row is taken with
    ``FOR UPDATE SKIP LOCKED`` (concurrent reviewers pass over each other's rows instead of waiting);
    elsewhere a conditional update that only succeeds while the row is still 'queued', retried. A
    reviewer already holding an item in this queue gets that one back, its lease renewed.
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
    if connection.vendor == "postgresql":
        return _claim_next_postgresql(queue, actor, now=now, expires=expires)
    return _claim_next_conditional(queue, actor, now=now, expires=expires)


def _holds_item(queue: Queue, actor: User) -> bool:
    return ReviewItem.objects.filter(queue=queue, state=ItemState.CLAIMED, assignee=actor).exists()


def _claim_next_postgresql(queue: Queue, actor: User, *, now: datetime, expires: datetime) -> ReviewItem | None:
    params: dict[str, int | str | datetime] = {
        "queue": queue.pk,
        "actor": actor.pk,
        "now": now,
        "expires": expires,
        "actor_label": actor_label(actor),
        "lock": f"claim-next:{queue.pk}:{actor.pk}",
    }
    # Two statements in one execute: Django's cursors bind client-side, so psycopg sends them as one message.
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_LOCK_SQL + _CLAIM_SQL_BY_ORDERING[QueueOrdering(queue.ordering)], params)
        cursor.nextset()
        items = _items_from_cursor(cursor)
    return items[0] if items else None


def _items_from_cursor(cursor: Any) -> list[ReviewItem]:
    """Items from a cursor's ``SELECT *`` rows, converted as ``Manager.raw`` would (in model field order,
    whatever order the table's columns were added in)."""
    columns = [column.name for column in cursor.description]
    fields = ReviewItem._meta.concrete_fields
    position = [columns.index(field.column) for field in fields]
    compiler = connection.ops.compiler("SQLCompiler")(Query(ReviewItem), connection, connection.alias)
    converters = compiler.get_converters([field.get_col(ReviewItem._meta.db_table) for field in fields])
    rows = [[row[i] for i in position] for row in cursor.fetchall()]
    values = compiler.apply_converters(rows, converters) if converters else rows
    names = [field.attname for field in fields]
    return [ReviewItem.from_db(connection.alias, names, list(row)) for row in values]


def _claim_next_conditional(queue: Queue, actor: User, *, now: datetime, expires: datetime) -> ReviewItem | None:
    """Without SKIP LOCKED: read the first candidate, take it with an update that only succeeds while it is
    still queued, and read again if another reviewer got there first. The held item is looked for in the same
    transaction as the claim (SQLite begins it IMMEDIATE, so one writer at a time): two claims of one reviewer
    at once cannot both find nothing held and both take an item."""
    with transaction.atomic():
        return _claim_next_conditional_locked(queue, actor, now=now, expires=expires)


def _claim_next_conditional_locked(queue: Queue, actor: User, *, now: datetime, expires: datetime) -> ReviewItem | None:
    held = ReviewItem.objects.filter(queue=queue, state=ItemState.CLAIMED, assignee=actor).order_by("claimed_at")
    # Still theirs only if the lease sweep did not return it to the queue since the read; else claim afresh.
    if (mine := held.first()) is not None and ReviewItem.objects.filter(
        pk=mine.pk, state=ItemState.CLAIMED, assignee=actor
    ).update(lease_expires_at=expires):
        mine.lease_expires_at = expires
        return mine
    candidates = claimable(queue, actor, now=now).order_by(*_ordering(queue))
    for _ in range(10):
        with transaction.atomic():
            item = candidates.first()
            if item is None:
                return None
            changed = ReviewItem.objects.filter(pk=item.pk, state=ItemState.QUEUED, assignee__isnull=True).update(
                state=ItemState.CLAIMED, assignee=actor, claimed_at=now, lease_expires_at=expires
            )
            if not changed:
                continue  # another reviewer took it between the read and the update
            ItemEvent.objects.create(
                item=item,
                at=now,
                actor=actor,
                actor_label=actor_label(actor),
                event="claimed",
                from_state=ItemState.QUEUED,
                to_state=ItemState.CLAIMED,
                queue=queue,
            )
            item.state, item.assignee, item.queue = ItemState.CLAIMED, actor, queue
            item.claimed_at, item.lease_expires_at = now, expires
            return item
    return None


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
    _back_to_queue(item, now=now, actor=actor, event="released", data={"reason": reason[:500]})


def _back_to_queue(
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
            _back_to_queue(
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
    elif item.queue.escalation_target is None:
        raise ApplicationError(
            f"'{item.queue.name}' has no escalation queue; name a senior colleague.", field="to_user"
        )
    _back_to_queue(
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


@dataclass(frozen=True)
class DecisionResult:
    decision: Decision
    closed: bool  # False: more independent reviews are needed, or it went to adjudication
    adjudication: bool = False


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
    """Record the claiming reviewer's decision; see :func:`decision_record` for the item's outcome."""
    return decision_record(
        item=item, actor=actor, is_violation=is_violation, policy=policy, labels=labels, action=action,
        rationale=rationale, at=at,
    ).decision  # fmt: skip


@transaction.atomic
def decision_record(
    *,
    item: ReviewItem,
    actor: User,
    is_violation: bool,
    policy: Policy | None = None,
    labels: Sequence[DecisionLabel] = (),
    action: EnforcementAction | None = None,
    rationale: str = "",
    at: datetime | None = None,
) -> DecisionResult:
    """Record the claiming reviewer's decision.

    An item that needs one review closes. One that rules marked for N independent reviews goes back to
    its queue until N different reviewers decided it; if they agree (violation or not, same policy) the
    last decision is final and the item closes, otherwise it goes to adjudication (the queue's
    escalation target, tagged ``adjudication``) where the next decision is final.
    """
    now = at or timezone.now()
    item = ReviewItem.objects.select_for_update(of=("self",)).select_related("queue").get(pk=item.pk)
    if item.state != ItemState.CLAIMED or item.assignee_id != actor.pk:
        raise ApplicationError("Only the reviewer holding the item's lease can decide it.", field="item")
    lease_check(item, now=now)
    appeal_outcome_required(item)
    check_transition(item.state, ItemState.DECIDED, item_id=item.pk)
    decision_validate(item, is_violation=is_violation, policy=policy, labels=labels, action=action, rationale=rationale)
    adjudicating = "adjudication" in (item.tags or [])
    earlier: list[tuple[bool, int | None]] = []
    if item.required_reviews > 1 and not adjudicating:
        # The independent reviews of this round: interim decisions no later decision closed.
        earlier = list(
            item.decisions.filter(is_final=False, superseded_by__isnull=True)
            .exclude(reviewer=actor)
            .values_list("is_violation", "policy_id")
        )
    reviews = len(earlier) + 1
    needs_more = not adjudicating and reviews < item.required_reviews
    mine = (is_violation, policy.pk if policy and is_violation else None)
    outcomes = {(v, p if v else None) for v, p in earlier} | {mine}
    disagree = not adjudicating and not needs_more and len(outcomes) > 1
    final = not needs_more and not disagree
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
        is_final=final,
    )
    if labels:
        decision.labels.set(labels)
    data: dict[str, object] = {
        "decision": decision.pk,
        "violation": is_violation,
        "policy": policy.slug if policy else None,
    }
    if final:
        ReviewItem.objects.filter(pk=item.pk).update(
            state=ItemState.DECIDED, decided_at=now, assignee=None, lease_expires_at=None, reserved_for=None
        )
        ItemEvent.objects.create(
            item=item, at=now, actor=actor, actor_label=actor_label(actor), event="decided",
            from_state=ItemState.CLAIMED, to_state=ItemState.DECIDED, queue_id=item.queue_id, data=data,
        )  # fmt: skip
        _decision_webhook_emit(item, decision, labels)
        return DecisionResult(decision, closed=True)
    if needs_more:
        data["reviews"] = f"{reviews} of {item.required_reviews}"
        _back_to_queue(item, now=now, actor=actor, event="reviewed", data=data)
        return DecisionResult(decision, closed=False)
    assert item.queue is not None
    target = item.queue.escalation_target or item.queue
    ReviewItem.objects.filter(pk=item.pk).update(tags=sorted({*(item.tags or []), "adjudication"}))
    _back_to_queue(item, now=now, actor=actor, event="to_adjudication", data=data, queue=target,
                   priority=max(item.priority, 50))  # fmt: skip
    return DecisionResult(decision, closed=False, adjudication=True)


def _decision_webhook_emit(item: ReviewItem, decision: Decision, labels: Sequence[DecisionLabel]) -> None:
    """Tell the item's client about its final decision: ids and the outcome, never the content or rationale."""
    if item.is_golden:  # a QA test copy: no client owns it
        return
    client = ApiClient.objects.filter(source=item.source).first()
    if client is None:
        return
    webhook_emit(
        client=client,
        event_type=WebhookEventType.DECISION_FINAL,
        payload={
            "item_id": item.pk,
            "external_id": item.external_id,
            "source": item.source,
            "kind": item.kind,
            "decision_id": decision.pk,
            "decided_by": "reviewer",
            "is_violation": decision.is_violation,
            "policy": decision.policy.slug if decision.policy else None,
            "policy_version": decision.policy.guidelines_version if decision.policy else None,
            "labels": sorted(label.slug for label in labels),
            "action": decision.action.slug if decision.action else None,
            "decided_at": decision.decided_at.isoformat(),
        },
    )


class AppealOutcomeRequired(ApplicationError):
    status_code = 409
    code = "appeal_outcome_required"


def appeal_outcome_required(item: ReviewItem) -> None:
    """An appeal ends only by upholding or overturning the decision it contests (:func:`appeal_decide`): any
    other decision would close it with no outcome, leave the contested decision neither upheld nor superseded,
    and tell the client nothing."""
    if item.kind == ItemKind.APPEAL:
        raise AppealOutcomeRequired(
            f"Item {item.pk} is an appeal: it ends only by upholding or overturning the decision it contests.",
            field="item",
        )


def decision_validate(
    item: ReviewItem,
    *,
    is_violation: bool,
    policy: Policy | None,
    labels: Sequence[DecisionLabel],
    action: EnforcementAction | None,
    rationale: str,
) -> None:
    """Refuse a decision that is incomplete, cites a label or action its policy does not have, or cites a policy
    or action the item's queue does not offer (the one check every way of deciding goes through)."""
    if is_violation and policy is None:
        raise ApplicationError("A violation needs the policy it violates.", field="policy")
    if policy is not None and not policy.is_active:
        raise ApplicationError(f"Policy '{policy.slug}' is retired.", field="policy")
    if any(label.policy_id != (policy.pk if policy else None) for label in labels):
        raise ApplicationError("Every label must belong to the decision's policy.", field="labels")
    retired = sorted(label.slug for label in labels if not label.is_active)
    if retired:
        raise ApplicationError(f"Label '{retired[0]}' is retired.", field="labels")
    if action is not None and not action.is_active:
        raise ApplicationError(f"Action '{action.slug}' is retired.", field="action")
    if action is not None and not is_violation and action.strength > 0:
        raise ApplicationError("No enforcement action for content that breaks no policy.", field="action")
    if action is not None and policy is not None and not policy.enforcement_actions.filter(pk=action.pk).exists():
        raise ApplicationError(f"'{action.slug}' is not an action of policy '{policy.slug}'.", field="action")
    decision_scope_validate(item.queue, policy=policy, action=action)
    if item.queue and item.queue.requires_rationale and not rationale.strip():
        raise ApplicationError(f"Queue '{item.queue.slug}' requires a rationale.", field="rationale")


def decision_scope_validate(queue: Queue | None, *, policy: Policy | None, action: EnforcementAction | None) -> None:
    """A decision cites only what the item's queue offers: one of the queue's policies, and an action of one of
    them. A queue that lists no policy offers none (only "no violation" without a policy, as its decide form
    shows). An item no queue holds (a rule closed it) may cite any active policy, as QA's forms offer."""
    if queue is None:
        return
    if policy is not None and not queue.policies.filter(pk=policy.pk).exists():
        raise ApplicationError(
            f"Policy '{policy.slug}' is not one of the policies of queue '{queue.slug}': decide under one of them, "
            "or escalate the item to a queue that has it.",
            field="policy",
        )
    if action is not None and policy is None and not queue.policies.filter(enforcement_actions=action).exists():
        raise ApplicationError(
            f"Action '{action.slug}' is not an action of any policy of queue '{queue.slug}'.", field="action"
        )


# --- appeals ---------------------------------------------------------------------------------------


def appeal_contested(appeal: ReviewItem) -> Decision | None:
    """The decision an appeal contests: the original item's current final decision (None if a rule closed it)."""
    if appeal.appeal_of_id is None:
        return None
    return (
        Decision.objects.filter(item_id=appeal.appeal_of_id, is_final=True, superseded_by__isnull=True)
        .select_related("policy", "action")
        .order_by("-decided_at")
        .first()
    )


@transaction.atomic
def appeal_decide(
    *, item: ReviewItem, actor: User, uphold: bool, rationale: str, at: datetime | None = None
) -> Decision:
    """Uphold or overturn the decision an appeal contests.

    The appeal item closes with a decision recording the outcome. Overturning also corrects the
    original item: a new final decision with the opposite verdict supersedes the contested one (for an
    item a rule auto-actioned, the correction is the first human decision). Never by the original decider:
    claim-next does not give them the appeal, and this refuses them too.
    """
    now = at or timezone.now()
    item = ReviewItem.objects.select_for_update(of=("self",)).select_related("queue", "appeal_of").get(pk=item.pk)
    if item.kind != ItemKind.APPEAL or item.appeal_of is None:
        raise ApplicationError("This item is not an appeal.", field="item")
    if item.state != ItemState.CLAIMED or item.assignee_id != actor.pk:
        raise ApplicationError("Only the reviewer holding the appeal can decide it.", field="item")
    lease_check(item, now=now)
    if not rationale.strip():
        raise ApplicationError("An appeal outcome needs a rationale; the user will be told why.", field="rationale")
    contested = appeal_contested(item)
    if contested is not None and contested.reviewer_id == actor.pk:
        raise NotPermitted("You made the decision under appeal; someone else must review it.")
    original = item.appeal_of
    was_violation = contested.is_violation if contested else original.state == ItemState.AUTO_ACTIONED
    verdict = was_violation if uphold else not was_violation
    policy = contested.policy if contested and verdict else None
    outcome = AppealOutcome.UPHELD if uphold else AppealOutcome.OVERTURNED
    kept_action = contested.action if uphold and contested else None
    decision = Decision.objects.create(
        item=item, reviewer=actor, queue=item.queue, policy=policy, action=kept_action,
        is_violation=verdict, rationale=rationale[:5000], claimed_at=item.claimed_at, decided_at=now,
        handle_time=now - item.claimed_at if item.claimed_at else None, appeal_outcome=outcome,
    )  # fmt: skip
    ReviewItem.objects.filter(pk=item.pk).update(
        state=ItemState.DECIDED, decided_at=now, assignee=None, lease_expires_at=None, reserved_for=None
    )
    data: dict[str, object] = {"decision": decision.pk, "outcome": outcome, "appeal": item.pk}
    ItemEvent.objects.create(
        item=item, at=now, actor=actor, actor_label=actor_label(actor), event="decided",
        from_state=ItemState.CLAIMED, to_state=ItemState.DECIDED, queue_id=item.queue_id, data=data,
    )  # fmt: skip
    if not uphold:
        correction = Decision.objects.create(
            item=original, reviewer=actor, queue=item.queue, policy=None if not verdict else policy,
            is_violation=verdict, rationale=f"Appeal {item.pk} overturned: {rationale[:4900]}", decided_at=now,
            supersedes=contested,
        )  # fmt: skip
        data["correction"] = correction.pk
    ItemEvent.objects.create(
        item=original, at=now, actor=actor, actor_label=actor_label(actor), event=f"appeal_{outcome}",
        from_state=original.state, to_state=original.state, queue_id=item.queue_id, data=data,
    )  # fmt: skip
    client = ApiClient.objects.filter(source=item.source).first()
    if client is not None:
        webhook_emit(
            client=client,
            event_type=WebhookEventType.APPEAL_OUTCOME,
            payload={
                "appeal_id": item.pk,
                "appeal_external_id": item.external_id,
                "item_id": original.pk,
                "external_id": original.external_id,
                "source": item.source,
                "outcome": str(outcome),
                "is_violation": verdict,
                "policy": policy.slug if policy else None,
                "decision_id": decision.pk,
                "decided_at": now.isoformat(),
            },
        )
    return decision


@transaction.atomic
def decision_correct(
    *,
    item: ReviewItem,
    actor: User,
    is_violation: bool,
    policy: Policy | None,
    action: EnforcementAction | None,
    rationale: str,
    at: datetime | None = None,
) -> Decision:
    """Correct a decided (or rule-actioned) item: a new final decision supersedes the one in force, and the
    client hears the new outcome. Used by QA adjudication; the item stays closed."""
    now = at or timezone.now()
    item = ReviewItem.objects.select_for_update(of=("self",)).select_related("queue").get(pk=item.pk)
    if item.state not in (ItemState.DECIDED, ItemState.AUTO_ACTIONED):
        raise Conflict("Only a closed item can be corrected.", field="item")
    if item.kind == ItemKind.APPEAL:
        # Superseding the appeal's decision would change its outcome without one: correct the appealed item.
        raise AppealOutcomeRequired(
            f"Item {item.pk} is an appeal: its upheld or overturned outcome stands; correct item "
            f"{item.appeal_of_id}, the one appealed, instead.",
            field="item",
        )
    decision_validate(item, is_violation=is_violation, policy=policy, labels=(), action=action, rationale="-")
    current = (
        Decision.objects.select_for_update(of=("self",))
        .filter(item=item, is_final=True, superseded_by__isnull=True)
        .order_by("-decided_at", "-pk")
        .first()
    )
    correction = Decision.objects.create(
        item=item, reviewer=actor, queue=item.queue, policy=policy if is_violation else None,
        action=action if is_violation else None, is_violation=is_violation, rationale=rationale[:5000],
        decided_at=now, supersedes=current,
    )  # fmt: skip
    ItemEvent.objects.create(
        item=item, at=now, actor=actor, actor_label=actor_label(actor), event="corrected",
        from_state=item.state, to_state=item.state, queue_id=item.queue_id,
        data={"decision": correction.pk, "supersedes": current.pk if current else None},
    )  # fmt: skip
    _decision_webhook_emit(item, correction, ())
    return correction
