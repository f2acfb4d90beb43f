"""Decisions: a reviewer's decision (independent reviews, adjudication), the checks every way of deciding goes
through, corrections, and the ``decision.final`` webhook payload, built here for every sender."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from django.db import transaction
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, Conflict
from ops_platform.core.models import ApiClient, DecisionLabel, EnforcementAction, Policy, User, WebhookEventType
from ops_platform.core.services import actor_label
from ops_platform.core.webhooks import webhook_emit
from queues.accounts.strikes import strikes_sync_item
from queues.models import Decision, ItemEvent, ItemKind, ItemState, Queue, ReviewItem, check_transition
from queues.services.appeals import AppealOutcomeRequired, appeal_outcome_required
from queues.services.claims import item_requeue, lease_check


@dataclass(frozen=True)
class DecisionResult:
    decision: Decision
    closed: bool  # False: more independent reviews are needed, or it went to adjudication
    adjudication: bool = False


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
            state=ItemState.DECIDED,
            decided_at=now,
            assignee=None,
            lease_expires_at=None,
            reserved_for=None,
            reserved_until=None,
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
            data=data,
        )
        strikes_sync_item(item=item, actor=actor, at=now)
        _decision_webhook_emit(item, decision, labels)
        return DecisionResult(decision, closed=True)
    if needs_more:
        data["reviews"] = f"{reviews} of {item.required_reviews}"
        item_requeue(item, now=now, actor=actor, event="reviewed", data=data)
        return DecisionResult(decision, closed=False)
    assert item.queue is not None
    target = item.queue.escalation_target or item.queue
    ReviewItem.objects.filter(pk=item.pk).update(tags=sorted({*(item.tags or []), "adjudication"}))
    item_requeue(
        item, now=now, actor=actor, event="to_adjudication", data=data, queue=target, priority=max(item.priority, 50)
    )
    return DecisionResult(decision, closed=False, adjudication=True)


def decision_final_payload(
    *,
    item_id: int,
    external_id: str,
    source: str,
    kind: str,
    decision_id: int | None,
    decided_by: Literal["reviewer", "rule"],
    is_violation: bool,
    policy: Policy | None,
    labels: Iterable[str],
    action: EnforcementAction | None,
    decided_at: datetime,
    rule: object = None,
    batch_id: uuid.UUID | None = None,
) -> dict[str, object]:
    """The ``decision.final`` webhook payload (README, "Decision webhooks"), a public contract: every sender builds
    it here. A reviewer's decision or correction, a bulk batch (with ``batch_id``), a rule's auto-action
    (``decided_by="rule"``, with ``rule``, no ``decision_id``). Ids and the outcome, never content or rationale."""
    return {
        "item_id": item_id,
        "external_id": external_id,
        "source": source,
        "kind": kind,
        "decision_id": decision_id,
        "decided_by": decided_by,
        **({"rule": rule} if decided_by == "rule" else {}),
        **({"batch_id": str(batch_id)} if batch_id is not None else {}),
        "is_violation": is_violation,
        "policy": policy.slug if policy else None,
        "policy_version": policy.guidelines_version if policy else None,
        "labels": sorted(labels),
        "action": action.slug if action else None,
        "decided_at": decided_at.isoformat(),
    }


def _decision_webhook_emit(item: ReviewItem, decision: Decision, labels: Sequence[DecisionLabel]) -> None:
    """Tell the item's client about its final decision."""
    if item.is_golden:  # a QA test copy: no client owns it
        return
    client = ApiClient.objects.filter(source=item.source).first()
    if client is None:
        return
    webhook_emit(
        client=client,
        event_type=WebhookEventType.DECISION_FINAL,
        payload=decision_final_payload(
            item_id=item.pk,
            external_id=item.external_id,
            source=item.source,
            kind=item.kind,
            decision_id=decision.pk,
            decided_by="reviewer",
            is_violation=decision.is_violation,
            policy=decision.policy,
            labels=(label.slug for label in labels),
            action=decision.action,
            decided_at=decision.decided_at,
        ),
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
        item=item,
        reviewer=actor,
        queue=item.queue,
        policy=policy if is_violation else None,
        action=action if is_violation else None,
        is_violation=is_violation,
        rationale=rationale[:5000],
        decided_at=now,
        supersedes=current,
    )
    ItemEvent.objects.create(
        item=item,
        at=now,
        actor=actor,
        actor_label=actor_label(actor),
        event="corrected",
        from_state=item.state,
        to_state=item.state,
        queue_id=item.queue_id,
        data={"decision": correction.pk, "supersedes": current.pk if current else None},
    )
    strikes_sync_item(item=item, actor=actor, at=now, reason=f"Decision corrected by decision {correction.pk}.")
    _decision_webhook_emit(item, correction, ())
    return correction
