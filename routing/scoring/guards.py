"""What keeps a failing or expensive backend from hurting triage: a circuit breaker per backend, a daily
budget per backend, and the ops incidents both raise.

The breaker's state lives in the Django cache (Redis in production), so every worker process shares it.
While that cache is unreachable the breaker stays closed (every call is tried): a cache outage must not
stop scoring (tests/drills/redis_outage.py).
"""

from __future__ import annotations

import contextlib
import logging
import time
from decimal import Decimal

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from ops_platform.core.localday import today_start
from routing.scoring.models import ClassifierCall, IncidentKind, ScoringIncident

logger = logging.getLogger(__name__)

CACHE_DOWN = (redis.ConnectionError, redis.TimeoutError)


class CircuitBreaker:
    """Closed → open after N failures in a row → after the cool-down one trial call (half-open) → closed or open.

    ``allow()`` says whether to call the backend now; report each call's result with ``success()`` or
    ``failure()``.
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._failures = f"scoring:breaker:{backend}:failures"
        self._open_until = f"scoring:breaker:{backend}:open_until"
        self._trial = f"scoring:breaker:{backend}:trial"

    @property
    def cooldown(self) -> float:
        return float(settings.SCORING_BREAKER_COOLDOWN.total_seconds())

    def _open_until_get(self) -> float | None:
        try:
            return cache.get(self._open_until)
        except CACHE_DOWN as exc:
            logger.warning(
                "circuit breaker for %s: cache unreachable (%s), treated as closed", self.backend, type(exc).__name__
            )
            return None

    def state(self) -> str:
        open_until = self._open_until_get()
        if open_until is None:
            return "closed"
        return "open" if time.time() < open_until else "half-open"

    def allow(self) -> bool:
        open_until = self._open_until_get()
        if open_until is None:
            return True
        if time.time() < open_until:
            return False
        # Half-open: exactly one caller (across processes) gets the trial call.
        try:
            return bool(cache.add(self._trial, 1, timeout=max(self.cooldown, 1)))
        except CACHE_DOWN:
            return True

    def success(self) -> None:
        with contextlib.suppress(*CACHE_DOWN):
            cache.delete_many([self._failures, self._open_until, self._trial])

    def failure(self) -> bool:
        """Count a failure; returns True when this failure opened the circuit."""
        try:
            cache.add(self._failures, 0, timeout=None)
            failures = cache.incr(self._failures)
            half_open = cache.get(self._open_until) is not None
        except CACHE_DOWN:
            return False
        if half_open or failures >= settings.SCORING_BREAKER_FAILURES:
            try:
                cache.set(self._open_until, time.time() + self.cooldown, timeout=None)
                cache.delete(self._trial)
            except CACHE_DOWN:
                return False
            incident_raise(
                IncidentKind.CIRCUIT_OPEN,
                backend=self.backend,
                message=f"{self.backend}: circuit opened after {failures} failed calls in a row; "
                f"a trial call goes through every {self.cooldown:.0f} s until one succeeds.",
            )
            return True
        return False


def spent_today(backend: str) -> Decimal:
    total = ClassifierCall.objects.filter(backend=backend, created_at__gte=today_start()).aggregate(
        total=Sum("cost_usd")
    )["total"]
    return total or Decimal(0)


def budget_left(backend: str) -> bool:
    """False once today's estimated spend reached the backend's daily budget (raising an incident)."""
    budget = settings.SCORING_DAILY_BUDGET_USD.get(backend)
    if not budget:
        return True
    spent = spent_today(backend)
    if spent < Decimal(str(budget)):
        return True
    incident_raise(
        IncidentKind.BUDGET_SPENT,
        backend=backend,
        message=f"{backend}: today's budget of ${budget:.2f} is spent (${spent:.2f}); "
        "scoring falls back to the next backend until midnight.",
    )
    return False


def incident_raise(kind: IncidentKind, *, backend: str = "", message: str) -> ScoringIncident:
    """One incident per kind, backend and day; a repeat counts an occurrence instead of adding a row."""
    day = today_start().date()
    now = timezone.now()
    updated = ScoringIncident.objects.filter(kind=kind, backend=backend, day=day).update(
        occurrences=F("occurrences") + 1, last_seen_at=now
    )
    if not updated:
        try:
            with transaction.atomic():
                logger.warning("scoring incident %s: %s", kind, message)
                return ScoringIncident.objects.create(kind=kind, backend=backend, day=day, message=message)
        except IntegrityError:
            ScoringIncident.objects.filter(kind=kind, backend=backend, day=day).update(
                occurrences=F("occurrences") + 1, last_seen_at=now
            )
    return ScoringIncident.objects.get(kind=kind, backend=backend, day=day)


__all__ = ["CircuitBreaker", "budget_left", "incident_raise", "spent_today"]
