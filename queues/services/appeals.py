"""Appeals: an appeal ends only by upholding or overturning the decision it contests, never by the one who
made it; overturning corrects the original item, and the client hears the outcome."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, NotPermitted
from ops_platform.core.models import ApiClient, User, WebhookEventType
from ops_platform.core.services import actor_label
from ops_platform.core.webhooks import webhook_emit
from queues.accounts.strikes import strikes_sync_item
from queues.models import AppealOutcome, Decision, ItemEvent, ItemKind, ItemState, ReviewItem
from queues.services.claims import lease_check


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
        item=item,
        reviewer=actor,
        queue=item.queue,
        policy=policy,
        action=kept_action,
        is_violation=verdict,
        rationale=rationale[:5000],
        claimed_at=item.claimed_at,
        decided_at=now,
        handle_time=now - item.claimed_at if item.claimed_at else None,
        appeal_outcome=outcome,
    )
    ReviewItem.objects.filter(pk=item.pk).update(
        state=ItemState.DECIDED,
        decided_at=now,
        assignee=None,
        lease_expires_at=None,
        reserved_for=None,
        reserved_until=None,
    )
    data: dict[str, object] = {"decision": decision.pk, "outcome": outcome, "appeal": item.pk}
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
    if not uphold:
        correction = Decision.objects.create(
            item=original,
            reviewer=actor,
            queue=item.queue,
            policy=None if not verdict else policy,
            is_violation=verdict,
            rationale=f"Appeal {item.pk} overturned: {rationale[:4900]}",
            decided_at=now,
            supersedes=contested,
        )
        data["correction"] = correction.pk
        strikes_sync_item(item=original, actor=actor, at=now, reason=f"Appeal {item.pk} overturned the decision.")
    ItemEvent.objects.create(
        item=original,
        at=now,
        actor=actor,
        actor_label=actor_label(actor),
        event=f"appeal_{outcome}",
        from_state=original.state,
        to_state=original.state,
        queue_id=item.queue_id,
        data=data,
    )
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
