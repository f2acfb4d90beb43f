"""Reads for scoring: items' merged scores, usage per backend and day, breakers and budgets, the registry, incidents."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from ops_platform.core.models import AuditLog
from routing.scoring.guards import CircuitBreaker, spent_today
from routing.scoring.models import Backend, CallOutcome, ClassifierCall, ClassifierScore, ModelVersion, ScoringIncident
from routing.scoring.pipeline import backend_get


def backend_order() -> list[str]:
    """Backends from least to most preferred: later ones overwrite earlier ones when merged."""
    order = {name: i for i, name in enumerate(settings.SCORING_DEFAULT_CHAIN)}
    backends = [b for b in Backend.values if b != Backend.UNSCORED]
    return sorted(backends, key=lambda b: -order.get(b, len(order)))


def items_scores(item_ids: Sequence[int]) -> tuple[dict[int, dict[str, float]], set[int]]:
    """Each item's scores with every backend merged (the default chain's order winning), and the ids
    of the items that some classifier actually scored."""
    rank = {backend: i for i, backend in enumerate(backend_order())}
    rows = list(
        ClassifierScore.objects.filter(item_id__any=item_ids)
        .exclude(backend=Backend.UNSCORED)
        .values_list("item_id", "backend", "scores", "created_at")
    )
    rows.sort(key=lambda r: (rank.get(r[1], -1), r[3]))
    merged: dict[int, dict[str, float]] = defaultdict(dict)
    for item_id, _, scores, _ in rows:
        merged[item_id].update(scores)
    return dict(merged), set(merged)


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
    """Each backend's state; one that cannot score (no key, no active model) is "not configured", whatever its
    circuit says: a breaker never opens for a backend that is never called."""
    budgets: dict[str, float | None] = settings.SCORING_DAILY_BUDGET_USD
    return [
        {
            "backend": name,
            "label": Backend(name).label,
            "problem": backend_get(name).configured(),
            "breaker": CircuitBreaker(name).state(),
            "spent_today": spent_today(name),
            "budget": budgets.get(name),
            "in_default_chain": name in settings.SCORING_DEFAULT_CHAIN,
        }
        for name in settings.SCORING_BACKENDS
    ]


def incidents_recent(*, days: int = 7) -> QuerySet[ScoringIncident]:
    return ScoringIncident.objects.filter(day__gte=timezone.localdate() - timedelta(days=days))


def model_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.defer("artifact")


def model_history(version: ModelVersion) -> QuerySet[AuditLog]:
    return AuditLog.objects.filter(target_type=version._meta.label_lower, target_id=str(version.pk)).order_by("at")
