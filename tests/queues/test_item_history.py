"""Who worked an item before is private across teams: the next holder sees "another reviewer", not a name, and not
the reason that person wrote; their own teammates, QA leads and ops see names and reasons."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse

from ops_platform.core.models import Role, Team, User, Vendor
from ops_platform.core.selectors import people_named_for
from ops_platform.core.services import user_create
from queues.models import Queue, ReviewItem
from queues.selectors import item_history
from queues.services import item_claim_next, item_escalate, item_release
from tests.conftest import PASSWORD
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db

SKIP_REASON = "vic at Vendor A: I know this poster personally"
ESCALATION_REASON = "vic again, Vendor A night shift: needs a senior"


@pytest.fixture
def vendor_b_reviewer(vendor_b: Vendor) -> User:
    team = Team.objects.create(slug="vendor-b-team", name="B team", vendor=vendor_b)
    return user_create(actor="test", username="vera", password=PASSWORD, roles=[Role.REVIEWER], team=team)


@pytest.fixture
def vic_teammate(vendor_reviewer: User) -> User:
    team = vendor_reviewer.reviewer_profile.team
    return user_create(actor="test", username="val", password=PASSWORD, roles=[Role.REVIEWER], team=team)


@pytest.fixture
def shared_queue(in_house_team: Team, vendor_a: Vendor, vendor_b: Vendor) -> Queue:
    """A queue in-house and both vendors work, escalating to one they work too."""
    seniors = Queue.objects.create(slug="shared-senior", name="Shared senior")
    queue = Queue.objects.create(slug="shared", name="Shared", escalation_target=seniors)
    for q in (queue, seniors):
        q.allowed_teams.add(in_house_team)
        q.allowed_vendors.add(vendor_a, vendor_b)
    return queue


def _skipped_by_vic(queue: Queue, vic: User) -> ReviewItem:
    item_queued(queue, text="a post", due_in=timedelta(minutes=10))
    held = item_claim_next(queue=queue, actor=vic)
    assert held is not None
    item_release(item=held, actor=vic, reason=SKIP_REASON)
    return held


def _claim(queue: Queue, person: User, item: ReviewItem) -> None:
    claimed = item_claim_next(queue=queue, actor=person)
    assert claimed is not None
    assert claimed.pk == item.pk


def _page(person: User, item: ReviewItem) -> str:
    http = Client()
    http.force_login(person, backend="django.contrib.auth.backends.ModelBackend")
    response = http.get(reverse("review-item", args=[item.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _history_panel(html: str) -> str:
    """The history panel's text, one line per entry."""
    found = re.search(r'<ol class="history"[^>]*>(.*?)</ol>', html, re.S)
    assert found is not None
    return re.sub(r"<[^>]+>", "", found.group(1).replace("</li>", "\n"))


def test_another_vendors_reviewer_sees_a_role_not_the_previous_holders_name_nor_their_skip_reason(
    shared_queue: Queue, vendor_reviewer: User, vendor_b_reviewer: User
):
    item = _skipped_by_vic(shared_queue, vendor_reviewer)
    _claim(shared_queue, vendor_b_reviewer, item)

    entries = [(e.event, e.actor, e.reason) for e in item_history(item, viewer=vendor_b_reviewer)]
    assert ("claimed", "another reviewer", "") in entries
    assert ("released", "another reviewer", "") in entries
    assert entries[-1] == ("claimed", "you", "")

    html = _page(vendor_b_reviewer, item)
    history = _history_panel(html)
    assert "released" in history
    assert "another reviewer" in history
    assert history.splitlines()[-1].endswith("claimed · shared · you")
    assert not re.search(r"\bvic\b", html)
    assert SKIP_REASON not in html


def test_an_in_house_reviewer_sees_a_vendor_reviewer_as_a_role_too(
    shared_queue: Queue, vendor_reviewer: User, reviewer: User
):
    item = _skipped_by_vic(shared_queue, vendor_reviewer)
    _claim(shared_queue, reviewer, item)

    html = _page(reviewer, item)
    assert "another reviewer" in _history_panel(html)
    assert not re.search(r"\bvic\b", html)
    assert SKIP_REASON not in html


