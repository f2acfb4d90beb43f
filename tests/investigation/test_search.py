"""The investigation search: scope (a vendor's people find only their queues' items, through the service, the page
and the API), content only for the roles that read it, full-text on PostgreSQL and the substring fallback on
SQLite, the audit entry of every search, and bad filters refused naming the field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from investigation.selectors import SearchFilter, search_scope_for
from investigation.services import SEARCH_ACTION, items_search
from ops_platform.core.errors import NotPermitted
from ops_platform.core.models import AuditLog, Role, Team, User, Vendor
from ops_platform.core.services import user_create
from queues.models import Account, ItemSearchText, ItemState, Queue, ReviewItem
from routing.models import Backend, ClassifierScore
from tests.conftest import PASSWORD
from tests.qa.factories import decided, policy_with_action
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db


@dataclass
class World:
    general: Queue
    queue_a: Queue
    queue_b: Queue
    in_house: ReviewItem
    of_a: ReviewItem
    of_b: ReviewItem
    senior_a: User  # a senior reviewer of vendor A


@pytest.fixture
def world(reviewer: User, vendor_a: Vendor, vendor_b: Vendor) -> World:
    general = Queue.objects.create(slug="general", name="General")
    queue_a = Queue.objects.create(slug="vendor-a-work", name="Vendor A work")
    queue_b = Queue.objects.create(slug="vendor-b-work", name="Vendor B work")
    queue_a.allowed_vendors.add(vendor_a)
    queue_b.allowed_vendors.add(vendor_b)
    senior_a = user_create(
        actor="test",
        username="sena",
        password=PASSWORD,
        roles=[Role.SENIOR_REVIEWER],
        team=Team.objects.create(slug="vendor-a-seniors", name="A seniors", vendor=vendor_a),
    )
    return World(
        general=general,
        queue_a=queue_a,
        queue_b=queue_b,
        in_house=item_queued(general, text="Crimson lighthouse scam in-house", author_ref="u-1"),
        of_a=item_queued(queue_a, text="crimson lighthouse scam for vendor A", author_ref="u-1"),
        of_b=item_queued(queue_b, text="crimson lighthouse scam for vendor B", author_ref="u-2"),
        senior_a=senior_a,
    )


def _as(user: User) -> Client:
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def _ids(user: User, **filters: object) -> list[int]:
    return [row.item.pk for row in items_search(actor=user, search=SearchFilter(**filters)).rows]  # type: ignore[arg-type]


# --- scope ------------------------------------------------------------------------------------------------------


def test_a_vendor_senior_finds_only_their_vendor_queues_items_through_the_service(world: World, qa_lead: User):
    assert _ids(world.senior_a, text="lighthouse") == [world.of_a.pk]
    assert _ids(world.senior_a, item_id=world.of_b.pk) == []
    assert _ids(world.senior_a, external_id=world.in_house.external_id) == []
    assert _ids(world.senior_a, source="claims", author="u-2") == []
    assert _ids(world.senior_a, queue_id=world.queue_b.pk) == []
    # In-house QA sees every queue.
    assert _ids(qa_lead, text="lighthouse") == [world.of_b.pk, world.of_a.pk, world.in_house.pk]


def test_a_vendor_senior_finds_nothing_outside_scope_on_the_page_or_its_items(world: World):
    client = _as(world.senior_a)
    page = client.get("/investigation/", {"q": "lighthouse"})
    assert page.status_code == 200
    body = page.content.decode()
    assert "for vendor A" in body
    assert "for vendor B" not in body
    assert "in-house" not in body
    assert client.get(f"/investigation/items/{world.of_a.pk}/").status_code == 200
    for foreign in (world.of_b, world.in_house):
        refused = client.get(f"/investigation/items/{foreign.pk}/")
        assert refused.status_code == 404
        assert "lighthouse" not in refused.content.decode()
    # A queue outside the scope is refused like a queue that does not exist (no oracle), naming the field.
    refused = client.get("/investigation/", {"queue": world.queue_b.pk})
    assert refused.status_code == 400
    assert 'data-field="queue"' in refused.content.decode()
    assert world.queue_b.name not in refused.content.decode()


def test_a_vendor_senior_finds_nothing_outside_scope_through_the_api(world: World):
    client = _as(world.senior_a)
    answer = client.get("/api/v1/search/items", {"q": "lighthouse"})
    assert answer.status_code == 200
    assert [row["id"] for row in answer.json()["items"]] == [world.of_a.pk]
    assert client.get("/api/v1/search/items", {"item": world.of_b.pk}).json()["items"] == []
    refused = client.get("/api/v1/search/items", {"queue": world.queue_b.pk})
    assert refused.status_code == 400
    assert [e["field"] for e in refused.json()["errors"]] == ["queue"]


def test_plain_reviewers_and_api_keys_may_not_search(world: World, reviewer: User):
    with pytest.raises(NotPermitted):
        items_search(actor=reviewer, search=SearchFilter(text="lighthouse"))
    assert _as(reviewer).get("/investigation/", {"q": "lighthouse"}).status_code == 403
    assert _as(reviewer).get("/api/v1/search/items", {"q": "lighthouse"}).status_code == 403
    assert Client().get("/api/v1/search/items").status_code == 401
    assert not AuditLog.objects.filter(action=SEARCH_ACTION).exists()


# --- content ----------------------------------------------------------------------------------------------------


def test_policy_staff_find_items_without_their_content(world: World, policy_staff: User):
    assert search_scope_for(policy_staff).content is False
    results = items_search(actor=policy_staff, search=SearchFilter(text="lighthouse"))
    assert [r.excerpt for r in results.rows] == [None, None, None]
    client = _as(policy_staff)
    page = client.get("/investigation/", {"q": "lighthouse"}).content.decode()
    assert page.count("data-item=") == 3
    assert "scam" not in page
    api = client.get("/api/v1/search/items", {"q": "lighthouse"}).json()
    assert api["content_shown"] is False
    assert "scam" not in json.dumps(api)
    assert all("excerpt" not in row for row in api["items"])
    opened = client.get(f"/investigation/items/{world.of_b.pk}/").content.decode()
    assert "scam" not in opened
    assert 'data-testid="no-content"' in opened


def test_qa_and_ops_see_the_content(world: World, qa_lead: User, ops_manager: User):
    for person in (qa_lead, ops_manager):
        client = _as(person)
        page = client.get("/investigation/", {"q": "lighthouse"}).content.decode()
        assert "crimson lighthouse scam for vendor B" in page
        excerpts = [row["excerpt"] for row in client.get("/api/v1/search/items", {"q": "crimson"}).json()["items"]]
        assert "crimson lighthouse scam for vendor A" in excerpts


# --- the filters --------------------------------------------------------------------------------------------------


def test_full_text_matches_words_in_any_case_and_not_fragments(world: World, qa_lead: User):
    item_queued(world.general, text="the LIGHTHOUSES are fine")
    assert _ids(qa_lead, text="CRIMSON scam") == [world.of_b.pk, world.of_a.pk, world.in_house.pk]
    assert _ids(qa_lead, text="vendor B") == [world.of_b.pk]
    if connection.vendor == "postgresql":
        # Whole words (no stemming: items come in every language), websearch syntax, the GIN index used.
        assert _ids(qa_lead, text="lighthouse") == [world.of_b.pk, world.of_a.pk, world.in_house.pk]
        assert _ids(qa_lead, text='"lighthouse scam" -in-house') == [world.of_b.pk, world.of_a.pk]
        assert _ids(qa_lead, text="ighthous") == []
        with connection.cursor() as cursor:
            # The query can be answered from the GIN index: with scans that read whole tables or indexes priced
            # out, the plan takes the vectors' matches from it. (Index scans too: with statistics other tests left,
            # the planner may walk both primary keys and test each vector, a plan this test is not about.)
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_indexscan = off")
            qs = ReviewItem.objects.all()
            from investigation.sql import text_matching

            plan = text_matching(qs, "lighthouse").explain()
        assert "item_search_vector_idx" in plan
    else:
        # The SQLite fallback: every word a case-insensitive substring.
        assert _ids(qa_lead, text="lighthouse") == [
            i.pk for i in ReviewItem.objects.filter(text__icontains="lighthouse").order_by("-pk")
        ]
        assert _ids(qa_lead, text="ighthous") != []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the search vectors exist on PostgreSQL only")
def test_the_search_vector_is_written_with_the_item_follows_its_text_and_goes_with_it(world: World, qa_lead: User):
    item = item_queued(world.general, text="violet harbour")
    assert _ids(qa_lead, text="harbour") == [item.pk]
    # Moving the item (triage, claim, decision) leaves its vector as it was: one row, written once.
    ReviewItem.objects.filter(pk=item.pk).update(state=ItemState.CLAIMED)
    assert ItemSearchText.objects.filter(item=item).count() == 1
    ReviewItem.objects.filter(pk=item.pk).update(text="amber harbour")
    assert _ids(qa_lead, text="violet") == []
    assert _ids(qa_lead, text="amber") == [item.pk]
    # A purge or an erasure empties the text: the words go with it.
    ReviewItem.objects.filter(pk=item.pk).update(text="")
    assert not ItemSearchText.objects.filter(item=item).exists()
    assert _ids(qa_lead, text="harbour") == []
    # Items without text have no vector; deleting an item deletes its vector.
    assert not ItemSearchText.objects.filter(item=item_queued(world.general, text="")).exists()
    gone = item_queued(world.general, text="brief harbour")
    gone.delete()
    assert not ItemSearchText.objects.filter(item_id=gone.pk).exists()


def test_filters_by_decision_policy_dates_scores_and_author(world: World, qa_lead: User, reviewer: User):
    policy = policy_with_action("fraud", "Fraud")
    done = Queue.objects.create(slug="done", name="Done")  # empty: claim-next takes the item just made
    violation = decided(done, reviewer, text="crimson decided", policy=policy).item
    fine = decided(done, reviewer, text="crimson fine").item
    old = item_queued(world.general, text="crimson old", received_ago=timedelta(days=10))
    ClassifierScore.objects.create(item=world.in_house, backend=Backend.LOCAL, scores={"hate": 0.9, "violence": 0.1})
    ClassifierScore.objects.create(item=world.of_a, backend=Backend.LOCAL, scores={"hate": 0.2})

    assert _ids(qa_lead, decision="violation") == [violation.pk]
    assert _ids(qa_lead, decision="no_violation") == [fine.pk]
    assert violation.pk not in _ids(qa_lead, decision="none")
    assert world.in_house.pk in _ids(qa_lead, decision="none")
    assert _ids(qa_lead, policy_id=policy.pk) == [violation.pk]
    today = timezone.localdate()
    assert old.pk not in _ids(qa_lead, received_from=today - timedelta(days=1))
    assert _ids(qa_lead, received_to=today - timedelta(days=9)) == [old.pk]
    assert _ids(qa_lead, score_category="hate", score_min=0.5) == [world.in_house.pk]
    assert _ids(qa_lead, score_category="hate", score_max=0.5) == [world.of_a.pk]
    assert _ids(qa_lead, source="claims", author="u-1") == [world.of_a.pk, world.in_house.pk]


def test_pages_are_bounded_and_continue_by_keyset(world: World, qa_lead: User):
    results = items_search(actor=qa_lead, search=SearchFilter(text="lighthouse", limit=2))
    assert [r.item.pk for r in results.rows] == [world.of_b.pk, world.of_a.pk]
    assert results.next_before == world.of_a.pk
    rest = items_search(actor=qa_lead, search=SearchFilter(text="lighthouse", limit=2, before=results.next_before))
    assert [r.item.pk for r in rest.rows] == [world.in_house.pk]
    assert rest.next_before is None


def test_results_link_the_author_to_their_account(world: World, qa_lead: User):
    row = items_search(actor=qa_lead, search=SearchFilter(item_id=world.of_a.pk)).rows[0]
    followed = _as(qa_lead).get(row.account_url)
    assert followed.status_code == 200
    assert f'data-item="{world.of_a.pk}"' in followed.content.decode()
    assert f'data-item="{world.of_b.pk}"' not in followed.content.decode()


def test_an_author_with_an_account_links_to_the_account_page(world: World, qa_lead: User):
    account = Account.objects.create(source=world.of_a.source, ref=world.of_a.author_ref, first_seen_at=timezone.now())
    row = items_search(actor=qa_lead, search=SearchFilter(item_id=world.of_a.pk)).rows[0]

    assert row.account_url == reverse("accounts:detail", args=[account.pk])
    assert _as(qa_lead).get(row.account_url).status_code == 200


# --- audit ------------------------------------------------------------------------------------------------------


def test_every_search_is_audited_with_who_and_what(world: World, qa_lead: User, policy_staff: User):
    _as(qa_lead).get("/investigation/", {"q": "lighthouse", "source": "claims"})
    _as(policy_staff).get("/api/v1/search/items", {"item": world.of_a.pk})
    _as(policy_staff).get(f"/investigation/items/{world.of_a.pk}/")

    page, api = AuditLog.objects.filter(action=SEARCH_ACTION).order_by("id")
    assert (page.actor, page.after["via"], page.after["filter"]) == (
        qa_lead,
        "page",
        {"q": "lighthouse", "source": "claims"},
    )
    assert page.after["found"] == [world.of_b.pk, world.of_a.pk, world.in_house.pk]
    assert (api.actor, api.after["via"], api.after["filter"], api.after["content_shown"]) == (
        policy_staff,
        "api",
        {"item": str(world.of_a.pk)},
        False,
    )
    opened = AuditLog.objects.get(action="investigation.item_open")
    assert (opened.actor, opened.target_id) == (policy_staff, str(world.of_a.pk))


# --- refusals ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"item": "abc"}, "item"),
        ({"item": "9" * 30}, "item"),
        ({"q": "x" * 201}, "q"),
        ({"received_from": "2026-13-01"}, "received_from"),
        ({"received_from": "2026-02-02", "received_to": "2026-02-01"}, "received_to"),
        ({"score_category": "hate", "score_min": "0.9", "score_max": "0.1"}, "score_max"),
        ({"score_min": "0.5"}, "score_min"),
        ({"score_category": "hate", "score_min": "nan"}, "score_min"),
        ({"score_category": "nope", "score_min": "0.5"}, "score_category"),
        ({"decision": "maybe"}, "decision"),
        ({"policy": "-7"}, "policy"),
        ({"before": "²"}, "before"),
    ],
)
def test_bad_filters_are_refused_naming_the_field(world: World, qa_lead: User, params: dict[str, str], field: str):
    client = _as(qa_lead)
    page = client.get("/investigation/", params)
    assert page.status_code == 400
    assert f'data-field="{field}"' in page.content.decode()
    api = client.get("/api/v1/search/items", params)
    assert api.status_code == 400
    assert field in [e["field"] for e in api.json()["errors"]]
    assert not AuditLog.objects.filter(action=SEARCH_ACTION).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the GIN index and the planner's estimates")
def test_common_words_walk_the_id_index_and_rare_ones_use_gin_with_the_same_answer(world: World, qa_lead: User):
    from investigation.sql import walk_newest_first

    now = timezone.now()
    ReviewItem.objects.bulk_create(
        ReviewItem(
            source="bulk",
            external_id=f"b{n}",
            text=f"everywhere filler {'needle' if n % 500 == 0 else 'hay'}",
            received_at=now,
            queue=world.general,
        )
        for n in range(3000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE queues_reviewitem")
        cursor.execute("ANALYZE queues_itemsearchtext")  # the matches are estimated from the vectors' statistics
    assert walk_newest_first("everywhere")
    assert not walk_newest_first("needle")
    newest = list(ReviewItem.objects.filter(text__contains="needle").order_by("-pk").values_list("pk", flat=True))
    assert _ids(qa_lead, text="needle") == newest
    assert len(newest) == 6
    everywhere = list(
        ReviewItem.objects.filter(text__contains="everywhere").order_by("-pk").values_list("pk", flat=True)
    )
    assert _ids(qa_lead, text="everywhere") == everywhere[:50]
