"""Blind re-review and adjudication of sampled decisions.

The QA reviewer decides the item without seeing the original decision or who made it; only after
submitting do they see the comparison. Agreement closes the sample and records the label as
QA-verified ground truth. Disagreement goes to a QA lead, who sets the final label; the error type
follows from comparing the original with that label, and the lead weighs its severity. When the
original was wrong, the item is corrected (a new decision supersedes it, and the client is told).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, Conflict, NotPermitted
from ops_platform.core.models import EnforcementAction, Policy, User
from ops_platform.core.services import audit_record
from qa.models import MAX_SEVERITY, Adjudication, ErrorType, QaReview, QaSample, SampleSkip, SampleState
from qa.selectors import SampleScope, sample_held, samples_in_scope
from qa.sql import first_unlocked
from queues.models import Decision, GroundTruth, GroundTruthOrigin
from queues.services import decision_correct

QA_LEASE = timedelta(minutes=30)


def require_qa(actor: User) -> None:
    if not actor.has_perm("core.perform_qa"):
        raise NotPermitted("This is QA's work: re-review, adjudication and golden items need the QA role.")


@dataclass(frozen=True)
class Verdict:
    """A decision's outcome as QA compares it: violation or not, under which policy, with which action."""

    is_violation: bool
    policy_id: int | None
    action_id: int | None

    @classmethod
    def of(cls, is_violation: bool, policy: Policy | int | None, action: EnforcementAction | int | None) -> Verdict:
        policy_id = policy.pk if isinstance(policy, Policy) else policy
        action_id = action.pk if isinstance(action, EnforcementAction) else action
        # Without a violation there is no policy, and only a zero-strength "no action" is meaningful.
        return cls(is_violation, policy_id if is_violation else None, action_id if is_violation else None)


def error_between(original: Verdict, correct: Verdict) -> ErrorType:
    """What was wrong with ``original``, given the ``correct`` outcome."""
    if original.is_violation and not correct.is_violation:
        return ErrorType.FALSE_POSITIVE
    if correct.is_violation and not original.is_violation:
        return ErrorType.FALSE_NEGATIVE
    if original.policy_id != correct.policy_id:
        return ErrorType.WRONG_POLICY
    if original.action_id != correct.action_id:
        return ErrorType.WRONG_ACTION
    return ErrorType.NONE


def original_verdict(sample: QaSample) -> Verdict:
    return Verdict.of(sample.original_is_violation, sample.original_policy_id, sample.original_action_id)


def sample_claim_next(*, actor: User, scope: SampleScope | None = None, at: datetime | None = None) -> QaSample | None:
    """The next sample for blind re-review in ``scope`` (plan, vendor, queue, policy; oldest first), never one of
    the QA reviewer's own decisions, and the ones they skipped only after every other.

    A sample whose lease ran out is claimable again; one the reviewer already holds is returned, whatever the scope
    (one sample at a time).
    """
    require_qa(actor)
    now = at or timezone.now()
    held = sample_held(actor=actor, now=now)
    if held is not None:
        return held
    waiting = (
        samples_in_scope(scope or SampleScope())
        .filter(Q(state=SampleState.PENDING) | Q(state=SampleState.CLAIMED, lease_expires_at__lte=now))
        .exclude(original_reviewer=actor)
        .annotate(skipped=Exists(SampleSkip.objects.filter(sample=OuterRef("pk"), reviewer=actor)))
        .order_by("skipped", "sampled_at", "pk")
    )
    for _ in range(10):
        with transaction.atomic():
            sample = first_unlocked(waiting)
            if sample is None:
                return None
            taken = QaSample.objects.filter(pk=sample.pk, state=sample.state, assignee=sample.assignee).update(
                state=SampleState.CLAIMED, assignee=actor, lease_expires_at=now + QA_LEASE
            )
            if taken:
                sample.state, sample.assignee, sample.lease_expires_at = SampleState.CLAIMED, actor, now + QA_LEASE
                return sample
    return None


@transaction.atomic
def sample_skip(*, sample: QaSample, actor: User, reason: str, at: datetime | None = None) -> SampleSkip:
    """Give a held sample back unreviewed, with the reason; the skip is recorded and audited, and the reviewer's
    next claims offer every other waiting sample first."""
    require_qa(actor)
    now = at or timezone.now()
    if not reason.strip():
        raise ApplicationError("Say why you skip it.", field="reason")
    sample = QaSample.objects.select_for_update().get(pk=sample.pk)
    if sample.state != SampleState.CLAIMED or sample.assignee_id != actor.pk:
        raise Conflict("Only the QA reviewer holding this sample can skip it.", field="sample")
    sample.state, sample.assignee, sample.lease_expires_at = SampleState.PENDING, None, None
    sample.save(update_fields=["state", "assignee", "lease_expires_at"])
    skip = SampleSkip.objects.create(sample=sample, reviewer=actor, reason=reason.strip()[:500], skipped_at=now)
    audit_record(actor=actor, action="qa.sample_skip", target=sample, reason=skip.reason)
    return skip


def _ground_truth_record(sample: QaSample, *, verdict: Verdict, origin: str, actor: User, at: datetime) -> None:
    GroundTruth.objects.create(
        item_id=sample.item_id,
        decision=sample.decision,
        origin=origin,
        is_violation=verdict.is_violation,
        policy_id=verdict.policy_id,
        recorded_by=actor,
        recorded_at=at,
    )


