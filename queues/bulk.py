"""Bulk decisions: a senior reviewer applies one decision to many waiting items of a queue at once.

For floods of the same thing (a spam wave, a copied post). Capped per batch, refused for items that
need more care than one look at a list allows (several independent reviews, adjudication, appeals,
items escalated to someone by name), and audited as one batch whose id every decision carries.

Deliberate by construction: :func:`items_bulk_preview` checks a batch and says what it would decide, with a
signed confirmation; :func:`items_bulk_decide` applies exactly that batch (same items, same decision) only
with that confirmation and the item count the person typed; a violation needs its enforcement action; and
:func:`decision_batch_revert` takes a batch back within ``BULK_DECISION_REVERT_WINDOW``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core import signing
from django.db import transaction
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, Conflict, NotFound, NotPermitted
from ops_platform.core.models import (
    ApiClient,
    DecisionLabel,
    EnforcementAction,
    Policy,
    User,
    WebhookEventType,
)
from ops_platform.core.params import MAX_ID
from ops_platform.core.services import actor_label, audit_record
from ops_platform.core.webhooks import webhooks_emit_many
from queues.accounts.strikes import strikes_sync_item
from queues.models import Decision, ItemEvent, ItemState, Queue, ReviewItem, check_transition
from queues.selectors import BulkFilter, bulk_candidates
from queues.services.claims import reviewer_may_work
from queues.services.decisions import decision_final_payload, decision_validate

CONFIRMATION_SALT = "queues.bulk.confirmation"


def bulk_max() -> int:
    return int(settings.BULK_DECISION_MAX)


def _batch_check(
    *,
    queue: Queue,
    item_ids: Sequence[int],
    actor: User,
    is_violation: bool,
    action: EnforcementAction | None,
    rationale: str,
) -> list[int]:
    """What a batch needs whatever its items: a senior of the queue, a selection within the cap, a rationale,
    and for a violation the enforcement action each item's client is to take. Returns the ids, deduplicated."""
    if not actor.has_perm("core.bulk_decide") or not reviewer_may_work(queue, actor):
        raise NotPermitted(f"Bulk decisions in '{queue.name}' are for its senior reviewers.")
    ids = list(dict.fromkeys(int(pk) for pk in item_ids))
    if not all(1 <= pk <= MAX_ID for pk in ids):
        raise ApplicationError("Select items by their ids.", field="items")
    if not ids:
        raise ApplicationError("Select at least one item.", field="items")
    if len(ids) > bulk_max():
        raise ApplicationError(
            f"At most {bulk_max()} items per bulk decision; {len(ids)} were selected.", field="items"
        )
    if not rationale.strip():
        raise ApplicationError("A bulk decision needs a rationale: it is the record for every item.", field="rationale")
    if is_violation and action is None:
        raise ApplicationError(
            "A violation decided in bulk needs its enforcement action: each item's client acts on it.", field="action"
        )
    return ids


def _fingerprint(
    ids: Sequence[int],
    *,
    is_violation: bool,
    policy: Policy | None,
    labels: Sequence[DecisionLabel],
    action: EnforcementAction | None,
    rationale: str,
) -> str:
    """One digest of the items and the decision: the confirmation is valid for exactly this batch."""
    shape = [
        sorted(ids),
        is_violation,
        policy.pk if policy else None,
        sorted(label.pk for label in labels),
        action.pk if action else None,
        rationale,
    ]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()


@dataclass(frozen=True)
class BulkPreview:
    """What a confirmed batch would decide: the items still waiting (oldest first) and the confirmation."""

    items: list[ReviewItem]
    left_out: list[int]  # selected, but taken, decided, moved or never for a batch: not in it
    confirmation: str

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def item_ids(self) -> list[int]:
        return [item.pk for item in self.items]


