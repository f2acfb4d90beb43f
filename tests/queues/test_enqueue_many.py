"""Queueing a whole triage batch at once (``items_enqueue_many``) leaves every item and its history exactly as
queueing each group on its own (``items_enqueue``) would, and runs once even when asked twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from queues.models import ItemEvent, ItemState, Queue, ReviewItem
from queues.services import Enqueue, items_enqueue, items_enqueue_many

pytestmark = pytest.mark.django_db

FIELDS = ["state", "queue_id", "priority", "triaged_at", "queued_at", "due_at", "tags", "required_reviews"]
EVENT_FIELDS = ["at", "actor_label", "event", "from_state", "to_state", "queue_id", "data"]


RECEIVED = timezone.now() - timedelta(minutes=5)


def _items(prefix: str, n: int) -> list[ReviewItem]:
    return [
        ReviewItem.objects.create(
            source="s", external_id=f"{prefix}{i}", text="t", received_at=RECEIVED + timedelta(seconds=i)
        )
        for i in range(n)
    ]


def _groups(items: list[ReviewItem], general: Queue, urgent: Queue) -> list[Enqueue]:
    ids = [i.pk for i in items]
    return [
        Enqueue(
            item_ids=ids[:2],
            queue=general,
            actor="triage:default",
            reason="default queue (no rule matched)",
            data={"rule": "default"},
        ),
        Enqueue(
            item_ids=ids[2:4],
            queue=urgent,
            actor="rules",
            priority=40,
            reason="rule 'threat'",
            data={"rule": "threat", "escalated_by": "v2:mass-reported"},
            tags=["mass-reported", "civic", "civic"],
            required_reviews=2,
        ),
        Enqueue(item_ids=ids[4:], queue=general, actor="rules", priority=5, tags=["has-link"]),
    ]


def _state(item: ReviewItem) -> tuple[list[object], list[list[object]]]:
    item.refresh_from_db()
    events = ItemEvent.objects.filter(item=item).order_by("id")
    return [getattr(item, f) for f in FIELDS], [[getattr(e, f) for f in EVENT_FIELDS] for e in events]


def test_a_batch_is_queued_as_each_group_on_its_own_would_be(intake_queue: Queue) -> None:
    urgent = Queue.objects.create(slug="urgent", name="Urgent", sla=timedelta(hours=1))
    now = timezone.now()
    batch, one_by_one = _items("b", 6), _items("g", 6)

    moved = items_enqueue_many(groups=_groups(batch, intake_queue, urgent), at=now)
    for g in _groups(one_by_one, intake_queue, urgent):
        items_enqueue(
            item_ids=g.item_ids,
            queue=g.queue,
            actor=g.actor,
            priority=g.priority,
            reason=g.reason,
            data=g.data,
            tags=g.tags,
            required_reviews=g.required_reviews,
            at=now,
        )

    assert moved == sorted(i.pk for i in batch)
    for mine, theirs in zip(batch, one_by_one, strict=True):
        assert _state(mine) == _state(theirs)
    urgent_item = ReviewItem.objects.get(pk=batch[2].pk)
    assert urgent_item.due_at == urgent_item.received_at + timedelta(hours=1)
    assert urgent_item.tags == ["civic", "mass-reported"]


def test_a_batch_moves_only_received_items_and_runs_once_when_asked_twice(intake_queue: Queue) -> None:
    urgent = Queue.objects.create(slug="urgent", name="Urgent")
    items = _items("b", 6)
    items_enqueue(item_ids=[items[0].pk], queue=urgent, actor="earlier")

    first = items_enqueue_many(groups=_groups(items, intake_queue, urgent))
    second = items_enqueue_many(groups=_groups(items, intake_queue, urgent))

    assert first == sorted(i.pk for i in items[1:])
    assert second == []
    assert ReviewItem.objects.get(pk=items[0].pk).queue == urgent
    assert set(ReviewItem.objects.filter(pk__in=[i.pk for i in items]).values_list("state", flat=True)) == {
        ItemState.QUEUED
    }
    for item in items:
        assert ItemEvent.objects.filter(item=item, event="queued").count() == 1
