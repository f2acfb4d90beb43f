"""Bulk decisions: a senior reviewer closes many waiting items of a queue with one decision, capped, audited
under one batch id, skipping what changed meanwhile and never touching items that need more care. Deliberate:
previewed with its count, confirmed by typing the count, a violation only with its action, and revertible for
a while (items back to the queue, clients told)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ops_platform.core.errors import ApplicationError, Conflict, NotFound, NotPermitted
from ops_platform.core.models import (
    ApiClient,
    AuditLog,
    DecisionLabel,
    EnforcementAction,
    Policy,
    Role,
    Team,
    User,
    WebhookEvent,
)
from ops_platform.core.services import user_create
from queues.bulk import BulkResult, decision_batch_revert, items_bulk_decide, items_bulk_preview
from queues.models import Decision, ItemEvent, ItemKind, ItemState, Queue, ReviewItem
from queues.selectors import BulkFilter, bulk_candidates, item_final_decision
from queues.services import decision_correct, decision_record, item_claim_next
from tests.conftest import PASSWORD
from tests.queues.factories import bulk_decide, item_queued

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
    intake_queue: Queue,
    qa_lead: User,
    spam: tuple[Policy, DecisionLabel, EnforcementAction],
    django_capture_on_commit_callbacks: Any,
):
    policy, label, remove = spam
    ApiClient.objects.create(name="App", source="claims", callback_url="http://127.0.0.1:9/h", webhook_secret="s")
    items = [item_queued(intake_queue, text=f"buy pills {n} http://spam.example") for n in range(5)]

    with django_capture_on_commit_callbacks(execute=False):
        result = bulk_decide(
            queue=intake_queue,
            item_ids=[i.pk for i in items],
            actor=qa_lead,
            is_violation=True,
            policy=policy,
            labels=[label],
            action=remove,
            rationale="spam wave from one botnet",
        )

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


def test_items_claimed_after_the_preview_are_skipped_not_decided(intake_queue: Queue, qa_lead: User, reviewer: User):
    items = [item_queued(intake_queue) for _ in range(3)]
    decision: dict[str, Any] = {"is_violation": False, "rationale": "benign"}
    preview = items_bulk_preview(queue=intake_queue, item_ids=[i.pk for i in items], actor=qa_lead, **decision)
    taken = item_claim_next(queue=intake_queue, actor=reviewer)
    assert taken is not None

    result = items_bulk_decide(
        queue=intake_queue,
        item_ids=preview.item_ids,
        actor=qa_lead,
        confirmation=preview.confirmation,
        confirmed_count=3,
        **decision,
    )

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
    selected = [ordinary.pk, *(i.pk for i in careful)]
    preview = items_bulk_preview(
        queue=intake_queue, item_ids=selected, actor=qa_lead, is_violation=False, rationale="benign"
    )
    assert (preview.item_ids, preview.left_out) == ([ordinary.pk], sorted(i.pk for i in careful))
    result = bulk_decide(queue=intake_queue, item_ids=selected, actor=qa_lead, is_violation=False, rationale="benign")
    assert result.decided == [ordinary.pk]


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
        items_bulk_preview(queue=intake_queue, item_ids=ids, actor=qa_lead, is_violation=False, rationale="x")
    with pytest.raises(ApplicationError, match="needs a rationale"):
        items_bulk_preview(queue=intake_queue, item_ids=ids[:2], actor=qa_lead, is_violation=False, rationale=" ")
    with pytest.raises(NotPermitted):
        items_bulk_preview(queue=intake_queue, item_ids=ids[:2], actor=reviewer, is_violation=False, rationale="x")
    with pytest.raises(ApplicationError, match="At most 2 items"):
        items_bulk_decide(
            queue=intake_queue,
            item_ids=ids,
            actor=qa_lead,
            is_violation=False,
            rationale="x",
            confirmation="",
            confirmed_count=3,
        )
    assert not Decision.objects.exists()


def test_a_wrong_label_refuses_the_whole_batch(
    intake_queue: Queue, qa_lead: User, spam: tuple[Policy, DecisionLabel, EnforcementAction]
):
    policy, _, remove = spam
    other = Policy.objects.create(slug="hate", name="Hate", guidelines="-")
    foreign = DecisionLabel.objects.create(policy=other, slug="slur", name="Slur")
    ids = [item_queued(intake_queue).pk for _ in range(2)]

    with pytest.raises(ApplicationError, match="label must belong"):
        items_bulk_preview(
            queue=intake_queue,
            item_ids=ids,
            actor=qa_lead,
            is_violation=True,
            policy=policy,
            labels=[foreign],
            action=remove,
            rationale="x",
        )
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
    selection = {"items": [items[0].pk, items[1].pk], "violation": "no", "rationale": "test posts"}
    preview = http.post(reverse("review-bulk", args=["general"]), selection)
    assert preview.status_code == 200
    confirmation = preview.context["preview"].confirmation
    response = http.post(
        reverse("review-bulk", args=["general"]),
        {**selection, "step": "confirm", "confirmation": confirmation, "confirmed_count": "2"},
        follow=True,
    )

    assert "2 decided" in response.content.decode()
    states = dict(ReviewItem.objects.filter(pk__in=[i.pk for i in items]).values_list("pk", "state"))
    assert states == {items[0].pk: "decided", items[1].pk: "decided", items[2].pk: "queued"}


# --- deliberate: previewed, confirmed with the count, a violation with its action ------------------------


def test_a_batch_is_decided_only_as_previewed_and_confirmed_with_its_count(
    intake_queue: Queue,
    qa_lead: User,
    in_house_team: Team,
    spam: tuple[Policy, DecisionLabel, EnforcementAction],
    settings: Any,
):
    policy, label, remove = spam
    items = [item_queued(intake_queue) for _ in range(3)]
    ids = [i.pk for i in items]
    decision: dict[str, Any] = {
        "is_violation": True,
        "policy": policy,
        "labels": [label],
        "action": remove,
        "rationale": "spam wave",
    }
    preview = items_bulk_preview(queue=intake_queue, item_ids=ids, actor=qa_lead, **decision)
    assert (preview.count, preview.item_ids) == (3, ids)
    assert not Decision.objects.exists()  # a preview writes nothing

    def decide(**changes: Any) -> BulkResult:
        arguments = {
            "queue": intake_queue,
            "item_ids": ids,
            "actor": qa_lead,
            "confirmation": preview.confirmation,
            "confirmed_count": 3,
            **decision,
            **changes,
        }
        return items_bulk_decide(**arguments)

    refusals = [
        ({"confirmed_count": 2}, "confirmed_count"),
        ({"confirmed_count": None}, "confirmed_count"),
        ({"confirmation": ""}, "confirmation"),
        ({"confirmation": "forged:token"}, "confirmation"),
        ({"item_ids": [*ids, item_queued(intake_queue).pk], "confirmed_count": 4}, "confirmation"),
        ({"is_violation": False, "policy": None, "labels": [], "action": None}, "confirmation"),
        ({"rationale": "something else"}, "confirmation"),
    ]
    for changes, field in refusals:
        with pytest.raises(ApplicationError) as refused:
            decide(**changes)
        assert refused.value.field == field, changes
    colleague = user_create(
        actor="test", username="rosa", password=PASSWORD, roles=[Role.SENIOR_REVIEWER], team=in_house_team
    )
    theirs = items_bulk_preview(queue=intake_queue, item_ids=ids, actor=colleague, **decision)
    with pytest.raises(ApplicationError, match="differ from the preview"):
        decide(confirmation=theirs.confirmation)  # someone else's confirmation
    settings.BULK_DECISION_CONFIRM_WITHIN = timedelta(seconds=-1)
    with pytest.raises(Conflict, match="expired"):
        decide()
    assert not Decision.objects.exists()
    assert set(ReviewItem.objects.filter(pk__in=ids).values_list("state", flat=True)) == {ItemState.QUEUED}

    settings.BULK_DECISION_CONFIRM_WITHIN = timedelta(minutes=15)
    assert sorted(decide().decided) == ids
    assert AuditLog.objects.get(action="decision.bulk").after["confirmed_count"] == 3


def test_a_violation_decided_in_bulk_needs_its_enforcement_action(
    intake_queue: Queue, qa_lead: User, spam: tuple[Policy, DecisionLabel, EnforcementAction]
):
    policy, label, _ = spam
    ids = [item_queued(intake_queue).pk for _ in range(2)]

    with pytest.raises(ApplicationError, match="needs its enforcement action") as refused:
        items_bulk_preview(
            queue=intake_queue,
            item_ids=ids,
            actor=qa_lead,
            is_violation=True,
            policy=policy,
            labels=[label],
            rationale="spam",
        )
    assert refused.value.field == "action"
    with pytest.raises(ApplicationError, match="needs its enforcement action"):
        items_bulk_decide(
            queue=intake_queue,
            item_ids=ids,
            actor=qa_lead,
            is_violation=True,
            policy=policy,
            rationale="spam",
            confirmation="x",
            confirmed_count=2,
        )
    assert not Decision.objects.exists()


# --- reverting a batch -----------------------------------------------------------------------------------


def test_a_batch_is_reverted_within_the_window_items_reopen_and_clients_are_told(
    intake_queue: Queue,
    qa_lead: User,
    reviewer: User,
    spam: tuple[Policy, DecisionLabel, EnforcementAction],
    django_capture_on_commit_callbacks: Any,
):
    policy, label, remove = spam
    ApiClient.objects.create(name="App", source="claims", callback_url="http://127.0.0.1:9/h", webhook_secret="s")
    items = [item_queued(intake_queue) for _ in range(3)]
    with django_capture_on_commit_callbacks(execute=False):
        batch = bulk_decide(
            queue=intake_queue,
            item_ids=[i.pk for i in items],
            actor=qa_lead,
            is_violation=True,
            policy=policy,
            labels=[label],
            action=remove,
            rationale="looked like spam",
        )
        bulk_decisions = list(Decision.objects.filter(batch_id=batch.batch_id).order_by("item_id"))

        result = decision_batch_revert(batch_id=str(batch.batch_id), actor=qa_lead, reason="they were real ads")

    assert (sorted(result.reverted), result.kept) == (sorted(i.pk for i in items), [])
    for item, decided in zip(items, bulk_decisions, strict=True):
        item.refresh_from_db()
        assert (item.state, item.decided_at, item.queue) == (ItemState.QUEUED, None, intake_queue)
        assert item_final_decision(item=item) is None  # nothing stands for it any more
        reversal = decided.superseded_by  # type: ignore[attr-defined]
        assert (reversal.is_reversal, reversal.is_final, reversal.reviewer) == (True, False, qa_lead)
        assert ItemEvent.objects.filter(item=item, event="reverted", to_state=ItemState.QUEUED).count() == 1
    reverted = WebhookEvent.objects.filter(event_type="decision.reverted")
    assert sorted(e.payload["decision_id"] for e in reverted) == [d.pk for d in bulk_decisions]
    assert {e.payload["batch_id"] for e in reverted} == {str(batch.batch_id)}
    entry = AuditLog.objects.get(action="decision.bulk_revert")
    assert (entry.actor, entry.reason, entry.before["batch_id"]) == (qa_lead, "they were real ads", str(batch.batch_id))
    assert sorted(entry.after["reverted"]) == sorted(i.pk for i in items)
    with pytest.raises(Conflict, match="already reverted"):
        decision_batch_revert(batch_id=batch.batch_id, actor=qa_lead, reason="again")

    # A person decides a reopened item; that decision is the one in force, and the client hears it.
    claimed = item_claim_next(queue=intake_queue, actor=reviewer)
    assert claimed is not None
    with django_capture_on_commit_callbacks(execute=False):
        again = decision_record(item=claimed, actor=reviewer, is_violation=False).decision
    assert item_final_decision(item=claimed) == again
    assert WebhookEvent.objects.filter(event_type="decision.final", payload__decision_id=again.pk).exists()


def test_a_batch_is_not_reverted_late_without_a_reason_or_by_someone_without_the_right(
    intake_queue: Queue, qa_lead: User, reviewer: User, settings: Any
):
    ids = [item_queued(intake_queue).pk for _ in range(2)]
    batch = bulk_decide(queue=intake_queue, item_ids=ids, actor=qa_lead, is_violation=False, rationale="benign")
    late = timezone.now() + settings.BULK_DECISION_REVERT_WINDOW + timedelta(minutes=1)

    with pytest.raises(Conflict, match="can no longer be reverted") as refused:
        decision_batch_revert(batch_id=batch.batch_id, actor=qa_lead, reason="oops", at=late)
    assert refused.value.field == "batch"
    with pytest.raises(ApplicationError, match="Say why") as refused:
        decision_batch_revert(batch_id=batch.batch_id, actor=qa_lead, reason="  ")
    assert refused.value.field == "reason"
    with pytest.raises(NotPermitted):
        decision_batch_revert(batch_id=batch.batch_id, actor=reviewer, reason="oops")
    with pytest.raises(NotFound):
        decision_batch_revert(batch_id="00000000-0000-0000-0000-000000000000", actor=qa_lead, reason="oops")
    with pytest.raises(ApplicationError, match="not a batch id"):
        decision_batch_revert(batch_id="²", actor=qa_lead, reason="oops")

    assert set(ReviewItem.objects.filter(pk__in=ids).values_list("state", flat=True)) == {ItemState.DECIDED}
    assert not Decision.objects.filter(is_reversal=True).exists()
    assert not AuditLog.objects.filter(action="decision.bulk_revert").exists()


def test_items_corrected_or_appealed_since_stay_as_they_are(
    intake_queue: Queue, qa_lead: User, spam: tuple[Policy, DecisionLabel, EnforcementAction]
):
    policy, _, remove = spam
    corrected, appealed, plain = (item_queued(intake_queue) for _ in range(3))
    batch = bulk_decide(
        queue=intake_queue,
        item_ids=[corrected.pk, appealed.pk, plain.pk],
        actor=qa_lead,
        is_violation=True,
        policy=policy,
        action=remove,
        rationale="spam",
    )
    decision_correct(item=corrected, actor=qa_lead, is_violation=False, policy=None, action=None, rationale="fine")
    item_queued(intake_queue, kind=ItemKind.APPEAL, appeal_of=appealed, source=appealed.source)

    result = decision_batch_revert(batch_id=batch.batch_id, actor=qa_lead, reason="wrong policy")

    assert (result.reverted, result.kept) == ([plain.pk], sorted([corrected.pk, appealed.pk]))
    states = dict(ReviewItem.objects.filter(pk__in=[corrected.pk, appealed.pk, plain.pk]).values_list("pk", "state"))
    assert states == {corrected.pk: "decided", appealed.pk: "decided", plain.pk: "queued"}


# --- over HTTP ---------------------------------------------------------------------------------------------


def test_the_page_previews_the_count_and_the_items_and_decides_only_on_the_typed_count(
    intake_queue: Queue, qa_lead: User
):
    items = [item_queued(intake_queue, text=f"<b>wave {n}</b>") for n in range(3)]
    http = Client()
    http.login(username=qa_lead.username, password=PASSWORD)
    url = reverse("review-bulk", args=["general"])
    page = http.get(url).content.decode()
    assert 'value="no" required checked' not in page
    assert 'value="no" required>' in page  # no verdict is chosen for the reviewer
    selection = {"items": [items[0].pk, items[2].pk], "violation": "no", "rationale": "two\r\nlines"}

    preview = http.post(url, selection)

    body = preview.content.decode()
    assert preview.status_code == 200
    assert "Decide 2 items in General?" in body
    assert "&lt;b&gt;wave 0&lt;/b&gt;" in body
    assert "&lt;b&gt;wave 2&lt;/b&gt;" in body
    assert "wave 1" not in body
    assert "Type 2 to confirm" in body
    assert not Decision.objects.exists()
    confirmation = preview.context["preview"].confirmation
    confirm = {**selection, "rationale": "two\nlines", "step": "confirm", "confirmation": confirmation}
    wrong = http.post(url, {**confirm, "confirmed_count": "3"})
    assert wrong.status_code == 400
    assert "Type the number of items previewed (2)" in wrong.content.decode()
    assert "confirmed_count" in wrong.content.decode()
    forged = http.post(url, {**confirm, "confirmed_count": "2", "confirmation": "x"})
    assert forged.status_code == 400
    assert not Decision.objects.exists()

    done = http.post(url, {**confirm, "confirmed_count": "2"}, follow=True)

    assert "2 decided" in done.content.decode()
    assert sorted(Decision.objects.values_list("item_id", flat=True)) == [items[0].pk, items[2].pk]
    assert 'data-testid="bulk-batches"' in done.content.decode()


@pytest.mark.parametrize(
    ("post", "field"),
    [
        ({"violation": ""}, "violation"),
        ({"violation": "yes"}, "action"),
        ({"items": ["²", "1" * 30, "abc"]}, "items"),
        ({"rationale": ""}, "rationale"),
    ],
)
def test_the_page_refuses_a_batch_without_a_verdict_an_action_or_a_selection_naming_the_field(
    intake_queue: Queue,
    qa_lead: User,
    spam: tuple[Policy, DecisionLabel, EnforcementAction],
    post: dict[str, Any],
    field: str,
):
    policy, _, _ = spam
    item = item_queued(intake_queue)
    http = Client()
    http.login(username=qa_lead.username, password=PASSWORD)
    form = {"items": [item.pk], "violation": "no", "policy": policy.pk, "rationale": "x", **post}

    response = http.post(reverse("review-bulk", args=["general"]), form)

    assert response.status_code == 400
    assert f"({field})" in response.content.decode()
    assert not Decision.objects.exists()


def test_a_recent_batch_is_reverted_from_the_page(intake_queue: Queue, qa_lead: User, reviewer: User):
    ids = [item_queued(intake_queue).pk for _ in range(2)]
    batch = bulk_decide(queue=intake_queue, item_ids=ids, actor=qa_lead, is_violation=False, rationale="benign")
    http = Client()
    http.login(username=qa_lead.username, password=PASSWORD)
    url = reverse("review-bulk", args=["general"])
    assert str(batch.batch_id) in http.get(url).content.decode()

    no_reason = http.post(url, {"step": "revert", "batch": str(batch.batch_id), "reason": ""})
    assert no_reason.status_code == 400
    done = http.post(url, {"step": "revert", "batch": str(batch.batch_id), "reason": "wrong wave"}, follow=True)

    assert f"Batch {batch.batch_id} reverted: 2 back in the queue" in done.content.decode()
    assert set(ReviewItem.objects.filter(pk__in=ids).values_list("state", flat=True)) == {ItemState.QUEUED}
    assert "reverted by user:quinn" in done.content.decode()
    again = http.post(url, {"step": "revert", "batch": str(batch.batch_id), "reason": "again"})
    assert again.status_code == 409
    http.login(username=reviewer.username, password=PASSWORD)
    assert http.post(url, {"step": "revert", "batch": str(batch.batch_id), "reason": "x"}).status_code == 403


@pytest.mark.parametrize("junk", [0, -3, 10**30])
def test_ids_no_item_can_have_are_refused_before_any_query(intake_queue: Queue, qa_lead: User, junk: int):
    waiting = item_queued(intake_queue)

    with pytest.raises(ApplicationError, match="by their ids") as refused:
        items_bulk_preview(
            queue=intake_queue, item_ids=[waiting.pk, junk], actor=qa_lead, is_violation=False, rationale="spam wave"
        )

    assert refused.value.field == "items"
    assert not Decision.objects.exists()