def items_bulk_preview(
    *,
    queue: Queue,
    item_ids: Sequence[int],
    actor: User,
    is_violation: bool,
    policy: Policy | None = None,
    labels: Sequence[DecisionLabel] = (),
    action: EnforcementAction | None = None,
    rationale: str,
) -> BulkPreview:
    """Check a batch completely and say what it would decide; nothing is written.

    The confirmation it returns is signed for this person, queue, the items still waiting and this decision,
    for ``BULK_DECISION_CONFIRM_WITHIN``: :func:`items_bulk_decide` accepts nothing else.
    """
    ids = _batch_check(
        queue=queue, item_ids=item_ids, actor=actor, is_violation=is_violation, action=action, rationale=rationale
    )
    items = list(bulk_candidates(queue, actor, BulkFilter()).filter(pk__in=ids))
    if not items:
        raise ApplicationError("None of the selected items is still waiting to be decided.", field="items")
    decision_validate(
        items[0], is_violation=is_violation, policy=policy, labels=labels, action=action, rationale=rationale
    )
    kept = [item.pk for item in items]
    batch = _fingerprint(
        kept, is_violation=is_violation, policy=policy, labels=labels, action=action, rationale=rationale
    )
    confirmation = signing.dumps({"actor": actor.pk, "queue": queue.pk, "batch": batch}, salt=CONFIRMATION_SALT)
    return BulkPreview(items, sorted(set(ids) - set(kept)), confirmation)


def _confirmation_check(confirmation: str, *, actor: User, queue: Queue, batch: str) -> None:
    try:
        signed = signing.loads(confirmation, salt=CONFIRMATION_SALT, max_age=settings.BULK_DECISION_CONFIRM_WITHIN)
    except signing.SignatureExpired as exc:
        raise Conflict("This preview has expired: preview the batch again.", field="confirmation") from exc
    except signing.BadSignature as exc:
        raise ApplicationError(
            "Preview the batch first: a bulk decision is applied only as previewed and confirmed.",
            field="confirmation",
        ) from exc
    if signed != {"actor": actor.pk, "queue": queue.pk, "batch": batch}:
        raise ApplicationError(
            "The items or the decision differ from the preview that was confirmed: preview again.",
            field="confirmation",
        )


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
    confirmation: str,
    confirmed_count: int | None,
    at: datetime | None = None,
) -> BulkResult:
    """Decide the previewed items that are still waiting in ``queue`` the same way, as one audited batch.

    ``item_ids`` and the decision must be the ones :func:`items_bulk_preview` returned ``confirmation`` for, and
    ``confirmed_count`` the number of those items (the person types it). Items another reviewer claimed or that
    left the queue since the preview are skipped, not failed: the batch is about the items as they are now.
    """
    ids = _batch_check(
        queue=queue, item_ids=item_ids, actor=actor, is_violation=is_violation, action=action, rationale=rationale
    )
    batch = _fingerprint(
        ids, is_violation=is_violation, policy=policy, labels=labels, action=action, rationale=rationale
    )
    _confirmation_check(confirmation, actor=actor, queue=queue, batch=batch)
    if confirmed_count != len(ids):
        raise ApplicationError(
            f"Type the number of items previewed ({len(ids)}) to confirm the bulk decision.", field="confirmed_count"
        )
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
            decision_validate(
                locked[0], is_violation=is_violation, policy=policy, labels=labels, action=action, rationale=rationale
            )
        decisions = Decision.objects.bulk_create(
            Decision(
                item=item,
                reviewer=actor,
                queue=queue,
                policy=policy,
                action=action,
                is_violation=is_violation,
                rationale=rationale[:5000],
                decided_at=now,
                is_final=True,
                batch_id=batch_id,
            )
            for item in locked
        )
        if labels:
            through = Decision.labels.through
            through.objects.bulk_create(
                through(decision_id=d.pk, decisionlabel_id=label.pk) for d in decisions for label in labels
            )
        decided = [item.pk for item in locked]
        ReviewItem.objects.filter(pk__in=decided, state=ItemState.QUEUED).update(
            state=ItemState.DECIDED, decided_at=now, reserved_for=None, reserved_until=None
        )
        ItemEvent.objects.bulk_create(
            ItemEvent(
                item_id=d.item_id,
                at=now,
                actor=actor,
                actor_label=actor_label(actor),
                event="decided",
                from_state=ItemState.QUEUED,
                to_state=ItemState.DECIDED,
                queue=queue,
                data={
                    "decision": d.pk,
                    "batch": str(batch_id),
                    "violation": is_violation,
                    "policy": policy.slug if policy else None,
                },
            )
            for d in decisions
        )
        skipped = sorted(set(ids) - set(decided))
        audit_record(
            actor=actor,
            action="decision.bulk",
            target=queue,
            after={
                "batch_id": str(batch_id),
                "items": decided,
                "skipped": skipped,
                "confirmed_count": confirmed_count,
                **_decision_summary(is_violation, policy, labels, action),
            },
            reason=rationale[:5000],
        )
        if is_violation:
            for item in locked:
                strikes_sync_item(item=item, actor=actor, at=now)
        _webhooks_emit(locked, decisions, policy=policy, labels=labels, action=action, batch_id=batch_id, at=now)
    return BulkResult(batch_id, decided, skipped)


