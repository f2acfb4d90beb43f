"""Calibration pages that scale: sessions created from a CSV file, a long id list or a queue; rating one item at a
time with one-key answers; a closed session's report paginated, its figures stored once at close."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from ops_platform.core.errors import Conflict
from ops_platform.core.models import Policy, Team, User
from qa.models import CalibrationRating, CalibrationSession
from qa.selectors import session_report, session_report_page
from qa.services import rating_submit, session_close, session_create
from queues.models import ItemState, Queue, ReviewItem
from tests.conftest import PASSWORD
from tests.qa.factories import policy_with_action, qa_person

pytestmark = pytest.mark.django_db


def signed_in(user: User) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _items(queue: Queue, n: int, **fields: object) -> list[ReviewItem]:
    now = timezone.now()
    return ReviewItem.objects.bulk_create(
        ReviewItem(
            source="s", external_id=f"cal-{i}", text=f"calibration post {i}", received_at=now, queue=queue, **fields
        )
        for i in range(n)
    )


@pytest.fixture
def spam(intake_queue: Queue) -> Policy:
    policy = policy_with_action("spam", "Spam")
    intake_queue.policies.add(policy)
    return policy


@pytest.fixture
def rita(in_house_team: Team) -> User:
    return qa_person("rita", in_house_team)


def test_a_session_is_created_from_a_csv_file_a_long_list_or_a_queue(qa_lead, reviewer, rita, intake_queue):
    items = _items(intake_queue, 700)
    quinn = signed_in(qa_lead)
    csv = "item_id,note\n" + "\n".join(f"{i.pk},x" for i in items)
    assert len(csv) > 2000

    from_file = quinn.post(
        "/qa/calibration/",
        {
            "name": "From CSV",
            "item_file": SimpleUploadedFile("ids.csv", csv.encode()),
            "participants": [reviewer.pk, rita.pk],
        },
    )
    assert from_file.status_code == 302, from_file.content.decode()[:2000]
    assert CalibrationSession.objects.get(name="From CSV").session_items.count() == 700

    long_list = ", ".join(str(i.pk) for i in items[:650])
    quinn.post("/qa/calibration/", {"name": "From ids", "item_ids": long_list, "participants": [reviewer.pk, rita.pk]})
    assert CalibrationSession.objects.get(name="From ids").session_items.count() == 650

    ReviewItem.objects.filter(pk__in=[i.pk for i in items[:5]]).update(state=ItemState.DECIDED)
    quinn.post(
        "/qa/calibration/",
        {
            "name": "From queue",
            "queue": intake_queue.pk,
            "state": ItemState.DECIDED,
            "limit": 100,
            "participants": [reviewer.pk, rita.pk],
        },
    )
    session = CalibrationSession.objects.get(name="From queue")
    assert sorted(session.session_items.values_list("item_id", flat=True)) == sorted(i.pk for i in items[:5])

    both = {"name": "Both", "item_ids": "1 2", "queue": intake_queue.pk, "participants": [reviewer.pk, rita.pk]}
    assert quinn.post("/qa/calibration/", both).status_code == 400
    bad_file = {
        "name": "Bad",
        "item_file": SimpleUploadedFile("x.csv", b"id\nabc\n"),
        "participants": [reviewer.pk, rita.pk],
    }
    refused = quinn.post("/qa/calibration/", bad_file)
    assert refused.status_code == 400
    assert "Item ids are whole numbers." in refused.content.decode()
    listing = quinn.get("/qa/calibration/").content.decode()
    assert ">700<" in listing


def test_rating_goes_one_item_at_a_time_with_keys_and_never_back_to_a_page_of_every_item(
    qa_lead, reviewer, rita, intake_queue, spam
):
    items = _items(intake_queue, 30)
    session = session_create(
        actor=qa_lead, name="One by one", item_ids=[i.pk for i in items], participants=[reviewer, rita]
    )
    alice = signed_in(reviewer)
    overview = alice.get(f"/qa/calibration/{session.pk}/").content.decode()
    assert 'data-testid="rate-link"' in overview
    assert "calibration post 1" not in overview  # no item is rendered on the overview

    page = alice.get(f"/qa/calibration/{session.pk}/rate").content.decode()
    assert "calibration post 0" in page
    assert "calibration post 1" not in page
    assert page.count('data-testid="rate-form"') == 1
    assert 'data-key="n"' in page
    assert 'data-key="1"' in page
    assert "Spam" in page

    first = session.session_items.get(position=1)
    rated = alice.post(f"/qa/calibration/{session.pk}/items/{first.pk}/rate", {f"i{first.pk}-violation": "no"})
    assert rated["Location"] == f"/qa/calibration/{session.pk}/rate"
    second = session.session_items.get(position=2)
    rated = alice.post(
        f"/qa/calibration/{session.pk}/items/{second.pk}/rate",
        {f"i{second.pk}-violation": "yes", f"i{second.pk}-policy": spam.pk, f"i{second.pk}-rationale": "link farm"},
    )
    nxt = alice.get(rated["Location"]).content.decode()
    assert "calibration post 2" in nxt
    mine = alice.get(f"/qa/calibration/{session.pk}/rate?position=2").content.decode()
    assert "link farm" in mine
    assert 'data-testid="rate-form"' not in mine
    assert "link farm" not in signed_in(rita).get(f"/qa/calibration/{session.pk}/rate?position=2").content.decode()
    # The one-key buttons: "no" overrides the hidden "yes"; a policy button sends its policy.
    third = session.session_items.get(position=3)
    alice.post(
        f"/qa/calibration/{session.pk}/items/{third.pk}/rate",
        {f"i{third.pk}-violation": ["yes", "no"], f"i{third.pk}-rationale": ""},
    )
    assert CalibrationRating.objects.get(session_item=third).is_violation is False
    assert signed_in(qa_lead).get(f"/qa/calibration/{session.pk}/rate").status_code == 404  # not a participant


def test_the_closed_report_paginates_and_reads_figures_stored_at_close(
    qa_lead, reviewer, rita, intake_queue, spam, django_assert_max_num_queries
):
    items = _items(intake_queue, 250)
    session = session_create(actor=qa_lead, name="Big", item_ids=[i.pk for i in items], participants=[reviewer, rita])
    for n, si in enumerate(session.session_items.order_by("position")):
        rating_submit(session_item=si, actor=reviewer, is_violation=n % 3 == 0, policy=spam if n % 3 == 0 else None)
        if n % 5:
            rating_submit(session_item=si, actor=rita, is_violation=n % 2 == 0, policy=spam if n % 2 == 0 else None)
    closed = session_close(session=session, actor=qa_lead)
    assert closed.figures is not None
    with pytest.raises(Conflict):
        rating_submit(session_item=session.session_items.first(), actor=qa_lead, is_violation=False, policy=None)

    full = session_report(session)
    page = session_report_page(CalibrationSession.objects.get(pk=session.pk), page=3, page_size=100)
    assert (page.count, page.pages, len(page.items)) == (250, 3, 50)
    assert page.items[0].session_item.position == 201
    assert page.alpha is not None
    assert full.alpha is not None
    assert page.alpha.value == pytest.approx(full.alpha.value, abs=1e-12)
    assert page.agreement is not None
    assert full.agreement is not None
    assert page.agreement.value == pytest.approx(full.agreement.value, abs=1e-12)
    assert [(p.participant, p.rated, p.with_majority) for p in page.people] == [
        (p.participant, p.rated, p.with_majority) for p in full.people
    ]
    assert [(r.labels, r.majority, r.agreement) for r in page.items] == [
        (r.labels, r.majority, r.agreement) for r in full.items[200:]
    ]

    alice = signed_in(reviewer)
    with django_assert_max_num_queries(25):  # one page of rows and the stored figures, whatever the session's size
        html = alice.get(f"/qa/calibration/{session.pk}/?page=2").content.decode()
    assert "Page 2 of 3" in html
    assert html.count("<tr><td>") >= 100
    assert ">101 <span" in html
    assert ">201 <span" not in html
    assert f"{full.alpha.value:.3f}" in html
    assert alice.get(f"/qa/calibration/{session.pk}/?page=x").status_code == 200
