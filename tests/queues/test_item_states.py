"""The item state machine: legal moves happen, illegal ones raise, concurrent claims have one winner."""

from __future__ import annotations

import pytest
from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from queues.models import TRANSITIONS, Decision, IllegalTransition, ItemState, ReviewItem, check_transition
from queues.services import decision_record, item_claim, items_enqueue

pytestmark = pytest.mark.django_db

ALL_PAIRS = [(a, b) for a in ItemState.values for b in ItemState.values]


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS)
def test_every_transition_is_allowed_or_refused_as_the_table_says(current, target):
    if target in TRANSITIONS[current]:
        check_transition(current, target)
    else:
        with pytest.raises(IllegalTransition, match=f"cannot go from '{current}' to '{target}'"):
            check_transition(current, target)


def test_received_items_cannot_be_decided_or_claimed():
    received = ReviewItem(pk=1, state=ItemState.RECEIVED)
    with pytest.raises(IllegalTransition):
        received.transition_to(ItemState.DECIDED)
    with pytest.raises(IllegalTransition):
        received.transition_to(ItemState.CLAIMED)
    assert received.state == ItemState.RECEIVED


def _queued_item(queue) -> ReviewItem:
    item = ReviewItem.objects.create(source="s", external_id="e1", text="t", received_at=timezone.now())
    items_enqueue(item_ids=[item.pk], queue=queue, actor="test")
    item.refresh_from_db()
    return item


def test_enqueue_runs_once_even_when_asked_twice(intake_queue):
    item = ReviewItem.objects.create(source="s", external_id="e1", text="t", received_at=timezone.now())

    first = items_enqueue(item_ids=[item.pk], queue=intake_queue, actor="test")
    second = items_enqueue(item_ids=[item.pk], queue=intake_queue, actor="test")

    assert (first, second) == ([item.pk], [])
    assert item.events.filter(event="queued").count() == 1


def test_a_claimed_item_cannot_be_claimed_by_someone_else(intake_queue, reviewer, qa_lead):
    item = _queued_item(intake_queue)
    item_claim(item=item, actor=reviewer)

    stale_copy = ReviewItem.objects.get(pk=item.pk)
    stale_copy.state = ItemState.QUEUED  # what a second reviewer's page still believes
    with pytest.raises(ApplicationError, match="claimed this item first"):
        item_claim(item=stale_copy, actor=qa_lead)
    assert ReviewItem.objects.get(pk=item.pk).assignee == reviewer


def test_only_the_lease_holder_decides_and_decisions_are_immutable(intake_queue, reviewer, qa_lead):
    item = _queued_item(intake_queue)
    with pytest.raises(ApplicationError, match="holding the item's lease"):
        decision_record(item=item, actor=reviewer, is_violation=False)
    item_claim(item=item, actor=reviewer)
    with pytest.raises(ApplicationError, match="holding the item's lease"):
        decision_record(item=item, actor=qa_lead, is_violation=False)

    decision = decision_record(item=item, actor=reviewer, is_violation=False, rationale="benign").decision

    item.refresh_from_db()
    assert item.state == ItemState.DECIDED
    assert decision.handle_time is not None
    decision.rationale = "rewritten"
    with pytest.raises(ApplicationError, match="immutable"):
        decision.save()
    assert Decision.objects.get().rationale == "benign"
    with pytest.raises(ApplicationError):
        decision_record(item=item, actor=reviewer, is_violation=True)


def test_a_violation_needs_a_policy(intake_queue, reviewer):
    item = _queued_item(intake_queue)
    item_claim(item=item, actor=reviewer)
    with pytest.raises(ApplicationError, match="needs the policy"):
        decision_record(item=item, actor=reviewer, is_violation=True)
