"""Reads on items and queues."""

from __future__ import annotations

from django.db.models import QuerySet

from queues.models import Decision, ReviewItem


def item_get_for_source(*, item_id: int, source: str) -> ReviewItem | None:
    """An item as its submitting client may see it: another source's item does not exist for it."""
    return ReviewItem.objects.select_related("queue").filter(pk=item_id, source=source).first()


def item_final_decision(*, item: ReviewItem) -> Decision | None:
    decisions: QuerySet[Decision] = item.decisions.select_related("policy", "action").filter(
        is_final=True, superseded_by__isnull=True
    )
    return decisions.order_by("-decided_at").first()
