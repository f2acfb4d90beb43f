"""Reads for intake: the dead letters still waiting for a re-drive, and what the appeals API answers with."""

from __future__ import annotations

from django.db.models import QuerySet

from queues.models import ReviewItem
from routing.intake.models import DeadLetter


def dead_letters_open() -> QuerySet[DeadLetter]:
    return DeadLetter.objects.filter(redriven_at__isnull=True)


def appeal_of(*, item_id: int) -> int | None:
    """The id of the item that appeal ``item_id`` appeals (None for an item that is no appeal)."""
    return ReviewItem.objects.only("appeal_of_id").get(pk=item_id).appeal_of_id
