"""Blind re-review and adjudication: agreement closes the sample as QA-verified ground truth; disagreement
goes to a third person whose final label sets the error type, its severity, ground truth and, when the
original was wrong, a correcting decision the client hears about."""

from __future__ import annotations

from typing import Any

import pytest

from ops_platform.core.errors import ApplicationError, Conflict, NotPermitted
from ops_platform.core.models import ApiClient, AuditLog, Team, User, WebhookEvent
from qa.models import ErrorType, SampleState
from qa.services import Verdict, adjudicate, error_between, qa_review_submit, sample_claim_next
from queues.models import Decision, GroundTruth, Queue
from tests.qa.factories import decided, item_of, policy_with_actions, qa_person, sample_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def hate(intake_queue: Queue):
    policy, remove = policy_with_actions("hate", severity=3)
    intake_queue.policies.add(policy)
    return policy, remove


@pytest.fixture
def rita(in_house_team: Team) -> User:
    return qa_person("rita", in_house_team)


@pytest.mark.parametrize(
    ("original", "correct", "expected"),
    [
        (Verdict(True, 1, 9), Verdict(False, None, None), ErrorType.FALSE_POSITIVE),
        (Verdict(False, None, None), Verdict(True, 1, 9), ErrorType.FALSE_NEGATIVE),
        (Verdict(True, 1, 9), Verdict(True, 2, 9), ErrorType.WRONG_POLICY),
        (Verdict(True, 1, 9), Verdict(True, 1, 8), ErrorType.WRONG_ACTION),
        (Verdict(True, 1, 9), Verdict(True, 1, 9), ErrorType.NONE),
    ],
)
def test_the_error_type_follows_from_the_two_outcomes(original: Verdict, correct: Verdict, expected: ErrorType):
    assert error_between(original, correct) == expected


def test_an_agreeing_re_review_closes_the_sample_as_qa_verified_truth(intake_queue, reviewer, qa_lead, hate):
    policy, remove = hate
    sample = sample_of(decided(intake_queue, reviewer, policy=policy, action=remove))

    claimed = sample_claim_next(actor=qa_lead)
    assert claimed == sample
    review = qa_review_submit(sample=claimed, actor=qa_lead, is_violation=True, policy=policy, action=remove)

    sample.refresh_from_db()
    assert review.agrees
    assert (sample.state, sample.agreed, sample.error_type, sample.severity) == (SampleState.CLOSED, True, "", 0)
    truth = GroundTruth.objects.get(item=sample.item)
    assert (truth.origin, truth.is_violation, truth.policy) == ("qa_verified", True, policy)


def test_nobody_re_reviews_their_own_decision(intake_queue, qa_lead, hate):
    sample_of(decided(intake_queue, qa_lead))
    assert sample_claim_next(actor=qa_lead) is None


def test_re_review_is_for_qa_and_for_the_holder(intake_queue, reviewer, qa_lead, rita, hate):
    sample_of(decided(intake_queue, reviewer))
    with pytest.raises(NotPermitted):
        sample_claim_next(actor=reviewer)
    claimed = sample_claim_next(actor=qa_lead)
    assert claimed is not None
    assert sample_claim_next(actor=rita) is None  # held by quinn
    with pytest.raises(Conflict):
        qa_review_submit(sample=claimed, actor=rita, is_violation=False, policy=None, action=None)


def test_a_disagreement_is_adjudicated_and_a_wrong_original_is_corrected(
    intake_queue, reviewer, qa_lead, rita, hate, django_capture_on_commit_callbacks: Any
):
    policy, remove = hate
    ApiClient.objects.create(name="App", source="claims", callback_url="http://127.0.0.1:9/h", webhook_secret="s")
    original = decided(intake_queue, reviewer)  # alice missed it
    sample = sample_of(original)
    claimed = sample_claim_next(actor=qa_lead)
    assert claimed is not None
    review = qa_review_submit(sample=claimed, actor=qa_lead, is_violation=True, policy=policy, action=remove)
    assert not review.agrees
    sample.refresh_from_db()
    assert sample.state == SampleState.ADJUDICATION

    with pytest.raises(NotPermitted):  # neither decider adjudicates
        adjudicate(sample=sample, actor=qa_lead, is_violation=True, policy=policy, action=remove, rationale="x")
    with django_capture_on_commit_callbacks(execute=False):
        result = adjudicate(
            sample=sample,
            actor=rita,
            is_violation=True,
            policy=policy,
            action=remove,
            rationale="A slur aimed at a group: see 2.1.",
        )

    sample.refresh_from_db()
    assert (result.error_type, result.severity) == (ErrorType.FALSE_NEGATIVE, 3.0)  # the policy's severity
    assert (sample.state, sample.error_type, sample.severity) == (SampleState.CLOSED, "false_negative", 3.0)
    assert result.correction is not None
    assert result.correction.supersedes == original
    assert Decision.objects.get(pk=original.pk).superseded_by == result.correction
    truth = GroundTruth.objects.get(item=item_of(original))
    assert (truth.origin, truth.is_violation) == ("adjudicated", True)
    assert AuditLog.objects.filter(action="qa.adjudicate").exists()
    [event] = WebhookEvent.objects.filter(event_type="decision.final", payload__decision_id=result.correction.pk)
    assert event.payload["is_violation"] is True


def test_when_the_original_was_right_nothing_is_corrected(intake_queue, reviewer, qa_lead, rita, hate):
    policy, remove = hate
    original = decided(intake_queue, reviewer, policy=policy, action=remove)
    sample = sample_of(original)
    claimed = sample_claim_next(actor=qa_lead)
    assert claimed is not None
    qa_review_submit(sample=claimed, actor=qa_lead, is_violation=False, policy=None, action=None)

    result = adjudicate(
        sample=sample, actor=rita, is_violation=True, policy=policy, action=remove, rationale="QA misread the context."
    )

    assert (result.error_type, result.severity, result.correction) == ("", 0.0, None)
    assert not Decision.objects.filter(supersedes=original).exists()


def test_adjudication_checks_the_error_type_and_the_severity(intake_queue, reviewer, qa_lead, rita, hate):
    policy, remove = hate
    sample = sample_of(decided(intake_queue, reviewer, policy=policy, action=remove))
    claimed = sample_claim_next(actor=qa_lead)
    assert claimed is not None
    qa_review_submit(sample=claimed, actor=qa_lead, is_violation=False, policy=None, action=None)

    with pytest.raises(ApplicationError, match="differ as"):
        adjudicate(
            sample=sample,
            actor=rita,
            is_violation=False,
            policy=None,
            action=None,
            rationale="fine",
            error_type="false_negative",
        )
    with pytest.raises(ApplicationError, match="severity"):
        adjudicate(
            sample=sample, actor=rita, is_violation=False, policy=None, action=None, rationale="fine", severity=9
        )
    with pytest.raises(ApplicationError, match="rationale"):
        adjudicate(sample=sample, actor=rita, is_violation=False, policy=None, action=None, rationale=" ")
    result = adjudicate(
        sample=sample,
        actor=rita,
        is_violation=False,
        policy=None,
        action=None,
        rationale="fine",
        error_type="false_positive",
        severity=1.5,
    )
    assert (result.error_type, result.severity) == ("false_positive", 1.5)