def _decision_summary(
    is_violation: bool, policy: Policy | None, labels: Sequence[DecisionLabel], action: EnforcementAction | None
) -> dict[str, object]:
    return {
        "is_violation": is_violation,
        "policy": policy.slug if policy else None,
        "labels": sorted(label.slug for label in labels),
        "action": action.slug if action else None,
    }


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
        if item.is_golden:  # a QA test copy: no client owns it, whatever source it carries
            continue
        by_source.setdefault(item.source, []).append(
            decision_final_payload(
                item_id=item.pk,
                external_id=item.external_id,
                source=item.source,
                kind=item.kind,
                decision_id=decision.pk,
                decided_by="reviewer",
                batch_id=batch_id,
                is_violation=decision.is_violation,
                policy=policy,
                labels=(label.slug for label in labels),
                action=action,
                decided_at=at,
            )
        )
    for client in ApiClient.objects.filter(source__in=by_source):
        webhooks_emit_many(client=client, event_type=WebhookEventType.DECISION_FINAL, payloads=by_source[client.source])


# --- reverting a batch ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RevertResult:
    batch_id: uuid.UUID
    reverted: list[int]  # items back in their queue, undecided
    kept: list[int]  # corrected, appealed or reopened since: left as they are


def _batch_uuid(batch_id: uuid.UUID | str) -> uuid.UUID:
    try:
        return batch_id if isinstance(batch_id, uuid.UUID) else uuid.UUID(str(batch_id))
    except ValueError as exc:
        raise ApplicationError("That is not a batch id.", field="batch") from exc


