"""Calibration ratings in batches (POST /api/v1/qa/calibration-sessions/<id>/rating-batches): checked as a whole,
all or nothing, the bad row named, replayed by Idempotency-Key; and a closed session's report read from the
figures stored when it closed, never recomputed."""

from __future__ import annotations

from typing import Any

import pytest

from ops_platform.core.errors import ApplicationError, Conflict, NotPermitted
from ops_platform.core.models import ApiScope, Policy, User
from qa import selectors
from qa.models import CalibrationRating, CalibrationSession
from qa.selectors import session_report_page
from qa.services import MAX_RATINGS, RatingRow, ratings_submit, session_close, session_create
from queues.models import Queue, ReviewItem
from tests.qa.factories import qa_person
from tests.qa.test_review_api import Caller, api_caller, assert_error
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db


@pytest.fixture
def hate(db: None) -> Policy:
    return Policy.objects.create(slug="hate", name="Hate")


@pytest.fixture
def items(intake_queue: Queue) -> list[ReviewItem]:
    return [item_queued(intake_queue, text=f"post {n}") for n in range(5)]


@pytest.fixture
def session(qa_lead: User, reviewer: User, in_house_team: Any, items: list[ReviewItem]) -> CalibrationSession:
    rita = qa_person("rita", in_house_team)
    return session_create(
        actor=qa_lead, name="Batch", item_ids=[i.pk for i in items[:4]], participants=[reviewer, rita, qa_lead]
    )


def _url(session: CalibrationSession) -> str:
    return f"/api/v1/qa/calibration-sessions/{session.pk}/rating-batches"


def _rows(items: list[ReviewItem]) -> list[dict[str, Any]]:
    return [
        {"item": items[0].pk, "is_violation": True, "policy": "hate"},
        {"item": items[1].pk, "is_violation": False, "rationale": "satire"},
        {"item": items[2].pk, "is_violation": True, "policy": "hate"},
    ]


def test_a_batch_of_ratings_lands_in_one_call_and_replays_by_key(session, items, hate, reviewer):
    tool = api_caller(scopes=[ApiScope.QA_WRITE], vendor=None, source="qa-tool")
    body = {"reviewer": "alice", "ratings": _rows(items)}

    first = tool.post(_url(session), body, **{"Idempotency-Key": "batch-1"})

    assert first.status_code == 201, first.json()
    out = first.json()
    assert (out["session"], out["rated"]) == (session.pk, 3)
    assert [r["item"] for r in out["ratings"]] == [i.pk for i in items[:3]]
    stored = {r.session_item.item_id: r for r in CalibrationRating.objects.select_related("session_item")}
    assert {r.participant for r in stored.values()} == {reviewer}
    assert (stored[items[0].pk].policy, stored[items[1].pk].policy) == (hate, None)
    assert stored[items[1].pk].rationale == "satire"
    assert {r["rating"] for r in out["ratings"]} == {r.pk for r in stored.values()}
    again = tool.post(_url(session), body, **{"Idempotency-Key": "batch-1"})
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == out
    assert CalibrationRating.objects.count() == 3
    assert_error(
        tool.post(_url(session), {**body, "ratings": body["ratings"][:1]}, **{"Idempotency-Key": "batch-1"}), 422
    )
    # Signed in, a participant rates as themself.
    signed_in = Caller(user=User.objects.get(username="rita")).post(_url(session), {"ratings": _rows(items)})
    assert signed_in.status_code == 201, signed_in.json()
    assert CalibrationRating.objects.filter(participant__username="rita").count() == 3


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"item": 987654321}, 400, "ratings[2].item"),
        ({"policy": "no-such-policy"}, 400, "ratings[2].policy"),
        ({"policy": None}, 400, "ratings[2].policy"),
        ({"item": "first"}, 400, "ratings[2].item"),
        ("repeat", 409, "ratings[2].item"),
        ("outside", 400, "ratings[2].item"),
    ],
)
def test_a_bad_row_refuses_the_whole_batch_by_its_index(session, items, hate, change, status, field):
    tool = api_caller(scopes=[ApiScope.QA_WRITE], vendor=None, source="qa-tool")
    rows = _rows(items)
    if change == "repeat":
        rows[2] = {**rows[0]}
    elif change == "outside":
        rows[2] = {**rows[2], "item": items[4].pk}  # an item not in the session
    else:
        rows[2] = {**rows[2], **change}

    assert_error(tool.post(_url(session), {"reviewer": "alice", "ratings": rows}), status, field=field)
    assert not CalibrationRating.objects.exists()


