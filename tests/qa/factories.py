"""Decided items and QA samples for QA tests, made through the real services."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from ops_platform.core.models import EnforcementAction, Policy, Role, Team, User
from ops_platform.core.services import user_create
from qa.models import QaSample, SampleReason, SamplingPlan
from qa.services import decisions_sample, plan_save
from queues.models import Decision, Queue, ReviewItem
from queues.services import decision_record, item_claim_next
from tests.conftest import PASSWORD
from tests.queues.factories import item_queued


def policy_with_action(slug: str, name: str, *, severity: int = 2, action: str = "remove") -> Policy:
    policy = Policy.objects.create(slug=slug, name=name, severity=severity, guidelines=f"The rules on {name}.")
    remove, _ = EnforcementAction.objects.get_or_create(slug=action, defaults={"name": action.title(), "strength": 4})
    policy.enforcement_actions.add(remove)
    return policy


def decided(
    queue: Queue,
    reviewer: User,
    *,
    text: str = "a post",
    policy: Policy | None = None,
    action: EnforcementAction | None = None,
    rationale: str = "",
    **fields: object,
) -> Decision:
    """An item the reviewer claimed and decided (a violation under ``policy``, or none without one). The queue
    offers ``policy`` from then on, as a decision may cite only a policy of its item's queue."""
    if policy is not None:
        queue.policies.add(policy)
    item_queued(queue, text=text, **fields)
    item = item_claim_next(queue=queue, actor=reviewer)
    assert item is not None
    return decision_record(
        item=item, actor=reviewer, is_violation=policy is not None, policy=policy, action=action, rationale=rationale
    ).decision


def sample_of(decision: Decision, *, probability: float = 1.0) -> QaSample:
    """A manual sample of the decision, as the sampler would store it."""
    profile = getattr(decision.reviewer, "reviewer_profile", None)
    return QaSample.objects.create(
        item=decision.item,
        decision=decision,
        reason=SampleReason.MANUAL,
        inclusion_probability=probability,
        sampled_at=timezone.now(),
        original_is_violation=decision.is_violation,
        original_policy=decision.policy,
        original_action=decision.action,
        original_reviewer=decision.reviewer,
        original_vendor_id=profile.team.vendor_id if profile and profile.team else None,
        original_queue=decision.queue,
        original_decided_at=decision.decided_at,
    )


def sample_everything(actor: User) -> int:
    """A catch-all plan at rate 1, then one sampler run: every decision so far is drawn."""
    plan_save(actor=actor, plan=SamplingPlan(name="everything", rate=1.0))
    return decisions_sample(now=timezone.now() + timedelta(minutes=1))


def policy_with_actions(slug: str, *, severity: int = 2) -> tuple[Policy, EnforcementAction]:
    """A policy titled after its slug, with its 'remove' action."""
    policy = policy_with_action(slug, slug.title(), severity=severity)
    return policy, EnforcementAction.objects.get(slug="remove")


def qa_person(username: str, team: Team) -> User:
    return user_create(actor="test", username=username, password=PASSWORD, roles=[Role.SENIOR_REVIEWER], team=team)


def item_of(decision: Decision) -> ReviewItem:
    return ReviewItem.objects.get(pk=decision.item_id)
