"""Bulk decisions: a senior reviewer closes many waiting items of a queue with one decision, capped, audited
under one batch id, skipping what changed meanwhile and never touching items that need more care."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from ops_platform.core.errors import ApplicationError, NotPermitted
from ops_platform.core.models import ApiClient, AuditLog, DecisionLabel, EnforcementAction, Policy, User, WebhookEvent
from queues.bulk import BulkFilter, bulk_candidates, items_bulk_decide
from queues.models import Decision, ItemKind, ItemState, Queue, ReviewItem
from queues.services import item_claim_next
from tests.conftest import PASSWORD
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db


@pytest.fixture
def spam(intake_queue: Queue) -> tuple[Policy, DecisionLabel, EnforcementAction]:
    policy = Policy.objects.create(slug="spam", name="Spam", guidelines="No spam.")
    label = DecisionLabel.objects.create(policy=policy, slug="link-farm", name="Link farm")
    remove = EnforcementAction.objects.create(slug="remove", name="Remove", strength=2)
    policy.enforcement_actions.add(remove)
    intake_queue.policies.add(policy)
    return policy, label, remove


def test_one_decision_closes_every_selected_item_under_one_audited_batch(
    intake_queue: Queue, qa_lead: User, spam: tuple[Policy, DecisionLabel, EnforcementAction],
    django_capture_on_commit_callbacks: Any,
):  # fmt: skip
    policy, label, remove = spam
    ApiClient.objects.create(name="App", source="claims", callback_url="http://127.0.0.1:9/h", webhook_secret="s")
    items = [item_queued(intake_queue, text=f"buy pills {n} http://spam.example") for n in range(5)]

    with django_capture_on_commit_callbacks(execute=False):
        result = items_bulk_decide(
            queue=intake_queue, item_ids=[i.pk for i in items], actor=qa_lead, is_violation=True, policy=policy,
            labels=[label], action=remove, rationale="spam wave from one botnet",
        )  # fmt: skip

    assert sorted(result.decided) == sorted(i.pk for i in items)
    assert set(ReviewItem.objects.filter(pk__in=result.decided).values_list("state", flat=True)) == {"decided"}
    decisions = Decision.objects.filter(batch_id=result.batch_id)
    assert decisions.count() == 5
    assert all(d.is_final and d.reviewer == qa_lead and d.action == remove for d in decisions)
    assert {slug for d in decisions for slug in d.labels.values_list("slug", flat=True)} == {"link-farm"}
    entry = AuditLog.objects.get(action="decision.bulk")
    assert entry.after["batch_id"] == str(result.batch_id)
    assert sorted(entry.after["items"]) == sorted(result.decided)
    assert entry.reason == "spam wave from one botnet"
    events = WebhookEvent.objects.filter(event_type="decision.final")
    assert events.count() == 5
    assert {e.payload["batch_id"] for e in events} == {str(result.batch_id)}


def test_items_claimed_meanwhile_are_skipped_not_decided(intake_queue: Queue, qa_lead: User, reviewer: User):
    items = [item_queued(intake_queue) for _ in range(3)]
    taken = item_claim_next(queue=intake_queue, actor=reviewer)
    assert taken is not None

    result = items_bulk_decide(queue=intake_queue, item_ids=[i.pk for i in items], actor=qa_lead,
                               is_violation=False, rationale="benign")  # fmt: skip

    assert result.skipped == [taken.pk]
    assert ReviewItem.objects.get(pk=taken.pk).state == ItemState.CLAIMED


def test_items_needing_care_are_never_bulk_decided(intake_queue: Queue, qa_lead: User, reviewer: User):
    ordinary = item_queued(intake_queue)
    careful = [
        item_queued(intake_queue, required_reviews=2),
        item_queued(intake_queue, tags=["adjudication"]),
        item_queued(intake_queue, kind=ItemKind.APPEAL),
        item_queued(intake_queue, reserved_for=reviewer),
    ]

    assert list(bulk_candidates(intake_queue, qa_lead, BulkFilter())) == [ordinary]
    result = items_bulk_decide(queue=intake_queue, item_ids=[ordinary.pk, *(i.pk for i in careful)], actor=qa_lead,
                               is_violation=False, rationale="benign")  # fmt: skip
    assert result.decided == [ordinary.pk]
    assert sorted(result.skipped) == sorted(i.pk for i in careful)


def test_filters_narrow_the_candidates(intake_queue: Queue, qa_lead: User):
    wanted = item_queued(intake_queue, text="Cheap PILLS here", tags=["spam-wave"], surface="comments")
    item_queued(intake_queue, text="cheap pills", surface="profile")
    item_queued(intake_queue, text="a holiday photo", tags=["spam-wave"], surface="comments")

    found = bulk_candidates(intake_queue, qa_lead, BulkFilter(text="pills", tag="spam-wave", surface="comments"))

    assert list(found) == [wanted]


def test_the_batch_is_capped_and_needs_a_rationale_and_a_senior(
    intake_queue: Queue, qa_lead: User, reviewer: User, settings: Any
):
    settings.BULK_DECISION_MAX = 2
    ids = [item_queued(intake_queue).pk for _ in range(3)]
    with pytest.raises(ApplicationError, match="At most 2 items"):
        items_bulk_decide(queue=intake_queue, item_ids=ids, actor=qa_lead, is_violation=False, rationale="x")
    with pytest.raises(ApplicationError, match="needs a rationale"):
        items_bulk_decide(queue=intake_queue, item_ids=ids[:2], actor=qa_lead, is_violation=False, rationale=" ")
    with pytest.raises(NotPermitted):
        items_bulk_decide(queue=intake_queue, item_ids=ids[:2], actor=reviewer, is_violation=False, rationale="x")
    assert not Decision.objects.exists()


def test_a_wrong_label_refuses_the_whole_batch(intake_queue: Queue, qa_lead: User,
                                              spam: tuple[Policy, DecisionLabel, EnforcementAction]):  # fmt: skip
    policy, _, remove = spam
    other = Policy.objects.create(slug="hate", name="Hate", guidelines="-")
    foreign = DecisionLabel.objects.create(policy=other, slug="slur", name="Slur")
    ids = [item_queued(intake_queue).pk for _ in range(2)]

    with pytest.raises(ApplicationError, match="label must belong"):
        items_bulk_decide(queue=intake_queue, item_ids=ids, actor=qa_lead, is_violation=True, policy=policy,
                          labels=[foreign], action=remove, rationale="x")  # fmt: skip
    assert set(ReviewItem.objects.filter(pk__in=ids).values_list("state", flat=True)) == {"queued"}


def test_the_bulk_page_is_for_senior_reviewers_and_decides_the_selection(
    intake_queue: Queue, qa_lead: User, reviewer: User
):
    items = [item_queued(intake_queue, text=f"<script>alert({n})</script>") for n in range(3)]
    http = Client()
    http.login(username=reviewer.username, password=PASSWORD)
    assert http.get(reverse("review-bulk", args=["general"])).status_code == 403
    http.login(username=qa_lead.username, password=PASSWORD)

    page = http.get(reverse("review-bulk", args=["general"]))
    assert "&lt;script&gt;alert(0)&lt;/script&gt;" in page.content.decode()
    assert "<script>alert(" not in page.content.decode()
    response = http.post(
        reverse("review-bulk", args=["general"]),
        {"items": [items[0].pk, items[1].pk], "violation": "no", "rationale": "test posts"},
        follow=True,
    )

    assert "2 decided" in response.content.decode()
    states = dict(ReviewItem.objects.filter(pk__in=[i.pk for i in items]).values_list("pk", "state"))
    assert states == {items[0].pk: "decided", items[1].pk: "decided", items[2].pk: "queued"}


@pytest.mark.parametrize("junk", [0, -3, 10**30])
def test_ids_no_item_can_have_are_refused_before_any_query(intake_queue: Queue, qa_lead: User, junk: int):
    waiting = item_queued(intake_queue)

    with pytest.raises(ApplicationError, match="by their ids") as refused:
        items_bulk_decide(
            queue=intake_queue, item_ids=[waiting.pk, junk], actor=qa_lead, is_violation=False, rationale="spam wave"
        )

    assert refused.value.field == "items"
    assert not Decision.objects.exists()
