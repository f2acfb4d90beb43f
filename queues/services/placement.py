"""Placing triaged items: into a queue (one group or a whole batch), closed by a rule, or moved between queues."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ops_platform.core.bulk import rows_insert
from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import ApiClient, EnforcementAction, Policy, WebhookEventType
from ops_platform.core.webhooks import webhooks_emit_many
from queues import sql
from queues.models import ItemEvent, ItemKind, ItemState, Queue, ReviewItem, check_transition
from queues.services.decisions import decision_final_payload


def queue_default_intake() -> Queue:
    queue = Queue.objects.filter(is_default_intake=True, is_active=True).first()
    if queue is None:
        raise ApplicationError("No active default intake queue is configured.")
    return queue


def received_locked(item_ids: Sequence[int]) -> list[int]:
    """Lock the given items (skipping rows another transaction holds) and return, in id order, those still
    'received'. Picked by id alone and the state checked after the lock, so the planner cannot read the whole
    backlog off the un-triaged index (docs/performance.md, "Queues: claims and placement"). Must run inside
    the caller's transaction, which keeps the lock."""
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
    """:func:`items_enqueue` for every group of a triage batch at once: on PostgreSQL one lock, one UPDATE and
    one history INSERT for the batch instead of three statements per group. Same guarantees: only items still
    'received' move, rows another worker holds are skipped, so each item is queued exactly once."""
    if not sql.on_postgresql():
        return [
            pk
            for g in groups
            for pk in items_enqueue(
                item_ids=g.item_ids,
                queue=g.queue,
                actor=g.actor,
                priority=g.priority,
                reason=g.reason,
                data=g.data,
                tags=g.tags,
                required_reviews=g.required_reviews,
                at=at,
            )
        ]
    check_transition(ItemState.RECEIVED, ItemState.QUEUED)
    now = at or timezone.now()
    group_of = {pk: g for g in groups for pk in g.item_ids}
    locked = received_locked(list(group_of))
    if not locked:
        return []
    moved = sql.items_queue_many(
        rows=[
            {
                "id": pk,
                "queue_id": group_of[pk].queue.pk,
                "priority": group_of[pk].priority,
                "sla_seconds": group_of[pk].queue.sla.total_seconds(),
                "tags": sorted(set(group_of[pk].tags)),
                "required_reviews": group_of[pk].required_reviews,
            }
            for pk in locked
        ],
        now=now,
    )
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
        .exclude(is_golden=True)
        .update(state=ItemState.AUTO_ACTIONED, triaged_at=now, decided_at=now, tags=sorted(set(tags)))
    )
    if closed != len(ids):
        raise ApplicationError(
            "A rule cannot close an appeal (it ends only with an appeal outcome a person gives) or a QA golden "
            "copy (it exists to be reviewed by a person).",
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
    labels = [label] if isinstance(label, str) and label else []
    for client in ApiClient.objects.filter(source__in=by_source):
        webhooks_emit_many(
            client=client,
            event_type=WebhookEventType.DECISION_FINAL,
            payloads=[
                decision_final_payload(
                    item_id=pk,
                    external_id=external_id,
                    source=client.source,
                    kind=kind,
                    decision_id=None,
                    decided_by="rule",
                    rule=rule,
                    is_violation=True,
                    policy=policy,
                    labels=labels,
                    action=action,
                    decided_at=at,
                )
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
        data={
            "reason": reason,
            "from_queue": item.queue.slug if item.queue else None,
            "priority": priority,
            **(data or {}),
        },
    )
    return True