def test_the_service_checks_the_batch_whoever_calls_it(session, items, hate, reviewer, vendor_reviewer, qa_lead):
    good = RatingRow(items[0].pk, True, hate)
    with pytest.raises(NotPermitted):
        ratings_submit(session=session, actor=vendor_reviewer, ratings=[good])
    for rows, field in (
        ([], "ratings"),
        ([good] * (MAX_RATINGS + 1), "ratings"),
        ([good, RatingRow(items[1].pk, True, None)], "ratings[1].policy"),
        ([good, RatingRow(items[4].pk, False, None)], "ratings[1].item"),
    ):
        with pytest.raises(ApplicationError) as refused:
            ratings_submit(session=session, actor=reviewer, ratings=rows)
        assert refused.value.field == field
    assert ratings_submit(session=session, actor=reviewer, ratings=[good])[0].participant == reviewer
    with pytest.raises(Conflict) as again:
        ratings_submit(session=session, actor=reviewer, ratings=[RatingRow(items[1].pk, False, None), good])
    assert again.value.field == "ratings[1].item"
    session_close(session=session, actor=qa_lead)
    with pytest.raises(Conflict) as closed:
        ratings_submit(session=session, actor=reviewer, ratings=[RatingRow(items[1].pk, False, None)])
    assert closed.value.field == "session"
    assert CalibrationRating.objects.count() == 1
    # By HTTP, a closed session refuses a batch too.
    tool = api_caller(scopes=[ApiScope.QA_WRITE], vendor=None, source="qa-tool")
    late = {"reviewer": "alice", "ratings": [{"item": items[1].pk, "is_violation": False}]}
    assert_error(tool.post(_url(session), late), 409, "conflict", field="session")


def _rate_all(session: CalibrationSession, items: list[ReviewItem], hate: Policy) -> None:
    for n, person in enumerate(session.participants.order_by("username")):
        rows = [
            RatingRow(item.pk, (k + n) % 3 == 0, hate if (k + n) % 3 == 0 else None) for k, item in enumerate(items)
        ]
        ratings_submit(session=session, actor=person, ratings=rows)


def test_a_closed_sessions_report_reads_the_figures_stored_at_close(session, items, hate, qa_lead, monkeypatch):
    _rate_all(session, items[:4], hate)
    closed = session_close(session=session, actor=qa_lead)
    stored = CalibrationSession.objects.get(pk=session.pk).figures
    assert stored == closed.figures
    assert stored is not None

    def recomputed(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a closed session's figures were recomputed")

    monkeypatch.setattr(selectors, "session_figures", recomputed)
    report = session_report_page(CalibrationSession.objects.get(pk=session.pk))
    assert report.alpha is not None
    assert report.alpha.value == stored["alpha"]["value"]
    http = Caller(user=qa_lead).http
    assert http.get(f"/qa/calibration/{session.pk}/").status_code == 200
    api = http.get(f"/api/v1/qa/calibration-sessions/{session.pk}/report")
    assert api.status_code == 200, api.json()
    assert api.json()["alpha"]["value"] == stored["alpha"]["value"]


def test_a_session_closed_before_figures_were_stored_stores_them_on_its_first_view(session, items, hate, qa_lead):
    _rate_all(session, items[:4], hate)
    session_close(session=session, actor=qa_lead)
    expected = CalibrationSession.objects.get(pk=session.pk).figures
    CalibrationSession.objects.filter(pk=session.pk).update(figures=None)  # as one closed before the column

    report = session_report_page(CalibrationSession.objects.get(pk=session.pk))

    assert CalibrationSession.objects.get(pk=session.pk).figures == expected
    assert report.alpha is not None
    assert expected is not None
    assert report.alpha.value == expected["alpha"]["value"]
