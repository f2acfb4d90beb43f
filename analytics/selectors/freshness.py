"""How fresh each dashboard figure is: the moment the rollups it reads were last refreshed, or now for live reads."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from analytics.models import ClassifierRollupCursor, RollupCursor
from analytics.rollups import CURSOR_NAME


def operations_as_of() -> datetime | None:
    """When the operations rollups (and the quality rollups refreshed with them) last caught up; None: never."""
    return RollupCursor.objects.filter(name=CURSOR_NAME).values_list("refreshed_at", flat=True).first()


def classifiers_as_of() -> datetime | None:
    return ClassifierRollupCursor.objects.values_list("refreshed_at", flat=True).order_by("pk").first()


def live_as_of() -> datetime:
    """A figure computed from the raw rows at request time is as fresh as the request."""
    return timezone.now()
