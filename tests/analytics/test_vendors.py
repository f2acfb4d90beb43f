"""Vendor scorecards on a hand-worked week: RAG against contract targets, the trend, cost per correct decision."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from analytics.filters import MetricFilter
from analytics.models import OpsDecisionDaily
from analytics.selectors.vendors import rag, vendor_scorecard_table, vendor_scorecards
from ops_platform.core.models import Vendor
from qa.models import QaSample, SampleReason, SampleState
from queues.models import ReviewItem

MONDAY = date(2025, 3, 10)  # ISO week 2025-W11


def _rollup(vendor: Vendor, day: date, *, within: int, handle: float, turnaround: dict[str, int]) -> None:
    OpsDecisionDaily.objects.create(
        day=day, vendor=vendor, priority=0, decided=100, sla_counted=100, within_sla=within,
        handle_seconds=handle * 100, handle_count=100, turnaround_hist=turnaround,
    )  # fmt: skip


def _sample(vendor: Vendor, n: int, *, probability: float, error: str = "", severity: float = 0) -> None:
    at = timezone.make_aware(datetime.combine(MONDAY + timedelta(days=2), datetime.min.time()))
    item = ReviewItem.objects.create(source="hand", external_id=f"s{n}", received_at=at)
    QaSample.objects.create(
        item=item, reason=SampleReason.MANUAL, inclusion_probability=probability, sampled_at=at,
        original_is_violation=True, original_vendor=vendor, original_decided_at=at, state=SampleState.CLOSED,
        error_type=error, severity=severity, closed_at=at,
    )  # fmt: skip


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
    assert "cost_per_correct_decision_target" in table.to_csv().splitlines()[0]


def test_a_vendor_without_work_has_empty_measures(vendor_b: Vendor) -> None:
    [card] = vendor_scorecards(MetricFilter(start=MONDAY, end=MONDAY, vendor_id=vendor_b.pk))
    assert card.measures["volume"].value == 0
    assert card.measures["sla_attainment"].status is None
    assert card.measures["cost_per_correct_decision"].value is None
