"""Done means (issue 22): a seeded multi-rater data set (3-9 ratings per item, ties and single ratings included)
fed through the API into a calibration session and into N-review queues; every agreement figure the platform shows
(the API report, the calibration page, the N-review figures and the scorecards page) checked against the
``krippendorff`` package, scikit-learn and statsmodels' Fleiss' kappa to 1e-9, with the raters each figure states."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import krippendorff
import numpy as np
import pytest
from django.test import Client
from django.utils import timezone
from sklearn.metrics import accuracy_score
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from ops_platform.core.models import ApiScope, Role, Team, User
from ops_platform.core.services import api_client_create, user_create
from qa.selectors import MIN_UNITS_TO_JUDGE, QaFilter, independent_reviews
from queues.models import ItemState, Queue, ReviewItem
from tests.conftest import PASSWORD
from tests.qa.factories import policy_with_action
from tests.qa.multirater import as_matrix, count_table, fleiss_by_hand, multirater_units
from tests.qa.test_review_api import Caller, api_caller
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db

RATERS = 9
CALIBRATION_NONE = "no violation"  # the calibration report's label for "none"


@pytest.fixture
def raters(in_house_team: Team) -> list[User]:
    return [
        user_create(actor="test", username=f"r{i}", password=PASSWORD, roles=[Role.REVIEWER], team=in_house_team)
        for i in range(RATERS)
    ]


@pytest.fixture
def policies(db: None) -> dict[str, Any]:
    return {slug: policy_with_action(slug, slug.title()) for slug in ("hate", "spam")}


def _verdict(label: str) -> dict[str, Any]:
    return {"is_violation": label != "none", "policy": None if label == "none" else label}


def _tied(unit: list[tuple[int, str]]) -> bool:
    top = Counter(x for _, x in unit).most_common(2)
    return len(top) == 2 and top[0][1] == top[1][1]


def _pair_agreement(labels: list[str]) -> float:
    n = len(labels)
    return sum(c * (c - 1) for c in Counter(labels).values()) / (n * (n - 1))


def test_calibration_figures_by_api_and_page_match_krippendorff_and_a_count_by_hand(
    raters, qa_lead, intake_queue, policies
):
    units = multirater_units(units=60, raters=RATERS, seed=22)
    sizes = [len(u) for u in units]
    assert 1 in sizes
    assert min(s for s in sizes if s > 1) >= 3
    assert max(sizes) == 9
    ties = [j for j, u in enumerate(units) if _tied(u)]
    assert ties, "the data set must hold ties"
    items = [item_queued(intake_queue, text=f"crowd post {j}") for j in range(len(units))]
    tool = api_caller(scopes=[ApiScope.QA_WRITE, ApiScope.QA_READ], vendor=None, source="crowd-bridge")
    names = [r.username for r in raters]

    created = tool.post(
        "/api/v1/qa/calibration-sessions",
        {"reviewer": "quinn", "name": "Crowd set", "participants": names, "item_ids": [i.pk for i in items]},
        **{"Idempotency-Key": "crowd-session"},
    )
    assert created.status_code == 201, created.json()
    session = created.json()["id"]
    when = (timezone.now() - timedelta(days=3)).isoformat()
    # Even units arrive as one imported batch of crowd labels, odd ones rating by rating.
    batch = [
        {"item": items[j].pk, "participant": names[r], "rater": f"crowd-worker-{r}", "labelled_at": when, **_verdict(x)}
        for j, u in enumerate(units)
        if j % 2 == 0
        for r, x in u
    ]
    imported = tool.post(
        "/api/v1/qa/label-imports",
        {"reviewer": "quinn", "target": "calibration", "source": "crowd", "session": session, "labels": batch},
        **{"Idempotency-Key": "crowd-batch-1"},
    )
    assert imported.status_code == 201, imported.json()
    for j, u in enumerate(units):
        if j % 2:
            for r, x in u:
                rated = tool.post(
                    f"/api/v1/qa/calibration-sessions/{session}/ratings",
                    {"reviewer": names[r], "item": items[j].pk, **_verdict(x)},
                )
                assert rated.status_code == 201, rated.json()
    assert tool.post(f"/api/v1/qa/calibration-sessions/{session}/close", {"reviewer": "quinn"}).status_code == 200

    auth = {"HTTP_AUTHORIZATION": f"Bearer {tool.key}"}
    report = tool.http.get(f"/api/v1/qa/calibration-sessions/{session}/report?reviewer=quinn&page_size=500", **auth)
    assert report.status_code == 200, report.json()
    out = report.json()
    assert out["raters"] == "all participants of the session; unit: a session item"

    expected_alpha = krippendorff.alpha(reliability_data=as_matrix(units, RATERS), level_of_measurement="nominal")
    pairable = [[x for _, x in u] for u in units if len(u) >= 2]
    expected_agreement = float(np.mean([_pair_agreement(labels) for labels in pairable]))
    assert out["alpha"]["value"] == pytest.approx(expected_alpha, abs=1e-9)
    assert out["alpha"]["n"] == len(pairable)
    assert out["alpha"]["low"] <= out["alpha"]["value"] <= out["alpha"]["high"]
    assert out["agreement"]["value"] == pytest.approx(expected_agreement, abs=1e-9)

    tally = {name: [0, 0] for name in names}
    assert out["count"] == len(units)
    for j, (u, row) in enumerate(zip(units, out["items"], strict=True)):
        labels = {names[r]: (CALIBRATION_NONE if x == "none" else x) for r, x in u}
        assert (row["position"], row["item"], row["labels"]) == (j + 1, items[j].pk, labels)
        top = Counter(labels.values()).most_common()
        majority = top[0][0] if len(top) == 1 or top[0][1] > top[1][1] else None
        assert row["majority"] == majority
        if j in ties:
            assert row["majority"] is None
        if len(u) >= 2:
            assert row["agreement"] == pytest.approx(_pair_agreement(list(labels.values())), abs=1e-9)
        else:
            assert row["agreement"] is None
        for name, label in labels.items():
            if majority is not None:
                tally[name][0] += 1
                tally[name][1] += label == majority
    assert {p["participant"]: [p["rated"], p["with_majority"]] for p in out["people"]} == tally

    page = Client()
    assert page.login(username="quinn", password=PASSWORD)
    html = page.get(f"/qa/calibration/{session}/").content.decode()
    assert f'data-testid="alpha">{expected_alpha:.3f} [' in html
    assert f'data-testid="agreement">{expected_agreement:.1%} [' in html
    assert "Raters: every participant of this session" in html


def _review_through_api(
    tool: Caller, queue: Queue, units: list[list[tuple[int, str]]], names: list[str]
) -> tuple[list[str], list[ReviewItem]]:
    """Each unit as an item needing len(ratings) reviews, claimed and decided through the API by its raters in
    turn; where they disagree, quinn adjudicates ("hate": it differs from some reviewers). The final label per unit."""
    finals, items = [], []
    for u in units:
        item = item_queued(queue, required_reviews=len(u))
        items.append(item)
        for r, x in u:
            claimed = tool.post(f"/api/v1/queues/{queue.slug}/claim-next", {"reviewer": names[r]}).json()
            assert "item" in claimed, claimed
            assert claimed["item"]["id"] == item.pk, claimed
            decided = tool.post(f"/api/v1/review-items/{item.pk}/decision", {"reviewer": names[r], **_verdict(x)})
            assert decided.status_code == 201, decided.json()
        if len({x for _, x in u}) > 1:
            assert decided.json()["adjudication"] is True
            claimed = tool.post(f"/api/v1/queues/{queue.slug}/claim-next", {"reviewer": "quinn"}).json()
            assert claimed["item"]["id"] == item.pk
            final = tool.post(f"/api/v1/review-items/{item.pk}/decision", {"reviewer": "quinn", **_verdict("hate")})
            assert final.json()["closed"] is True
            finals.append("hate")
        else:
            assert decided.json()["closed"] is True
            finals.append(u[0][1])
    return finals, items


def test_n_review_figures_by_api_match_krippendorff_statsmodels_and_sklearn(raters, qa_lead, policies):
    # Some thousand calls: past the default per-minute limit of a key.
    _, key = api_client_create(
        actor="test", name="bridge", source="bridge", scopes=[ApiScope.REVIEWS_WRITE], rate_limit_per_minute=100_000
    )
    tool = Caller(key=key)
    names = [r.username for r in raters]
    mixed_queue = Queue.objects.create(slug="mixed", name="Mixed N", max_required_reviews=9)
    three_queue = Queue.objects.create(slug="three", name="Three reviews", max_required_reviews=3)
    for queue in (mixed_queue, three_queue):
        queue.policies.add(*policies.values())
    mixed = multirater_units(units=60, raters=RATERS, seed=23)
    three = multirater_units(units=MIN_UNITS_TO_JUDGE, raters=RATERS, seed=24, sizes=(3,))
    mixed_final, mixed_items = _review_through_api(tool, mixed_queue, mixed, names)
    _review_through_api(tool, three_queue, three, names)
    assert any(len(u) == 9 for u in mixed)  # up to the queue's configured N, past the old fixed 5

    rows = {row.queue_name: row for row in independent_reviews(QaFilter(), n_resamples=200)}

    # Raters: the N independent reviewers of an item (never the adjudicator); unit: an item needing N > 1 reviews.
    reviewed = [(u, final) for u, final in zip(mixed, mixed_final, strict=True) if len(u) >= 2]
    units = [u for u, _ in reviewed]
    m = rows["Mixed N"]
    assert (m.items, m.ratings) == (len(units), sum(len(u) for u in units))
    assert m.disputed == sum(1 for u in units if len({x for _, x in u}) > 1)
    assert m.alpha is not None
    assert m.fleiss is not None
    expected_alpha = krippendorff.alpha(reliability_data=as_matrix(units, RATERS), level_of_measurement="nominal")
    assert m.alpha.value == pytest.approx(expected_alpha, abs=1e-9)
    assert m.fleiss.value == pytest.approx(fleiss_by_hand(count_table(units)), abs=1e-9)
    assert "quinn" not in {r.name for r in m.reviewers}
    for r in m.reviewers:
        index = names.index(r.name)
        mine = [(x, final) for u, final in reviewed for who, x in u if who == index]
        assert r.items == len(mine)
        if len(mine) >= MIN_UNITS_TO_JUDGE:
            assert r.agreement is not None
            truth, said = [final for _, final in mine], [x for x, _ in mine]
            assert r.agreement.value == pytest.approx(accuracy_score(truth, said), abs=1e-9)
        else:
            assert r.agreement is None
    t = rows["Three reviews"]
    assert t.fleiss is not None
    assert t.alpha is not None
    assert t.fleiss.value == pytest.approx(statsmodels_fleiss_kappa(count_table(three), method="fleiss"), abs=1e-9)
    assert t.alpha.value == pytest.approx(
        krippendorff.alpha(reliability_data=as_matrix(three, RATERS), level_of_measurement="nominal"), abs=1e-9
    )
    assert ReviewItem.objects.filter(pk__in=[i.pk for i in mixed_items], state=ItemState.DECIDED).count() == len(mixed)

    page = Client()
    assert page.login(username="quinn", password=PASSWORD)
    html = page.get("/qa/scorecards/").content.decode()
    assert "Raters: the N independent reviewers of an item, never the adjudicator" in html
    for row in (m, t):
        assert f"{row.fleiss.value:.3f} [" in html
        assert f"{row.alpha.value:.3f} [" in html
