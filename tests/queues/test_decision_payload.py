"""The ``decision.final`` payload is one contract whoever decides: a reviewer, a bulk batch or a rule send the same
fields for the same decision, apart from who decided (``decided_by``) and what only they have (``batch_id``,
``rule``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from django.utils import timezone

from ops_platform.core.models import ApiClient, DecisionLabel, EnforcementAction, Policy, User, WebhookEvent
from queues.models import ItemState, Queue, ReviewItem
from queues.services import decision_final_payload, decision_record, item_claim, items_auto_action
from tests.queues.factories import bulk_decide, item_queued

pytestmark = pytest.mark.django_db

COMMON = {
    "item_id",
    "external_id",
    "source",
    "kind",
    "decision_id",
    "decided_by",
    "is_violation",
    "policy",
    "policy_version",
    "labels",
    "action",
    "decided_at",
}
PER_ITEM = {"item_id", "external_id", "decision_id", "decided_at", "decided_by", "batch_id", "rule"}


@pytest.fixture
def spam(intake_queue: Queue) -> tuple[Policy, DecisionLabel, EnforcementAction]:
    policy = Policy.objects.create(slug="spam", name="Spam", guidelines="No spam.")
    label = DecisionLabel.objects.create(policy=policy, slug="link-farm", name="Link farm")
    remove = EnforcementAction.objects.create(slug="remove", name="Remove", strength=2)
    policy.enforcement_actions.add(remove)
    intake_queue.policies.add(policy)
    return policy, label, remove


def test_a_reviewer_a_bulk_batch_and_a_rule_send_the_same_payload_for_the_same_decision(
    intake_queue: Queue,
    reviewer: User,
    qa_lead: User,
    spam: tuple[Policy, DecisionLabel, EnforcementAction],
    django_capture_on_commit_callbacks: Any,
) -> None:
    policy, label, remove = spam
    ApiClient.objects.create(name="App", source="claims", callback_url="http://127.0.0.1:9/h", webhook_secret="s")
    by_reviewer, in_bulk = item_queued(intake_queue), item_queued(intake_queue)
    by_rule = ReviewItem.objects.create(source="claims", external_id="auto-1", received_at=timezone.now())
    decision: dict[str, Any] = {"is_violation": True, "policy": policy, "labels": [label], "action": remove}

    with django_capture_on_commit_callbacks(execute=False):
        item_claim(item=by_reviewer, actor=reviewer)
        decided = decision_record(item=by_reviewer, actor=reviewer, rationale="spam", **decision).decision
        batch = bulk_decide(queue=intake_queue, item_ids=[in_bulk.pk], actor=qa_lead, rationale="spam", **decision)
        items_auto_action(
            item_ids=[by_rule.pk],
            actor="rules:spam-auto",
            policy=policy,
            action=remove,
            reason="auto-action rule 'spam-auto'",
            data={"rule": "spam-auto", "label_slug": "link-farm"},
        )

    assert ReviewItem.objects.get(pk=by_rule.pk).state == ItemState.AUTO_ACTIONED
    sent = {e.payload["item_id"]: e.payload for e in WebhookEvent.objects.filter(event_type="decision.final")}
    reviewer_payload, bulk_payload, rule_payload = sent[by_reviewer.pk], sent[in_bulk.pk], sent[by_rule.pk]
    assert set(reviewer_payload) == COMMON
    assert set(bulk_payload) == COMMON | {"batch_id"}
    assert set(rule_payload) == COMMON | {"rule"}
    outcome = {k: v for k, v in reviewer_payload.items() if k not in PER_ITEM}
    assert outcome == {
        "source": "claims",
        "kind": "content",
        "is_violation": True,
        "policy": "spam",
        "policy_version": 1,
        "labels": ["link-farm"],
        "action": "remove",
    }
    assert {k: v for k, v in bulk_payload.items() if k not in PER_ITEM} == outcome
    assert {k: v for k, v in rule_payload.items() if k not in PER_ITEM} == outcome
    assert (reviewer_payload["decided_by"], reviewer_payload["decision_id"]) == ("reviewer", decided.pk)
    assert (bulk_payload["decided_by"], bulk_payload["batch_id"]) == ("reviewer", str(batch.batch_id))
    assert (rule_payload["decided_by"], rule_payload["decision_id"]) == ("rule", None)
    assert rule_payload["rule"] == "spam-auto"


def test_the_payload_fields_come_in_one_order_for_every_sender(
    spam: tuple[Policy, DecisionLabel, EnforcementAction],
) -> None:
    policy, _, remove = spam
    at = datetime(2026, 11, 29, 12, tzinfo=UTC)
    common: dict[str, Any] = {
        "item_id": 1,
        "external_id": "post-1",
        "source": "social-app",
        "kind": "content",
        "is_violation": True,
        "policy": policy,
        "labels": ["slur", "link-farm"],
        "action": remove,
        "decided_at": at,
    }
    batch = uuid.UUID(int=7)

    reviewer = decision_final_payload(decision_id=2, decided_by="reviewer", **common)
    bulk = decision_final_payload(decision_id=3, decided_by="reviewer", batch_id=batch, **common)
    rule = decision_final_payload(decision_id=None, decided_by="rule", rule=None, **common)

    head = ["item_id", "external_id", "source", "kind", "decision_id", "decided_by"]
    tail = ["is_violation", "policy", "policy_version", "labels", "action", "decided_at"]
    assert list(reviewer) == head + tail
    assert list(bulk) == [*head, "batch_id", *tail]
    assert list(rule) == [*head, "rule", *tail]  # a rule with no name is still named (null)
    assert reviewer["labels"] == ["link-farm", "slur"]
    assert (bulk["batch_id"], reviewer["decided_at"]) == (str(batch), "2026-11-29T12:00:00+00:00")
    assert (reviewer["policy"], reviewer["policy_version"], reviewer["action"]) == ("spam", 1, "remove")