@transaction.atomic
def qa_review_submit(
    *,
    sample: QaSample,
    actor: User,
    is_violation: bool,
    policy: Policy | None,
    action: EnforcementAction | None,
    rationale: str = "",
    at: datetime | None = None,
) -> QaReview:
    """Record the blind re-review; close the sample on agreement, else send it to adjudication."""
    require_qa(actor)
    now = at or timezone.now()
    sample = QaSample.objects.select_for_update().get(pk=sample.pk)
    if sample.state != SampleState.CLAIMED or sample.assignee_id != actor.pk:
        raise Conflict("Only the QA reviewer holding this sample can re-review it.", field="sample")
    if is_violation and policy is None:
        raise ApplicationError("A violation needs the policy it violates.", field="policy")
    mine = Verdict.of(is_violation, policy, action)
    agrees = error_between(original_verdict(sample), mine) == ErrorType.NONE
    review = QaReview.objects.create(
        sample=sample,
        reviewer=actor,
        is_violation=is_violation,
        policy=policy if is_violation else None,
        action=action if is_violation else None,
        rationale=rationale[:5000],
        decided_at=now,
        agrees=agrees,
    )
    sample.assignee, sample.lease_expires_at = None, None
    if agrees:
        sample.state, sample.agreed, sample.error_type, sample.severity = SampleState.CLOSED, True, ErrorType.NONE, 0
        sample.closed_at = now
        _ground_truth_record(sample, verdict=mine, origin=GroundTruthOrigin.QA_VERIFIED, actor=actor, at=now)
    else:
        sample.state, sample.agreed = SampleState.ADJUDICATION, False
    sample.save()
    return review


def default_severity(sample: QaSample, correct: Verdict) -> float:
    """The severity of the policy at stake: the one wrongly applied (false positive) or missed."""
    policy_id = correct.policy_id if correct.is_violation else sample.original_policy_id
    policy = Policy.objects.filter(pk=policy_id).first() if policy_id else None
    return float(policy.severity) if policy else 1.0


@transaction.atomic
def adjudicate(
    *,
    sample: QaSample,
    actor: User,
    is_violation: bool,
    policy: Policy | None,
    action: EnforcementAction | None,
    rationale: str,
    severity: float | None = None,
    error_type: str | None = None,
    at: datetime | None = None,
) -> Adjudication:
    """A QA lead's final label for a disputed sample, the original's error and its severity weight."""
    require_qa(actor)
    now = at or timezone.now()
    sample = QaSample.objects.select_for_update(of=("self",)).select_related("review", "decision").get(pk=sample.pk)
    if sample.state != SampleState.ADJUDICATION:
        raise Conflict("This sample is not waiting for adjudication.", field="sample")
    if actor.pk in (sample.original_reviewer_id, sample.review.reviewer_id):
        raise NotPermitted("Adjudication is by someone who made neither of the two decisions.")
    if not rationale.strip():
        raise ApplicationError("Say why: the rationale is what the reviewer learns from.", field="rationale")
    if is_violation and policy is None:
        raise ApplicationError("A violation needs the policy it violates.", field="policy")
    correct = Verdict.of(is_violation, policy, action)
    found = error_between(original_verdict(sample), correct)
    if error_type is not None and error_type != found:
        raise ApplicationError(
            f"The original and the final label differ as '{ErrorType(found).label}', not as the type chosen.",
            field="error_type",
        )
    weight = (
        0.0 if found == ErrorType.NONE else (severity if severity is not None else default_severity(sample, correct))
    )
    if found != ErrorType.NONE and not 0 < weight <= MAX_SEVERITY:
        raise ApplicationError(f"An error's severity weight is above 0 and at most {MAX_SEVERITY:g}.", field="severity")
    correction: Decision | None = None
    in_force = sample.decision is None or not Decision.objects.filter(supersedes=sample.decision).exists()
    if found != ErrorType.NONE and in_force:
        correction = decision_correct(
            item=sample.item,
            actor=actor,
            is_violation=is_violation,
            policy=policy,
            action=action,
            rationale=f"QA adjudication of sample {sample.pk}: {rationale}",
            at=now,
        )
    adjudication = Adjudication.objects.create(
        sample=sample,
        adjudicator=actor,
        is_violation=is_violation,
        policy=policy if is_violation else None,
        action=action if is_violation else None,
        error_type=found,
        severity=weight,
        rationale=rationale[:5000],
        decided_at=now,
        correction=correction,
    )
    sample.state, sample.error_type, sample.severity, sample.closed_at = SampleState.CLOSED, found, weight, now
    sample.save(update_fields=["state", "error_type", "severity", "closed_at"])
    _ground_truth_record(sample, verdict=correct, origin=GroundTruthOrigin.ADJUDICATED, actor=actor, at=now)
    audit_record(
        actor=actor,
        action="qa.adjudicate",
        target=sample,
        after={
            "error_type": found,
            "severity": weight,
            "is_violation": is_violation,
            "policy": policy.slug if policy else None,
            "correction": correction.pk if correction else None,
        },
        reason=rationale[:500],
    )
    return adjudication
