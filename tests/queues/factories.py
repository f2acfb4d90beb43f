"""Items waiting in a queue, made directly (triage is tested elsewhere)."""

from __future__ import annotations

import itertools
from datetime import timedelta

from django.utils import timezone

from queues.models import ItemState, Queue, ReviewItem

_external_ids = itertools.count()


def item_queued(
    queue: Queue,
    *,
    text: str = "something someone posted",
    source: str = "claims",
    priority: int = 0,
    due_in: timedelta = timedelta(hours=1),
    received_ago: timedelta = timedelta(minutes=5),
    **fields: object,
) -> ReviewItem:
    now = timezone.now()
    fields = {"state": ItemState.QUEUED, "queued_at": now, **fields}
    return ReviewItem.objects.create(
        source=source, external_id=f"q-{next(_external_ids)}", text=text, received_at=now - received_ago,
        queue=queue, due_at=now + due_in, priority=priority, **fields,
    )  # fmt: skip
