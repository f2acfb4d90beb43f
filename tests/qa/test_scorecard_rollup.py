"""The scorecard rollup (issue 19): scorecards and the coaching page read ``QaScorecardDaily``, and every figure
they show equals the one ``slice_stats`` computes from the raw samples, per reviewer and vendor, with a policy and a
period filter, with unequal inclusion probabilities, adjudications and samples closed without a re-review; the
two-rater figures from a confusion table equal the per-unit implementations."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from ops_platform.core.localday import day_start
from qa.models import Adjudication, QaReview, SampleState
from qa.rollups import scorecard_rollups_rebuild
from qa.selectors import QaFilter, SliceStats, coaching_for, scorecard_stats, scorecards, slice_stats
from qa.statistics import cohen_kappa, krippendorff_alpha, pair_agreement, percent_agreement, rating_matrix
from tests.qa.factories import decided, policy_with_actions, sample_of

pytestmark = pytest.mark.django_db


def _same(a: SliceStats, b: SliceStats) -> None:
    assert a.samples == b.samples
    for name in ("agreement", "kappa", "alpha", "adjudicated_accuracy", "golden_accuracy", "quality"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert (x.value, x.low, x.high, x.n) == pytest.approx((y.value, y.low, y.high, y.n)), name
    assert a.errors.keys() == b.errors.keys()
    for t, e in a.errors.items():
        assert (e.value, e.low, e.high) == pytest.approx((b.errors[t].value, b.errors[t].low, b.errors[t].high))


def test_scorecards_from_the_rollup_equal_a_direct_computation(intake_queue, reviewer, vendor_reviewer, qa_lead):
    hate, remove = policy_with_actions("hate")
    spam, _ = policy_with_actions("spam")
    intake_queue.allowed_teams.add(reviewer.reviewer_profile.team)
    intake_queue.allowed_vendors.add(vendor_reviewer.reviewer_profile.team.vendor)
    rng = np.random.default_rng(7)
    today = timezone.localdate()
    for n in range(36):
        person = reviewer if n % 2 else vendor_reviewer
        policy = (hate, spam, None)[n % 3]
        d = decided(intake_queue, person, policy=policy, action=remove if policy else None)
        sample = sample_of(d, probability=(1.0, 0.5, 0.2)[n % 3])
        rereviewed = n % 7 != 0
        qa_policy = policy if rng.random() < 0.7 else (spam if policy is hate else hate)
        if rereviewed:
            QaReview.objects.create(
                sample=sample,
                reviewer=qa_lead,
                is_violation=qa_policy is not None,
                policy=qa_policy,
                action=remove,
                decided_at=timezone.now(),
                agrees=qa_policy == policy,
            )
        wrong = rereviewed and qa_policy != policy
        if wrong and n % 2:
            Adjudication.objects.create(
                sample=sample,
                adjudicator=qa_lead,
                is_violation=True,
                policy=qa_policy,
                rationale="r",
                decided_at=timezone.now(),
            )
        sample.state = SampleState.CLOSED
        sample.closed_at = day_start(today - timedelta(days=n % 3)) + timedelta(hours=9)  # three local days
        sample.error_type = "wrong_policy" if wrong else ""
        sample.severity = 3 if wrong else 0
        sample.save()

    scorecard_rollups_rebuild(today - timedelta(days=k) for k in range(3))

    filters = [
        QaFilter(),
        QaFilter(policy_id=hate.pk),
        QaFilter(start=day_start(today - timedelta(days=1)), end=day_start(today + timedelta(days=1))),
    ]
    for f in filters:
        people = {row.key: row.stats for row in scorecards("reviewer", f)}
        assert set(people) == {reviewer.pk, vendor_reviewer.pk}
        for pk, stats in people.items():
            _same(stats, slice_stats(QaFilter(**{**f.__dict__, "reviewer_id": pk})))
        vendors = scorecard_stats("vendor", f)
        vendor = vendor_reviewer.reviewer_profile.team.vendor_id
        assert set(vendors) == {vendor}
        _same(vendors[vendor], slice_stats(QaFilter(**{**f.__dict__, "vendor_id": vendor})))
    _, _, mine = coaching_for(reviewer)
    _same(mine, slice_stats(QaFilter(reviewer_id=reviewer.pk)))
    assert mine.samples == 18


def test_two_rater_figures_from_a_table_equal_the_per_unit_ones():
    rng = np.random.default_rng(1)
    first = list(rng.choice(["none", "hate", "spam"], size=60, p=[0.5, 0.3, 0.2]))
    second = [a if rng.random() < 0.75 else str(rng.choice(["none", "hate", "spam"])) for a in first]
    table: dict[tuple[str, str], int] = {}
    for a, b in zip(first, second, strict=True):
        table[a, b] = table.get((a, b), 0) + 1
    matrix, _ = rating_matrix(
        [(i, r, x) for i, pair in enumerate(zip(first, second, strict=True)) for r, x in enumerate(pair)]
    )

    figures = pair_agreement(table, n_resamples=300)

    assert figures.agreement.value == pytest.approx(percent_agreement(matrix, n_resamples=0).value)
    assert figures.kappa.value == pytest.approx(cohen_kappa(first, second, n_resamples=0).value)
    assert figures.alpha.value == pytest.approx(krippendorff_alpha(matrix, n_resamples=0).value)
    for e in (figures.agreement, figures.kappa, figures.alpha):
        assert e.n == 60
        assert e.low <= e.value <= e.high
    one_label = pair_agreement({("none", "none"): 5})
    assert one_label.kappa.value == one_label.alpha.value == 1.0
    assert one_label.kappa.degenerate
