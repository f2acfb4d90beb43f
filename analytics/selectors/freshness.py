"""How fresh each dashboard figure is: the moment the rollups it reads were last refreshed, or now for live reads."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from django.core.cache import cache
from django.utils import timezone

from analytics.models import ClassifierRollupCursor, RollupCursor
from analytics.rollups import CURSOR_NAME


def operations_as_of() -> datetime | None:
    """When the operations rollups (and the quality rollups refreshed with them) last caught up; None: never."""
    return RollupCursor.objects.filter(name=CURSOR_NAME).values_list("refreshed_at", flat=True).first()


def operations_stamp() -> tuple[int, datetime | None]:
    """The operations rollups' generation (bumped by every refresh and rebuild) and when they last caught up."""
    found = RollupCursor.objects.filter(name=CURSOR_NAME).values_list("generation", "refreshed_at").first()
    return found or (0, None)


F = TypeVar("F")
R = TypeVar("R")
# A cached figure outlives no refresh (its key names the generation); this only bounds memory for idle keys.
ROLLUP_CACHE_SECONDS = 60 * 60


def rollup_cached(name: str, compute: Callable[[F], R]) -> Callable[[F], R]:
    """``compute`` (a panel's figures from the operations rollups, given its filter) cached until the rollups
    change: keyed by the panel, the filter and the rollups' generation, read before the figures, so a refresh or
    a rebuild invalidates it and a cached answer is never older than the generation it is filed under: it is the
    answer ``compute`` gives until the next refresh (so it equals its drill-down exactly when the uncached figure
    would)."""

    def cached(f: F) -> R:
        generation, refreshed_at = operations_stamp()
        what = f"{name}|{generation}|{refreshed_at}|{f!r}"
        key = "analytics:panel:" + hashlib.sha256(what.encode()).hexdigest()
        found: R | None = cache.get(key)
        if found is None:
            found = compute(f)
            cache.set(key, found, ROLLUP_CACHE_SECONDS)
        return found

    return cached


def classifiers_as_of() -> datetime | None:
    return ClassifierRollupCursor.objects.values_list("refreshed_at", flat=True).order_by("pk").first()


def live_as_of() -> datetime:
    """A figure computed from the raw rows at request time is as fresh as the request."""
    return timezone.now()
