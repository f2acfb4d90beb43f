"""QA test setup: policies and items people decided, made through the queues services."""

from __future__ import annotations

from django.utils import timezone

from ops_platform.core.models import EnforcementAction, Policy, Role, Team, User
from ops_platform.core.services import user_create
from qa.models import QaSample, SampleReason
from queues.models import Decision, Queue, ReviewItem
from queues.services import decision_record, item_claim_next
from tests.conftest import PASSWORD
from tests.queues.factories import item_queued


def policy_with_actions(slug: str, *, severity: int = 2) -> tuple[Policy, EnforcementAction]:
    policy = Policy.objects.create(slug=slug, name=slug.title(), guidelines=f"No {slug}.", severity=severity)
    action, _ = EnforcementAction.objects.get_or_create(slug="remove", defaults={"name": "Remove", "strength": 2})
    policy.enforcement_actions.add(action)
    return policy, action


def decided(
    queue: Queue,
    reviewer: User,
    *,
    violation: bool,
    policy: Policy | None = None,
    action: EnforcementAction | None = None,
    text: str = "a post",
) -> Decision:
    item_queued(queue, text=text)
    item = item_claim_next(queue=queue, actor=reviewer)
    assert item is not None
    return decision_record(item=item, actor=reviewer, is_violation=violation, policy=policy, action=action).decision


def sample_of(decision: Decision, *, probability: float = 1.0) -> QaSample:
    profile = getattr(decision.reviewer, "reviewer_profile", None)
    return QaSample.objects.create(
        item=decision.item, decision=decision, reason=SampleReason.MANUAL, inclusion_probability=probability,
        sampled_at=timezone.now(), original_is_violation=decision.is_violation, original_policy=decision.policy,
        original_action=decision.action, original_reviewer=decision.reviewer,
        original_vendor_id=profile.team.vendor_id if profile and profile.team else None,
        original_queue=decision.queue, original_decided_at=decision.decided_at,
    )  # fmt: skip


def qa_person(username: str, team: Team) -> User:
    return user_create(actor="test", username=username, password=PASSWORD, roles=[Role.SENIOR_REVIEWER], team=team)


def item_of(decision: Decision) -> ReviewItem:
    return ReviewItem.objects.get(pk=decision.item_id)
