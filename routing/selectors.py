"""Reads for scoring: an item's scores, usage per backend and day, the registry, dead letters, incidents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from ops_platform.core.models import AuditLog
from routing.models import (
    Backend,
    CallOutcome,
    ClassifierCall,
    ClassifierScore,
    DeadLetter,
    ModelVersion,
    ScoringIncident,
)
from routing.scoring.guards import CircuitBreaker, spent_today


def item_scores(item_id: int) -> dict[str, float]:
    """The scores routing sees: every backend's latest scores merged, the default chain's order winning."""
    order = {name: i for i, name in enumerate(settings.SCORING_DEFAULT_CHAIN)}
    rows = list(ClassifierScore.objects.filter(item_id=item_id).exclude(backend=Backend.UNSCORED))
    rows.sort(key=lambda s: (-order.get(s.backend, len(order)), s.created_at))
    merged: dict[str, float] = {}
    for row in rows:  # later rows overwrite earlier ones, so the preferred backend comes last
        merged.update(row.scores)
    return merged


@dataclass(frozen=True)
class UsageDay:
    day: date
    backend: str
    calls: int
    failed: int
    skipped: int
    items: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    latency_ms: int


def usage_daily(*, days: int = 14) -> list[UsageDay]:
    since = timezone.now() - timedelta(days=days)
    skipped = [CallOutcome.CIRCUIT_OPEN, CallOutcome.BUDGET_SPENT, CallOutcome.UNAVAILABLE]
    rows = (
        ClassifierCall.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day", "backend")
        .annotate(
            calls=Count("pk", filter=~Q(outcome__in=skipped)),
            failed=Count("pk", filter=~Q(outcome__in=[*skipped, CallOutcome.OK])),
            skipped=Count("pk", filter=Q(outcome__in=skipped)),
            items=Sum("items", filter=Q(outcome=CallOutcome.OK)),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cost_usd=Sum("cost_usd"),
            latency_ms=Sum("latency_ms"),
        )
        .order_by("-day", "backend")
    )
    return [
        UsageDay(
            day=r["day"],
            backend=r["backend"],
            calls=r["calls"],
            failed=r["failed"],
            skipped=r["skipped"],
            items=r["items"] or 0,
            input_tokens=r["input_tokens"] or 0,
            output_tokens=r["output_tokens"] or 0,
            cost_usd=r["cost_usd"] or Decimal(0),
            latency_ms=(r["latency_ms"] or 0) // max(r["calls"], 1),
        )
        for r in rows
    ]


def backends_status() -> list[dict[str, Any]]:
    budgets: dict[str, float | None] = settings.SCORING_DAILY_BUDGET_USD
    return [
        {
            "backend": name,
            "label": Backend(name).label,
            "breaker": CircuitBreaker(name).state(),
            "spent_today": spent_today(name),
            "budget": budgets.get(name),
            "in_default_chain": name in settings.SCORING_DEFAULT_CHAIN,
        }
        for name in settings.SCORING_BACKENDS
    ]


def dead_letters_open() -> QuerySet[DeadLetter]:
    return DeadLetter.objects.filter(redriven_at__isnull=True)


def incidents_recent(*, days: int = 7) -> QuerySet[ScoringIncident]:
    return ScoringIncident.objects.filter(day__gte=timezone.localdate() - timedelta(days=days))


def model_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.defer("artifact")


def model_history(version: ModelVersion) -> QuerySet[AuditLog]:
    return AuditLog.objects.filter(target_type=version._meta.label_lower, target_id=str(version.pk)).order_by("at")
