"""A vendor-A reviewer who guesses vendor-B ids reaches nothing: no page, no action, no content, no oracle."""

from __future__ import annotations

import pytest
from django.test import Client

from ops_platform.core.models import ApiScope, Role, User
from ops_platform.core.services import api_client_create, user_create
from qa.services import session_create
from queues.models import Decision, ItemState, ReviewItem
from tests.access.world import World, world_create
from tests.conftest import PASSWORD
from tests.qa.factories import decided, sample_of

pytestmark = pytest.mark.django_db

SECRET = "vendor B item"  # every vendor-B item's text starts so
ACTIONS = [
    ("decide", {"violation": "no"}),
    ("release", {"reason": "x"}),
    ("appeal", {"outcome": "uphold", "rationale": "x"}),
    ("escalate", {"reason": "x"}),
]


@pytest.fixture
def world(reviewer, vendor_reviewer, qa_lead, policy_staff, ops_manager, admin_user, in_house_team) -> World:
    return world_create(
        reviewer=reviewer,
        vendor_reviewer=vendor_reviewer,
        qa_lead=qa_lead,
        policy_staff=policy_staff,
        ops_manager=ops_manager,
        admin_user=admin_user,
        in_house_team=in_house_team,
    )


def _as(user: User) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def _refused(response, *, statuses: tuple[int, ...] = (403, 404)) -> None:
    assert response.status_code in statuses, response.status_code
    assert SECRET not in response.content.decode(errors="replace")


def test_vendor_b_items_are_404_on_every_item_page_and_action(world: World, vendor_reviewer: User):
    vic = _as(vendor_reviewer)
    for item in (world.held_b, world.waiting_b):
        _refused(vic.get(f"/review/items/{item.pk}/"))
        for action, data in ACTIONS:
            _refused(vic.post(f"/review/items/{item.pk}/{action}", data))

    held_b = ReviewItem.objects.get(pk=world.held_b.pk)
    assert (held_b.state, held_b.assignee) == (ItemState.CLAIMED, world.vendor_b_reviewer)
    assert ReviewItem.objects.get(pk=world.waiting_b.pk).state == ItemState.QUEUED
    assert not Decision.objects.filter(item__queue=world.queue_b).exists()


def test_the_lease_url_is_no_oracle_for_which_ids_exist(world: World, vendor_reviewer: User):
    vic = _as(vendor_reviewer)
    missing = ReviewItem.objects.order_by("-pk").first().pk + 1000  # type: ignore[union-attr]

    answers = {vic.post(f"/review/items/{pk}/lease").content for pk in (world.held_b.pk, world.waiting_b.pk, missing)}

    assert len(answers) == 1
    assert vic.post(f"/review/items/{world.held_b.pk}/lease").status_code == 409


def test_a_vendor_b_queue_is_not_listed_and_cannot_be_claimed_from(world: World, vendor_reviewer: User):
    vic = _as(vendor_reviewer)
    assert world.queue_b.name not in vic.get("/review/").content.decode()
    assert world.queue_a.name in vic.get("/review/").content.decode()

    response = vic.post(f"/review/queues/{world.queue_b.slug}/next", follow=True)

    _refused(response, statuses=(200,))  # back to their own queues, with a message
    assert not ReviewItem.objects.filter(assignee=vendor_reviewer).exists()
    assert ReviewItem.objects.get(pk=world.waiting_b.pk).state == ItemState.QUEUED


def test_a_vendor_a_senior_cannot_bulk_decide_in_vendor_b_queue(world: World, vendor_reviewer: User):
    senior = user_create(
        actor="test",
        username="vsenior",
        password=PASSWORD,
        roles=[Role.SENIOR_REVIEWER],
        team=vendor_reviewer.reviewer_profile.team,
    )  # type: ignore[union-attr]
    client = _as(senior)
    _refused(client.get(f"/review/queues/{world.queue_b.slug}/bulk"))
    _refused(client.post(f"/review/queues/{world.queue_b.slug}/bulk", {"items": [world.waiting_b.pk]}))
    assert client.get(f"/review/queues/{world.queue_a.slug}/bulk").status_code == 200
    assert ReviewItem.objects.get(pk=world.waiting_b.pk).state == ItemState.QUEUED


def test_qa_pages_and_drill_downs_on_vendor_b_work_are_refused(world: World, vendor_reviewer: User, qa_lead: User):
    vera_decision = decided(world.queue_b, world.vendor_b_reviewer)  # she decides the item she holds
    sample = sample_of(vera_decision)
    session = session_create(
        actor=qa_lead,
        name="B only",
        item_ids=[vera_decision.item_id, world.waiting_b.pk],
        participants=[qa_lead, world.vendor_b_reviewer],
    )
    vic = _as(vendor_reviewer)
    vendor_b = world.vendor_b_reviewer.reviewer_profile.team.vendor_id  # type: ignore[union-attr]

    for url in (
        f"/qa/samples/{sample.pk}/review",
        f"/qa/samples/{sample.pk}/compare",
        f"/qa/samples/{sample.pk}/adjudicate",
        f"/qa/calibration/{session.pk}/",
        f"/analytics/items?vendor={vendor_b}",
        f"/analytics/items?queue={world.queue_b.pk}",
        f"/api/v1/items/{world.held_b.pk}",
    ):
        response = vic.get(url)
        _refused(response, statuses=(401, 403, 404))
    for url in (
        f"/qa/samples/{sample.pk}/review",
        f"/qa/samples/{sample.pk}/adjudicate",
        f"/qa/samples/{sample.pk}/golden",
        f"/qa/calibration/{session.pk}/close",
    ):
        _refused(vic.post(url, {"violation": "no", "rationale": "x"}))
    item_pk = session.session_items.first().pk  # type: ignore[union-attr]
    _refused(vic.post(f"/qa/calibration/{session.pk}/items/{item_pk}/rate", {f"i{item_pk}-violation": "no"}))
    assert SECRET not in vic.get("/qa/me/").content.decode()
    assert SECRET not in vic.get("/qa/calibration/").content.decode()


def test_an_api_client_reads_only_its_own_items(world: World):
    _, key = api_client_create(actor="test", name="Other", source="other", scopes=[ApiScope.ITEMS_READ])

    response = Client().get(f"/api/v1/items/{world.held_b.pk}", HTTP_AUTHORIZATION=f"Bearer {key}")

    _refused(response, statuses=(404,))
