"""Items waiting in a queue, made directly (triage is tested elsewhere)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.utils import timezone

from ops_platform.core.models import User
from queues.bulk import BulkResult, items_bulk_decide, items_bulk_preview
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
        source=source,
        external_id=f"q-{next(_external_ids)}",
        text=text,
        received_at=now - received_ago,
        queue=queue,
        due_at=now + due_in,
        priority=priority,
        **fields,
    )


def bulk_decide(*, queue: Queue, item_ids: Sequence[int], actor: User, **decision: Any) -> BulkResult:
    """A bulk decision as the page makes it: previewed, then confirmed with the previewed count."""
    preview = items_bulk_preview(queue=queue, item_ids=item_ids, actor=actor, **decision)
    return items_bulk_decide(
        queue=queue,
        item_ids=preview.item_ids,
        actor=actor,
        confirmation=preview.confirmation,
        confirmed_count=preview.count,
        **decision,
    )
