"""Sampling plans: which decisions QA draws, with what inclusion probability, exactly once; and that estimates
weighted by those probabilities recover the population's error rate where unweighted ones do not."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import EnforcementAction, Policy, User
from qa.models import ErrorType, QaSample, SampleReason, SampleState, SamplingPlan
from qa.selectors import QaFilter, slice_stats
from qa.services import decisions_sample, draw, plan_rate_for, plan_sample_size, plan_save
from queues.models import Decision, ItemState, Queue, ReviewItem
from tests.qa.factories import decided, policy_with_actions

pytestmark = pytest.mark.django_db

LATER = timedelta(minutes=5)  # past the settle time, so the sampler reads everything made in the test


def plan(actor: User, **fields: object) -> SamplingPlan:
    return plan_save(actor=actor, plan=SamplingPlan(name=str(fields.pop("name", "plan")), **fields))


def decisions_bulk(queue: Queue, reviewer: User, flags: list[bool], policy: Policy) -> list[Decision]:
    """Many decisions at once (the sampler reads rows; how they were made does not matter to it)."""
    now = timezone.now()
    items = ReviewItem.objects.bulk_create(
        ReviewItem(
            source="sim",
            external_id=f"s{n}",
            text="x",
            received_at=now,
            state=ItemState.DECIDED,
            queue=queue,
            decided_at=now,
        )
        for n in range(len(flags))
    )
    return Decision.objects.bulk_create(
        Decision(
            item=item,
            reviewer=reviewer,
            queue=queue,
            is_violation=flag,
            policy=policy if flag else None,
            decided_at=now,
        )
        for item, flag in zip(items, flags, strict=True)
    )


def test_the_draw_is_fixed_by_its_inputs_and_uniform():
    values = [draw("decision", f"app/post-{n}") for n in range(20_000)]
    assert values[:3] == [draw("decision", f"app/post-{n}") for n in range(3)]
    assert 0.49 < sum(values) / len(values) < 0.51
    assert 0.095 < sum(v < 0.1 for v in values) / len(values) < 0.105


def test_every_decision_is_considered_once_and_a_rerun_draws_nothing_new(intake_queue, reviewer, qa_lead):
    plan(qa_lead, rate=1.0)
    first = decided(intake_queue, reviewer)

    assert decisions_sample(now=timezone.now() + LATER) == 1
    assert decisions_sample(now=timezone.now() + LATER) == 0
    second = decided(intake_queue, reviewer)
    assert decisions_sample(now=timezone.now() + LATER) == 1

    samples = QaSample.objects.order_by("pk")
    assert [s.decision for s in samples] == [first, second]
    sample = samples[0]
    assert (sample.reason, sample.inclusion_probability, sample.state) == (SampleReason.RANDOM, 1.0, "pending")
    assert (sample.original_reviewer, sample.original_is_violation, sample.original_queue) == (
        reviewer,
        False,
        intake_queue,
    )


def test_decisions_younger_than_the_settle_time_wait_for_the_next_run(intake_queue, reviewer, qa_lead):
    plan(qa_lead, rate=1.0)
    decided(intake_queue, reviewer)
    assert decisions_sample(now=timezone.now()) == 0
    assert decisions_sample(now=timezone.now() + LATER) == 1


def test_the_most_specific_plan_decides_and_stratified_rates_are_recorded(
    intake_queue, reviewer, vendor_reviewer, qa_lead
):
    policy, _ = policy_with_actions("spam")
    plan(qa_lead, name="everyone", rate=0.0)
    plan(qa_lead, name="alice", reviewer=reviewer, rate=0.0, rate_violation=1.0, rate_no_violation=0.0)
    decided(intake_queue, reviewer, policy=policy)
    decided(intake_queue, reviewer)

    decisions_sample(now=timezone.now() + LATER)

    [sample] = QaSample.objects.all()
    assert sample.original_is_violation
    assert (sample.reason, sample.inclusion_probability, sample.plan.name) == (SampleReason.OUTCOME, 1.0, "alice")


def test_a_reviewers_first_decisions_are_drawn_at_the_higher_rate(intake_queue, reviewer, qa_lead):
    plan(qa_lead, rate=0.0, new_reviewer_decisions=2, new_reviewer_rate=1.0)
    for _ in range(3):
        decided(intake_queue, reviewer)

    decisions_sample(now=timezone.now() + LATER)

    samples = QaSample.objects.order_by("decision_id")
    assert [s.reason for s in samples] == [SampleReason.NEW_REVIEWER] * 2


def test_auto_actions_are_drawn_at_their_own_rate(intake_queue, qa_lead):
    from queues.services import items_auto_action  # the rule path: no person decided

    policy, remove = policy_with_actions("spam")
    plan(qa_lead, rate=0.0, auto_action_rate=1.0)
    item = ReviewItem.objects.create(source="t", external_id="auto-1", text="buy", received_at=timezone.now())
    items_auto_action(item_ids=[item.pk], actor="rules:x", policy=policy, action=remove, reason="rule x")

    decisions_sample(now=timezone.now() + LATER)

    [sample] = QaSample.objects.all()
    assert sample.decision is None
    assert (sample.reason, sample.original_policy, sample.original_action) == (SampleReason.AUTO_ACTION, policy, remove)
    assert sample.original_reviewer is None


def test_rates_outside_zero_to_one_are_refused(qa_lead):
    with pytest.raises(ApplicationError, match="rate must be between 0 and 1"):
        plan(qa_lead, rate=1.5)
    with pytest.raises(ApplicationError, match="low confidence rate"):
        plan(qa_lead, rate=0.1, low_confidence_rate=-0.1)


def test_the_sample_size_helper():
    assert plan_sample_size(expected_error_rate=0.5, margin=0.05) == 385
    assert plan_sample_size(expected_error_rate=0.1, margin=0.02, confidence=0.95) == 865
    assert plan_rate_for(sample=385, decisions_per_period=10_000) == pytest.approx(0.0385)


def test_weighted_estimates_from_a_stratified_sample_recover_the_population_error_rate(
    intake_queue: Queue, reviewer: User, qa_lead: User
):
    """20,000 decisions, 20% violations. Violations are wrong 30% of the time, the rest 2%: the population
    error rate is known exactly. The plan draws violations at 50% and the rest at 10%, so the sample
    over-represents the error-prone stratum; weighting by 1/pi corrects it."""
    rng = random.Random(7)
    policy, _ = policy_with_actions("hate")
    flags = [rng.random() < 0.2 for _ in range(20_000)]
    decisions = decisions_bulk(intake_queue, reviewer, flags, policy)
    wrong = {d.pk: rng.random() < (0.30 if d.is_violation else 0.02) for d in decisions}
    population_rate = sum(wrong.values()) / len(wrong)
    plan(qa_lead, rate=0.0, rate_violation=0.5, rate_no_violation=0.1)

    decisions_sample(now=timezone.now() + LATER, limit=25_000)

    samples = list(QaSample.objects.all())
    assert {s.inclusion_probability for s in samples} == {0.5, 0.1}
    for s in samples:  # QA's findings, as adjudication would record them
        assert s.decision_id is not None
        error = ErrorType.FALSE_POSITIVE if s.original_is_violation else ErrorType.FALSE_NEGATIVE
        s.state, s.closed_at = SampleState.CLOSED, timezone.now()
        s.error_type, s.severity = (error, 1.0) if wrong[s.decision_id] else ("", 0.0)
    QaSample.objects.bulk_update(samples, ["state", "closed_at", "error_type", "severity"])

    stats = slice_stats(QaFilter())
    weighted = stats.errors[ErrorType.FALSE_POSITIVE].value + stats.errors[ErrorType.FALSE_NEGATIVE].value
    unweighted = sum(1 for s in samples if s.error_type) / len(samples)
    assert abs(weighted - population_rate) < 0.012  # about 3.5 standard errors at these sample sizes
    assert unweighted - population_rate > 0.05  # the naive figure is badly biased
    assert stats.quality is not None
    assert stats.quality.low <= 1 - weighted / 4 <= stats.quality.high  # severities of 1 on a 0-4 scale


@pytest.mark.parametrize("pi", [0.0, 1.0])
def test_a_plan_at_rate_zero_draws_nothing_and_at_one_everything(intake_queue, reviewer, qa_lead, pi):
    plan(qa_lead, rate=pi)
    for _ in range(5):
        decided(intake_queue, reviewer)
    decisions_sample(now=timezone.now() + LATER)
    assert QaSample.objects.count() == (5 if pi else 0)
    assert not EnforcementAction.objects.filter(slug="nothing").exists()