def decision_batch_revert(
    *, batch_id: uuid.UUID | str, actor: User, reason: str, at: datetime | None = None
) -> RevertResult:
    """Take a bulk decision back: each of its decisions still in force is superseded by a reversal (a decision
    that decides nothing), its item goes back to its queue undecided for a person to decide, and the item's
    client gets a ``decision.reverted`` webhook naming the decision that no longer stands.

    Within ``BULK_DECISION_REVERT_WINDOW`` of the batch, by a senior reviewer of its queue, once, with a
    reason; audited. Items corrected, appealed or reopened since are kept as they are and reported.
    """
    batch = _batch_uuid(batch_id)
    if not reason.strip():
        raise ApplicationError("Say why the batch is reverted: it is the record for every item.", field="reason")
    now = at or timezone.now()
    with transaction.atomic():
        decisions = list(Decision.objects.filter(batch_id=batch).select_related("queue").order_by("pk"))
        if not decisions:
            raise NotFound("No bulk decision has that batch id.", field="batch")
        queue = decisions[0].queue
        if queue is None or not actor.has_perm("core.bulk_decide") or not reviewer_may_work(queue, actor):
            raise NotPermitted("Bulk decisions are reverted by a senior reviewer of their queue.")
        window = settings.BULK_DECISION_REVERT_WINDOW
        if now - min(d.decided_at for d in decisions) > window:
            hours = int(window.total_seconds() // 3600)
            raise Conflict(
                f"Batch {batch} is older than {hours} h and can no longer be reverted as a whole; "
                "correct its items one by one.",
                field="batch",
            )
        items = {
            item.pk: item
            for item in ReviewItem.objects.select_for_update(of=("self",))
            .filter(pk__in=[d.item_id for d in decisions])
            .order_by("pk")
        }
        if Decision.objects.filter(is_reversal=True, supersedes__batch_id=batch).exists():
            raise Conflict(f"Batch {batch} was already reverted.", field="batch")
        superseded = set(Decision.objects.filter(supersedes__in=decisions).values_list("supersedes_id", flat=True))
        appealed = set(ReviewItem.objects.filter(appeal_of_id__in=list(items)).values_list("appeal_of_id", flat=True))
        revert = [
            d
            for d in decisions
            if d.pk not in superseded and d.item_id not in appealed and items[d.item_id].state == ItemState.DECIDED
        ]
        kept = sorted(d.item_id for d in decisions if d not in revert)
        if not revert:
            raise Conflict(
                f"Nothing in batch {batch} can be reverted: every item was corrected, appealed or reopened since.",
                field="batch",
            )
        check_transition(ItemState.DECIDED, ItemState.QUEUED)
        record = f"Bulk decision {batch} reverted: {reason}"[:5000]
        reversals = Decision.objects.bulk_create(
            Decision(
                item_id=d.item_id,
                reviewer=actor,
                queue=queue,
                is_violation=False,
                is_final=False,
                is_reversal=True,
                supersedes=d,
                rationale=record,
                decided_at=now,
            )
            for d in revert
        )
        reopened = [d.item_id for d in revert]
        ReviewItem.objects.filter(pk__in=reopened, state=ItemState.DECIDED).update(
            state=ItemState.QUEUED, decided_at=None
        )
        ItemEvent.objects.bulk_create(
            ItemEvent(
                item_id=d.item_id,
                at=now,
                actor=actor,
                actor_label=actor_label(actor),
                event="reverted",
                from_state=ItemState.DECIDED,
                to_state=ItemState.QUEUED,
                queue=queue,
                data={"batch": str(batch), "decision": d.pk, "reversal": r.pk},
            )
            for d, r in zip(revert, reversals, strict=True)
        )
        first = decisions[0]
        audit_record(
            actor=actor,
            action="decision.bulk_revert",
            target=queue,
            before={
                "batch_id": str(batch),
                "items": sorted(items),
                **_decision_summary(first.is_violation, first.policy, list(first.labels.all()), first.action),
            },
            after={"batch_id": str(batch), "reverted": reopened, "kept": kept},
            reason=reason[:5000],
        )
        for pk in reopened:
            strikes_sync_item(item=items[pk], actor=actor, at=now, reason=f"Bulk decision {batch} reverted.")
        _reverted_webhooks_emit([items[pk] for pk in reopened], revert, batch_id=batch, at=now)
    return RevertResult(batch, reopened, kept)


def _reverted_webhooks_emit(
    items: list[ReviewItem], decisions: list[Decision], *, batch_id: uuid.UUID, at: datetime
) -> None:
    """Tell each item's client that the decision it was sent no longer stands; a new ``decision.final`` follows
    once a person decides the item again."""
    by_source: dict[str, list[dict[str, object]]] = {}
    for item, decision in zip(items, decisions, strict=True):
        if item.is_golden:  # a QA test copy: no client owns it
            continue
        by_source.setdefault(item.source, []).append(
            {
                "item_id": item.pk,
                "external_id": item.external_id,
                "source": item.source,
                "kind": item.kind,
                "decision_id": decision.pk,
                "batch_id": str(batch_id),
                "state": ItemState.QUEUED.value,
                "reverted_at": at.isoformat(),
            }
        )
    for client in ApiClient.objects.filter(source__in=by_source):
        webhooks_emit_many(
            client=client, event_type=WebhookEventType.DECISION_REVERTED, payloads=by_source[client.source]
        )