def test_a_teammate_sees_the_name_and_the_reason(shared_queue: Queue, vendor_reviewer: User, vic_teammate: User):
    item = _skipped_by_vic(shared_queue, vendor_reviewer)
    _claim(shared_queue, vic_teammate, item)

    entries = [(e.event, e.actor, e.reason) for e in item_history(item, viewer=vic_teammate)]
    assert ("released", "vic", SKIP_REASON) in entries
    history = _history_panel(_page(vic_teammate, item))
    assert "vic" in history
    assert SKIP_REASON in history


def test_qa_leads_see_names_and_reasons_across_vendors(shared_queue: Queue, vendor_reviewer: User, qa_lead: User):
    item = _skipped_by_vic(shared_queue, vendor_reviewer)
    _claim(shared_queue, qa_lead, item)

    history = _history_panel(_page(qa_lead, item))
    assert "vic" in history
    assert SKIP_REASON in history


def test_an_escalation_reason_stays_with_the_escalating_team(
    shared_queue: Queue, vendor_reviewer: User, vendor_b_reviewer: User, vic_teammate: User
):
    item_queued(shared_queue, text="a post")
    held = item_claim_next(queue=shared_queue, actor=vendor_reviewer)
    assert held is not None
    target = item_escalate(item=held, actor=vendor_reviewer, reason=ESCALATION_REASON)
    _claim(target, vendor_b_reviewer, held)

    html = _page(vendor_b_reviewer, held)
    history = _history_panel(html)
    assert "escalated" in history
    assert "another reviewer" in history
    assert ESCALATION_REASON not in html
    assert not re.search(r"\bvic\b", html)
    # The escalating reviewer's team reads it in full.
    entries = [(e.event, e.actor, e.reason) for e in item_history(held, viewer=vic_teammate)]
    assert ("escalated", "vic", ESCALATION_REASON) in entries


def test_rules_and_processes_keep_their_labels_and_reasons_for_everyone(
    shared_queue: Queue, vendor_reviewer: User, vendor_b_reviewer: User
):
    item = item_queued(shared_queue, text="a post")
    item.events.create(
        at=item.received_at,
        actor_label="rules:spam-burst",
        event="queued",
        queue=shared_queue,
        data={"reason": "spam score above 0.9"},
    )

    entries = [(e.event, e.actor, e.reason) for e in item_history(item, viewer=vendor_b_reviewer)]

    assert entries == [("queued", "rules:spam-burst", "spam score above 0.9")]


def test_people_are_named_by_role_outside_the_viewers_team_and_by_name_to_leads(
    vendor_reviewer: User,
    vendor_b_reviewer: User,
    vic_teammate: User,
    reviewer: User,
    qa_lead: User,
    ops_manager: User,
    admin_user: User,
):
    people = [vendor_reviewer.pk, vic_teammate.pk, vendor_b_reviewer.pk, reviewer.pk, qa_lead.pk, ops_manager.pk]

    def labels(viewer: User) -> list[str]:
        named = people_named_for(viewer=viewer, people=people)
        return [named[pk].label for pk in people]

    assert labels(vendor_b_reviewer) == [
        "another reviewer",
        "another reviewer",
        "you",
        "another reviewer",
        "a senior reviewer",
        "a staff member",
    ]
    assert labels(vic_teammate) == [
        "vic",
        "you",
        "another reviewer",
        "another reviewer",
        "a senior reviewer",
        "a staff member",
    ]
    assert labels(qa_lead) == ["vic", "val", "vera", "alice", "you", "olga"]
    assert labels(ops_manager) == ["vic", "val", "vera", "alice", "quinn", "you"]
    assert labels(admin_user) == ["vic", "val", "vera", "alice", "quinn", "olga"]
