"""The multi-rater figures of N-review queues (qa.selectors.independent_reviews and the scorecards page)
against the krippendorff package, statsmodels' Fleiss' kappa and a count by hand, on a seeded data set."""

from __future__ import annotations

from datetime import timedelta

import krippendorff
import numpy as np
import pytest
from django.test import Client
from django.utils import timezone
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from ops_platform.core.models import Policy, Role, Team, User
from ops_platform.core.services import user_create
from qa.selectors import MIN_UNITS_TO_JUDGE, QaFilter, independent_reviews
from queues.models import Decision, Queue
from tests.conftest import PASSWORD
from tests.qa.multirater import as_matrix, count_table, fleiss_by_hand, multirater_units
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db

RATERS = 12


def _store(queue: Queue, units: list[list[tuple[int, str]]], people: list[User], adjudicator: User) -> list[str]:
    """Each unit as an item needing len(ratings) reviews, decided by those raters in turn; where they disagree,
    the adjudicator's decision is final (always "hate", so it differs from some reviewers). Returns the final
    label per unit."""
    policies = {slug: Policy.objects.get_or_create(slug=slug, defaults={"name": slug})[0] for slug in ("hate", "spam")}
    start = timezone.now() - timedelta(days=1)
    finals = []
    for j, ratings in enumerate(units):
        item = item_queued(queue, required_reviews=len(ratings))
        agreed = len({label for _, label in ratings}) == 1
        for k, (rater, label) in enumerate(ratings):
            Decision.objects.create(
                item=item,
                reviewer=people[rater],
                queue=queue,
                policy=policies.get(label),
                is_violation=label != "none",
                decided_at=start + timedelta(seconds=j * 20 + k),
                is_final=agreed and k == len(ratings) - 1,
            )
        if not agreed:
            Decision.objects.create(
                item=item,
                reviewer=adjudicator,
                queue=queue,
                policy=policies["hate"],
                is_violation=True,
                decided_at=start + timedelta(seconds=j * 20 + 15),
                is_final=True,
            )
        finals.append(ratings[0][1] if agreed else "hate")
    return finals


@pytest.fixture
def people(in_house_team: Team) -> list[User]:
    return [
        user_create(actor="test", username=f"r{i:02}", password=PASSWORD, roles=[Role.REVIEWER], team=in_house_team)
        for i in range(RATERS)
    ]


def test_independent_review_figures_match_krippendorff_and_statsmodels(people, qa_lead):
    mixed_queue = Queue.objects.create(slug="mixed", name="Mixed N")
    five_queue = Queue.objects.create(slug="five", name="Five")
    small_queue = Queue.objects.create(slug="small", name="Small")
    mixed = [u for u in multirater_units(units=120, raters=RATERS, seed=5) if len(u) >= 2]
    five = multirater_units(units=60, raters=RATERS, seed=6, sizes=(5,))
    mixed_final = _store(mixed_queue, mixed, people, qa_lead)
    _store(five_queue, five, people, qa_lead)
    _store(small_queue, multirater_units(units=10, raters=RATERS, seed=7, sizes=(3,)), people, qa_lead)

    rows = {row.queue_name: row for row in independent_reviews(QaFilter(), n_resamples=200)}

    m = rows["Mixed N"]
    assert (m.items, m.ratings) == (len(mixed), sum(len(u) for u in mixed))
    assert m.disputed == sum(1 for u in mixed if len({x for _, x in u}) > 1)
    assert m.alpha is not None
    assert m.fleiss is not None
    assert m.alpha.value == pytest.approx(
        krippendorff.alpha(reliability_data=as_matrix(mixed, RATERS), level_of_measurement="nominal"), abs=1e-9
    )
    assert m.fleiss.value == pytest.approx(fleiss_by_hand(count_table(mixed)), abs=1e-9)
    assert m.alpha.low <= m.alpha.value <= m.alpha.high
    f = rows["Five"].fleiss
    assert f is not None
    assert f.value == pytest.approx(statsmodels_fleiss_kappa(count_table(five), method="fleiss"), abs=1e-9)
    # Each reviewer's agreement with the final outcome (the adjudicator's word where reviewers disagreed).
    for r in m.reviewers:
        index = people.index(User.objects.get(username=r.name))
        hits = [label == mixed_final[j] for j, u in enumerate(mixed) for who, label in u if who == index]
        assert r.items == len(hits)
        if len(hits) >= MIN_UNITS_TO_JUDGE:
            assert r.agreement is not None
            assert r.agreement.value == pytest.approx(np.mean(hits), abs=1e-9)
            assert r.agreement.low <= r.agreement.value <= r.agreement.high
        else:
            assert r.agreement is None
    assert qa_lead.get_username() not in {r.name for r in m.reviewers}  # the adjudicator is not a rater
    s = rows["Small"]
    assert s.too_few
    assert s.fleiss is None
    assert s.alpha is None
    assert independent_reviews(QaFilter(queue_id=five_queue.pk), n_resamples=0)[0].queue_name == "Five"


def test_scorecards_page_shows_independent_reviews_with_their_raters(people, qa_lead):
    queue = Queue.objects.create(slug="three", name="Three reviews")
    _store(queue, multirater_units(units=5, raters=RATERS, seed=8, sizes=(3,)), people, qa_lead)
    client = Client()
    client.login(username=qa_lead.get_username(), password=PASSWORD)

    html = client.get("/qa/scorecards/").content.decode()

    assert "Independent reviews" in html
    assert "Raters: the N independent reviewers of an item, never the adjudicator" in html
    assert "Three reviews" in html
    assert "too few to judge" in html
