"""Vendor scorecards on a hand-worked week: RAG against contract targets, the trend, cost per correct decision;
and their quality measures from the rollups against ``qa.selectors.slice_stats`` over the raw samples."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from django.db.models import Sum
from django.utils import timezone

from analytics.filters import MetricFilter
from analytics.models import OpsDecisionDaily
from analytics.rollups import quality_rollups_rebuild, rollups_rebuild, rollups_refresh
from analytics.selectors.vendors import rag, vendor_scorecard_table, vendor_scorecards
from ops_platform.core.models import Policy, ReviewerProfile, Role, Team, User, Vendor
from ops_platform.core.services import user_create
from qa.models import GoldenInjection, GoldenItem, QaReview, QaSample, SampleReason, SampleState
from qa.selectors import QaFilter, slice_stats
from queues.models import Decision, Queue, ReviewItem
from queues.services import decision_record, item_claim_next
from tests.conftest import PASSWORD
from tests.queues.factories import item_queued

MONDAY = date(2025, 3, 10)  # ISO week 2025-W11


def _rollup(vendor: Vendor, day: date, *, within: int, handle: float, turnaround: dict[str, int]) -> None:
    OpsDecisionDaily.objects.create(
        day=day,
        vendor=vendor,
        priority=0,
        decided=100,
        sla_counted=100,
        within_sla=within,
        handle_seconds=handle * 100,
        handle_count=100,
        turnaround_hist=turnaround,
    )


def _sample(vendor: Vendor, n: int, *, probability: float, error: str = "", severity: float = 0) -> None:
    at = timezone.make_aware(datetime.combine(MONDAY + timedelta(days=2), datetime.min.time()))
    item = ReviewItem.objects.create(source="hand", external_id=f"s{n}", received_at=at)
    QaSample.objects.create(
        item=item,
        reason=SampleReason.MANUAL,
        inclusion_probability=probability,
        sampled_at=at,
        original_is_violation=True,
        original_vendor=vendor,
        original_decided_at=at,
        state=SampleState.CLOSED,
        error_type=error,
        severity=severity,
        closed_at=at,
    )


@pytest.mark.parametrize(
    ("value", "target", "higher", "status"),
    [
        (0.96, 0.95, True, "green"),
        (0.95, 0.95, True, "green"),
        (0.91, 0.95, True, "amber"),  # 0.95 * 0.95 = 0.9025
        (0.90, 0.95, True, "red"),
        (300, 300, False, "green"),
        (315, 300, False, "amber"),
        (316, 300, False, "red"),
        (None, 0.95, True, None),
    ],
)
def test_rag_is_green_at_target_amber_within_five_percent_red_beyond(
    value: float | None, target: float, higher: bool, status: str | None
) -> None:
    assert rag(value, target, higher_is_better=higher) == status


def test_vendor_week_against_targets_with_trend_and_cost_per_correct_decision(vendor_a: Vendor) -> None:
    # Contract: 95% within SLA, quality 0.90, 0.35 per decision (the vendor_a fixture).
    # This week 93 of 100 within SLA (amber), last week 96 (green): delta -0.03.
    _rollup(vendor_a, MONDAY + timedelta(days=1), within=93, handle=240, turnaround={"500": 100})
    _rollup(vendor_a, MONDAY - timedelta(days=3), within=96, handle=330, turnaround={"600": 100})
    # QA: four samples drawn with certainty (one critical error, severity 4) and four at 1/2 (one error of
    # severity 2). Weights 4 x 1 + 4 x 2 = 12; weighted errors 1 + 2 = 3, an error rate of 0.25, so a correct
    # decision costs 0.35 / 0.75. Quality = 1 - (1 x 4/4 + 2 x 2/4) / 12 = 1 - 2/12 = 0.8333: red against 0.90.
    for n in range(3):
        _sample(vendor_a, n, probability=1.0)
    _sample(vendor_a, 3, probability=1.0, error="false_positive", severity=4)
    for n in range(4, 7):
        _sample(vendor_a, n, probability=0.5)
    _sample(vendor_a, 7, probability=0.5, error="false_negative", severity=2)

    quality_rollups_rebuild(MONDAY, MONDAY + timedelta(days=6))

    f = MetricFilter(start=MONDAY, end=MONDAY + timedelta(days=6), vendor_id=vendor_a.pk)
    [card] = vendor_scorecards(f)
    m: dict[str, Any] = card.measures
    assert card.week == "2025-W11"
    assert m["volume"].value == 100
    assert m["sla_attainment"].value == pytest.approx(0.93)
    assert m["sla_attainment"].status == "amber"
    assert m["sla_attainment"].previous == pytest.approx(0.96)
    assert m["sla_attainment"].delta == pytest.approx(-0.03)
    assert m["quality_score"].value == pytest.approx(1 - 2 / 12)
    assert m["quality_score"].status == "red"
    assert m["cost_per_decision"].value == pytest.approx(0.35)
    assert m["cost_per_correct_decision"].value == pytest.approx(0.35 / 0.75)
    # Target: the contracted price at contract quality, 0.35 / 0.90 = 0.3889; 0.4667 is more than 5% over.
    assert m["cost_per_correct_decision"].target == pytest.approx(0.35 / 0.90)
    assert m["cost_per_correct_decision"].status == "red"
    # Handle time 240 s against the 300 s default: green, and 90 s faster than last week.
    assert (m["aht_seconds"].value, m["aht_seconds"].status, m["aht_seconds"].delta) == (240, "green", -90)
    # Turnaround p90 is bucket 500's midpoint, 1.02^499.5 s (about 5.5 h): green against 24 h.
    assert m["turnaround_p90_seconds"].value == pytest.approx(1.02**499.5)
    assert m["turnaround_p90_seconds"].status == "green"
    assert m["golden_accuracy"].value is None
    assert m["golden_accuracy"].status is None

    table = vendor_scorecard_table(f)
    [row] = table.as_dicts()
    assert row["sla_attainment_status"] == "amber"
    assert "cost_per_correct_decision_target" in table.columns


def test_a_vendor_without_work_has_empty_measures(vendor_b: Vendor) -> None:
    [card] = vendor_scorecards(MetricFilter(start=MONDAY, end=MONDAY, vendor_id=vendor_b.pk))
    assert card.measures["volume"].value == 0
    assert card.measures["sla_attainment"].status is None
    assert card.measures["cost_per_correct_decision"].value is None


def _random_qa_world(vendor: Vendor, rng: np.random.Generator) -> tuple[list[Queue], list[Policy]]:
    """Three weeks of closed samples (re-reviewed or not, agreeing or not, drawn at different rates) and
    scored golden copies over two queues and two policies."""
    queues = [Queue.objects.create(slug=f"q{n}", name=f"Q{n}") for n in range(2)]
    policies = [Policy.objects.create(slug=f"p{n}", name=f"P{n}") for n in range(2)]
    qa_person = User.objects.create(username="qa-random")
    labels: list[tuple[bool, Policy | None]] = [(False, None), (True, policies[0]), (True, policies[1]), (True, None)]
    for n in range(240):
        at = timezone.make_aware(datetime.combine(MONDAY, datetime.min.time())) + timedelta(
            hours=int(rng.integers(0, 21 * 24))
        )
        item = ReviewItem.objects.create(source="gen", external_id=f"g{n}", received_at=at)
        original = labels[rng.integers(0, 4)]
        reviewed = labels[rng.integers(0, 4)] if rng.random() < 0.3 else original
        wrong = reviewed != original
        sample = QaSample.objects.create(
            item=item,
            reason=SampleReason.MANUAL,
            inclusion_probability=float(rng.choice([1.0, 0.5, 0.2, 0.05])),
            sampled_at=at,
            original_is_violation=original[0],
            original_policy=original[1],
            original_vendor=vendor,
            original_queue=queues[rng.integers(0, 2)],
            original_decided_at=at,
            state=SampleState.CLOSED,
            error_type="false_positive" if wrong else "",
            severity=float(rng.integers(1, 5)) if wrong else 0.0,
            closed_at=at,
        )
        if rng.random() < 0.9:  # the rest went straight to adjudication (e.g. auto-actions)
            QaReview.objects.create(
                sample=sample,
                reviewer=qa_person,
                is_violation=reviewed[0],
                policy=reviewed[1],
                decided_at=at,
                agrees=not wrong,
            )
    for n in range(60):
        at = timezone.make_aware(datetime.combine(MONDAY, datetime.min.time())) + timedelta(
            hours=int(rng.integers(0, 21 * 24))
        )
        golden = GoldenItem.objects.create(
            text="g",
            queue=queues[n % 2],
            expected_is_violation=True,
            expected_policy=policies[n % 3 % 2],
            created_by=qa_person,
        )
        item = ReviewItem.objects.create(source="golden", external_id=f"c{n}", received_at=at, is_golden=True)
        GoldenInjection.objects.create(
            golden=golden, item=item, injected_at=at, vendor=vendor, correct=bool(rng.random() < 0.8), scored_at=at
        )
    return queues, policies


def test_quality_measures_from_rollups_equal_slice_stats_over_raw_samples(vendor_a: Vendor) -> None:
    queues, policies = _random_qa_world(vendor_a, np.random.default_rng(11))
    assert rollups_refresh()  # the refresh finds the closed samples' and scored copies' days
    for scope in ({}, {"queue_id": queues[0].pk}, {"policy_id": policies[1].pk}):
        f = MetricFilter(start=MONDAY, end=MONDAY + timedelta(days=20), vendor_id=vendor_a.pk, **scope)
        cards = vendor_scorecards(f)
        assert len(cards) == 3
        for card in cards:
            start = timezone.make_aware(datetime.combine(card.week_start, datetime.min.time()))
            stats = slice_stats(
                QaFilter(vendor_id=vendor_a.pk, start=start, end=start + timedelta(days=7), **scope), n_resamples=0
            )
            m = card.measures
            assert stats.quality is not None
            assert stats.kappa is not None
            assert stats.golden_accuracy is not None
            assert m["quality_score"].value == pytest.approx(stats.quality.value)
            assert m["agreement"].value == pytest.approx(stats.kappa.value)
            assert m["golden_accuracy"].value == pytest.approx(stats.golden_accuracy.value)
            error_rate = sum(e.value for e in stats.errors.values())
            assert m["cost_per_correct_decision"].value == pytest.approx(0.35 / (1 - error_rate))


def test_decisions_stay_with_the_vendor_whose_reviewer_made_them(vendor_a: Vendor, vendor_b: Vendor) -> None:
    # Vic decides one item at vendor A, moves to vendor B's team, decides another: one each, as billed then.
    team_a = Team.objects.create(slug="a-team", name="A team", vendor=vendor_a)
    team_b = Team.objects.create(slug="b-team", name="B team", vendor=vendor_b)
    vic = user_create(actor="test", username="vic", password=PASSWORD, roles=[Role.REVIEWER], team=team_a)
    queue = Queue.objects.create(slug="shared", name="Shared")
    queue.allowed_vendors.add(vendor_a, vendor_b)

    def decide_one() -> Decision:
        item_queued(queue)
        item = item_claim_next(queue=queue, actor=vic)
        assert item is not None
        return decision_record(item=item, actor=vic, is_violation=False).decision

    at_a = decide_one()
    ReviewerProfile.objects.filter(user=vic).update(team=team_b)
    at_b = decide_one()
    # Decisions stored in bulk take their reviewer's vendor too.
    [bulk] = Decision.objects.bulk_create(
        [Decision(item=at_a.item, reviewer=vic, is_violation=True, decided_at=timezone.now(), is_final=False)]
    )

    assert (at_a.vendor_id, at_b.vendor_id, bulk.vendor_id) == (vendor_a.pk, vendor_b.pk, vendor_b.pk)
    today = timezone.localdate()
    rollups_rebuild(today, today)
    volumes = dict(OpsDecisionDaily.objects.values_list("vendor_id").annotate(n=Sum("decided")))
    assert volumes == {vendor_a.pk: 1, vendor_b.pk: 1}


def test_scorecards_are_read_once_per_rewrite_of_the_rollups_and_a_rewrite_is_seen(
    vendor_a: Vendor, django_assert_max_num_queries
) -> None:
    today = timezone.localdate()
    f = MetricFilter.last_days(7, vendor_id=vendor_a.pk)
    first = vendor_scorecards(f)
    # Nothing rewritten: the vendors and the rollups' generation are read, not the rollups.
    with django_assert_max_num_queries(2):
        assert vendor_scorecards(f) == first
    team = Team.objects.create(slug="a-team", name="A team", vendor=vendor_a)
    vic = user_create(actor="test", username="vic", password=PASSWORD, roles=[Role.REVIEWER], team=team)
    queue = Queue.objects.create(slug="cached", name="Cached")
    queue.allowed_vendors.add(vendor_a)
    item_queued(queue)
    item = item_claim_next(queue=queue, actor=vic)
    assert item is not None
    decision_record(item=item, actor=vic, is_violation=False)
    rollups_rebuild(today, today)
    after = vendor_scorecards(f)
    assert sum(card.measures["volume"].value or 0 for card in after) == 1
    # An edited target shows at once (targets are applied after the cached read).
    Vendor.objects.filter(pk=vendor_a.pk).update(target_sla_attainment="0.5")
    assert {card.measures["sla_attainment"].target for card in vendor_scorecards(f)} == {0.5}
