"""Calibration sessions (independent ratings, a per-item and per-person report) and QA figures per slice,
checked against scikit-learn, the krippendorff package and hand counts on the same ratings."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from django.utils import timezone
from sklearn.metrics import cohen_kappa_score

from ops_platform.core.errors import ApplicationError, Conflict, NotPermitted
from ops_platform.core.models import Team, User
from qa.models import Adjudication, CalibrationSession, QaReview, SampleState
from qa.rollups import scorecard_rollups_rebuild
from qa.selectors import QaFilter, coaching_for, scorecards, session_report, slice_stats
from qa.services import rating_submit, session_close, session_create
from queues.models import Queue
from tests.qa.factories import decided, policy_with_actions, qa_person, sample_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(in_house_team: Team, reviewer: User, qa_lead: User) -> list[User]:
    return [reviewer, qa_lead, qa_person("rita", in_house_team)]


def test_a_calibration_session_reports_agreement_per_item_and_per_person(intake_queue: Queue, qa_lead, people):
    hate, _ = policy_with_actions("hate")
    items = [decided(intake_queue, people[0]).item_id for _ in range(4)]
    session = session_create(actor=qa_lead, name="Hate, week 48", item_ids=items, participants=people)
    ratings = {  # item position -> each person's label (None: no violation); rita skipped item 4
        1: [hate, hate, hate],
        2: [None, hate, hate],
        3: [None, None, None],
        4: [hate, None],
    }
    si = list(session.session_items.order_by("position"))
    for position, labels in ratings.items():
        for person, label in zip(people, labels, strict=False):
            rating_submit(session_item=si[position - 1], actor=person, is_violation=label is not None, policy=label)

    with pytest.raises(Conflict):  # ratings are final
        rating_submit(session_item=si[0], actor=people[0], is_violation=False, policy=None)
    session_close(session=session, actor=qa_lead)
    with pytest.raises(Conflict):
        rating_submit(session_item=si[3], actor=people[2], is_violation=False, policy=None)
    report = session_report(session)

    assert [row.majority for row in report.items] == ["hate", "hate", "no violation", None]  # item 4 is a tie
    assert [row.agreement for row in report.items] == [1.0, pytest.approx(1 / 3), 1.0, 0.0]
    shares = {p.participant.username: (p.rated, p.with_majority) for p in report.people}
    assert shares == {"alice": (3, 2), "quinn": (3, 3), "rita": (3, 3)}
    codes = {"hate": 0.0, "no violation": 1.0}
    matrix = np.full((3, 4), np.nan)
    for position, labels in ratings.items():
        for r, label in enumerate(labels):
            matrix[r, position - 1] = codes["hate" if label else "no violation"]
    assert report.alpha is not None
    assert report.alpha.value == pytest.approx(
        krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    )


def test_sessions_need_items_people_and_a_qa_organiser(intake_queue: Queue, reviewer, qa_lead, people):
    item = decided(intake_queue, reviewer).item_id
    with pytest.raises(ApplicationError, match="at least two items"):
        session_create(actor=qa_lead, name="x", item_ids=[item], participants=people)
    with pytest.raises(NotPermitted):
        session_create(actor=reviewer, name="x", item_ids=[item, item + 1], participants=people)


def test_slice_figures_match_independent_computations(intake_queue: Queue, reviewer, vendor_reviewer, qa_lead):
    hate, remove = policy_with_actions("hate")
    intake_queue.allowed_teams.add(reviewer.reviewer_profile.team)
    intake_queue.allowed_vendors.add(vendor_reviewer.reviewer_profile.team.vendor)
    rng = np.random.default_rng(3)
    originals, rereviews = [], []
    for n in range(40):
        person = reviewer if n % 2 else vendor_reviewer
        violated = bool(rng.random() < 0.4)
        d = decided(intake_queue, person, policy=hate if violated else None, action=remove if violated else None)
        qa_says = violated if rng.random() < 0.8 else not violated
        sample = sample_of(d, probability=0.5)
        QaReview.objects.create(
            sample=sample,
            reviewer=qa_lead,
            is_violation=qa_says,
            policy=hate if qa_says else None,
            action=remove if qa_says else None,
            decided_at=timezone.now(),
            agrees=qa_says == violated,
        )
        if qa_says != violated:  # the adjudicator sides with QA: must not count as a third rater in alpha
            Adjudication.objects.create(
                sample=sample,
                adjudicator=qa_lead,
                is_violation=qa_says,
                policy=hate if qa_says else None,
                rationale="r",
                decided_at=timezone.now(),
            )
        sample.state, sample.closed_at = SampleState.CLOSED, timezone.now()
        sample.error_type = "" if qa_says == violated else ("false_positive" if violated else "false_negative")
        sample.severity = 0 if qa_says == violated else 2
        sample.save()
        originals.append("hate" if violated else "none")
        rereviews.append("hate" if qa_says else "none")

    stats = slice_stats(QaFilter())

    assert stats.samples == 40
    assert stats.kappa is not None
    assert stats.agreement is not None
    assert stats.alpha is not None
    assert stats.kappa.value == pytest.approx(cohen_kappa_score(originals, rereviews))
    assert stats.agreement.value == pytest.approx(np.mean([a == b for a, b in zip(originals, rereviews, strict=True)]))
    codes = {"hate": 0, "none": 1}
    matrix = np.array([[codes[x] for x in originals], [codes[x] for x in rereviews]], dtype=float)
    assert stats.alpha.value == pytest.approx(
        krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    )
    errors = sum(a != b for a, b in zip(originals, rereviews, strict=True))
    assert stats.quality is not None
    assert stats.quality.value == pytest.approx(1 - errors * 2 / (4 * 40))  # equal weights: the plain mean
    assert stats.quality.low < stats.quality.value < stats.quality.high

    scorecard_rollups_rebuild([timezone.localdate()])  # scorecards and coaching read the rollup
    cards = {row.name: row.stats.samples for row in scorecards("reviewer", QaFilter())}
    assert cards == {"alice": 20, "vic": 20}
    vendors = scorecards("vendor", QaFilter())
    assert [(v.name, v.stats.samples) for v in vendors] == [("Vendor A", 20)]
    entries, _, mine = coaching_for(reviewer)
    assert mine.samples == 20
    assert {e.sample.original_reviewer for e in entries} == {reviewer}


def test_a_session_refuses_item_ids_no_item_can_have(intake_queue: Queue, reviewer, qa_lead, people):
    items = [decided(intake_queue, reviewer).item_id for _ in range(2)]

    with pytest.raises(ApplicationError, match="ids of items") as refused:
        session_create(actor=qa_lead, name="x", item_ids=[*items, 10**30], participants=people)

    assert refused.value.field == "item_ids"
    assert not CalibrationSession.objects.exists()
