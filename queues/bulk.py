"""Bulk decisions: a senior reviewer applies one decision to many waiting items of a queue at once.

For floods of the same thing (a spam wave, a copied post). Capped per batch, refused for items that
need more care than one look at a list allows (several independent reviews, adjudication, appeals,
items escalated to someone by name), and audited as one batch whose id every decision carries.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, NotPermitted
from ops_platform.core.models import ApiClient, DecisionLabel, EnforcementAction, Policy, User, WebhookEventType
from ops_platform.core.params import MAX_ID
from ops_platform.core.services import actor_label, audit_record
from ops_platform.core.webhooks import webhooks_emit_many
from queues.models import Decision, ItemEvent, ItemKind, ItemState, Queue, ReviewItem
from queues.services import decision_validate, reviewer_may_work


def bulk_max() -> int:
    return int(settings.BULK_DECISION_MAX)


@dataclass(frozen=True)
class BulkFilter:
    """What a senior reviewer narrows a queue to before selecting items; every field is optional."""

    text: str = ""
    tag: str = ""
    surface: str = ""
    language: str = ""
    min_priority: int | None = None


def _has_tag(tag: str) -> Q:
    # JSON containment is PostgreSQL-only; the quoted tag within the stored JSON text works everywhere.
    return Q(tags__icontains=json.dumps(tag))


def bulk_candidates(queue: Queue, actor: User, filters: BulkFilter) -> QuerySet[ReviewItem]:
    """Waiting items of ``queue`` a bulk decision may close, oldest first."""
    items = (
        ReviewItem.objects.filter(queue=queue, state=ItemState.QUEUED, required_reviews=1)
        .exclude(kind=ItemKind.APPEAL)
        .filter(Q(reserved_for__isnull=True) | Q(reserved_for=actor))
    )
    # Adjudication needs someone to read the disagreeing decisions; it never goes in a batch.
    items = items.exclude(_has_tag("adjudication"))
    if filters.text:
        items = items.filter(text__icontains=filters.text)
    if filters.tag:
        items = items.filter(_has_tag(filters.tag))
    if filters.surface:
        items = items.filter(surface=filters.surface)
    if filters.language:
        items = items.filter(language=filters.language)
    if filters.min_priority is not None:
        items = items.filter(priority__gte=filters.min_priority)
    return items.order_by("received_at", "pk")


@dataclass(frozen=True)
class BulkResult:
    batch_id: uuid.UUID
    decided: list[int]
    skipped: list[int] = field(default_factory=list)  # taken by someone, decided or moved meanwhile


def items_bulk_decide(
    *,
    queue: Queue,
    item_ids: Sequence[int],
    actor: User,
    is_violation: bool,
    policy: Policy | None = None,
    labels: Sequence[DecisionLabel] = (),
    action: EnforcementAction | None = None,
    rationale: str,
    at: datetime | None = None,
) -> BulkResult:
    """Decide every listed item that is still waiting in ``queue`` the same way, as one audited batch.

    Items another reviewer claimed or that left the queue since the list was shown are skipped, not
    failed: the batch is about the items as they are now.
    """
    if not actor.has_perm("core.bulk_decide") or not reviewer_may_work(queue, actor):
        raise NotPermitted(f"Bulk decisions in '{queue.name}' are for its senior reviewers.")
    ids = list(dict.fromkeys(int(pk) for pk in item_ids))
    if not all(1 <= pk <= MAX_ID for pk in ids):
        raise ApplicationError("Select items by their ids.", field="items")
    if not ids:
        raise ApplicationError("Select at least one item.", field="items")
    if len(ids) > bulk_max():
        raise ApplicationError(f"At most {bulk_max()} items per bulk decision; {len(ids)} were selected.",
                               field="items")  # fmt: skip
    if not rationale.strip():
        raise ApplicationError("A bulk decision needs a rationale: it is the record for every item.", field="rationale")
    now = at or timezone.now()
    batch_id = uuid.uuid4()
    with transaction.atomic():
        locked = list(
            bulk_candidates(queue, actor, BulkFilter())
            .select_for_update(skip_locked=True, of=("self",))
            .filter(pk__in=ids)
            .order_by("pk")
        )
        if locked:
            decision_validate(locked[0], is_violation=is_violation, policy=policy, labels=labels, action=action,
                              rationale=rationale)  # fmt: skip
        decisions = Decision.objects.bulk_create(
            Decision(item=item, reviewer=actor, queue=queue, policy=policy, action=action, is_violation=is_violation,
                     rationale=rationale[:5000], decided_at=now, is_final=True, batch_id=batch_id)
            for item in locked
        )  # fmt: skip
        if labels:
            through = Decision.labels.through
            through.objects.bulk_create(
                through(decision_id=d.pk, decisionlabel_id=label.pk) for d in decisions for label in labels
            )
        decided = [item.pk for item in locked]
        ReviewItem.objects.filter(pk__in=decided, state=ItemState.QUEUED).update(
            state=ItemState.DECIDED, decided_at=now, reserved_for=None
        )
        ItemEvent.objects.bulk_create(
            ItemEvent(item_id=d.item_id, at=now, actor=actor, actor_label=actor_label(actor), event="decided",
                      from_state=ItemState.QUEUED, to_state=ItemState.DECIDED, queue=queue,
                      data={"decision": d.pk, "batch": str(batch_id), "violation": is_violation,
                            "policy": policy.slug if policy else None})
            for d in decisions
        )  # fmt: skip
        skipped = sorted(set(ids) - set(decided))
        audit_record(
            actor=actor,
            action="decision.bulk",
            target=queue,
            after={
                "batch_id": str(batch_id),
                "items": decided,
                "skipped": skipped,
                "is_violation": is_violation,
                "policy": policy.slug if policy else None,
                "labels": sorted(label.slug for label in labels),
                "action": action.slug if action else None,
            },
            reason=rationale[:5000],
        )
        _webhooks_emit(locked, decisions, policy=policy, labels=labels, action=action, batch_id=batch_id, at=now)
    return BulkResult(batch_id, decided, skipped)


def _webhooks_emit(
    items: list[ReviewItem],
    decisions: list[Decision],
    *,
    policy: Policy | None,
    labels: Sequence[DecisionLabel],
    action: EnforcementAction | None,
    batch_id: uuid.UUID,
    at: datetime,
) -> None:
    by_source: dict[str, list[dict[str, object]]] = {}
    for item, decision in zip(items, decisions, strict=True):
        by_source.setdefault(item.source, []).append(
            {
                "item_id": item.pk,
                "external_id": item.external_id,
                "source": item.source,
                "kind": item.kind,
                "decision_id": decision.pk,
                "decided_by": "reviewer",
                "batch_id": str(batch_id),
                "is_violation": decision.is_violation,
                "policy": policy.slug if policy else None,
                "policy_version": policy.guidelines_version if policy else None,
                "labels": sorted(label.slug for label in labels),
                "action": action.slug if action else None,
                "decided_at": at.isoformat(),
            }
        )
    for client in ApiClient.objects.filter(source__in=by_source):
        webhooks_emit_many(client=client, event_type=WebhookEventType.DECISION_FINAL, payloads=by_source[client.source])
