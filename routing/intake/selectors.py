"""Reads for intake: the dead letters still waiting for a re-drive."""

from __future__ import annotations

from django.db.models import QuerySet

from routing.intake.models import DeadLetter


def dead_letters_open() -> QuerySet[DeadLetter]:
    return DeadLetter.objects.filter(redriven_at__isnull=True)
