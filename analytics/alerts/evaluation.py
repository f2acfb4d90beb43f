"""Alert rules evaluated: each metric's reading against its threshold, alerts opened (one per rule and scope),
updated and resolved, and the opened ones sent by webhook."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from django.db import IntegrityError, transaction
from django.db.models import Case, CharField, Value, When
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from analytics.alerts.causes import TOP_CAUSES, rate_change_causes, rounded, vendor_throughput_causes, weighted_rate
from analytics.alerts.observations import (
    appeal_observations,
    arrivals_by_queue,
    backlog_by_queue,
    decisions_by_queue_vendor,
    items_due_by,
    qa_observations,
)
from analytics.alerts.services import OPEN_STATES, alert_webhooks_emit
from analytics.models import Alert, AlertMetric, AlertRule, AlertState

logger = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """One rule's reading: ``judged`` is False when there was too little volume to say either way."""

    value: float
    baseline: float | None
    volume: int
    window_start: datetime
    window_end: datetime
    judged: bool
    fires: bool
    causes: list[dict[str, Any]] = field(default_factory=list)


def _evaluate_rate(rule: AlertRule, now: datetime) -> Evaluation:
    start = now - rule.window
    loader = qa_observations if rule.metric == AlertMetric.FALSE_POSITIVE_RATE else appeal_observations
    frame = loader(start - rule.baseline, now, queue_id=rule.queue_id)
    window, baseline = frame[frame["at"] >= start], frame[frame["at"] < start]
    value, base = weighted_rate(window), weighted_rate(baseline)
    judged = len(window) >= rule.min_volume and len(baseline) >= rule.min_volume
    fires = (
        judged and value > base and value >= base * (1 + rule.relative_threshold) and value >= rule.absolute_threshold
    )
    causes = rate_change_causes(window, baseline) if fires else []
    return Evaluation(value, base, len(window), start, now, judged, fires, causes)


def _projected_breaches(due: pd.Series, *, now: datetime, per_second: float) -> int:
    """Working the queue in due order at ``per_second``, the k-th item is done at now + k/rate: a breach when
    that is after its due time (an overdue item always is)."""
    if due.empty:
        return 0
    if per_second <= 0:
        return len(due)
    seconds_left = np.sort((pd.to_datetime(due, utc=True) - pd.Timestamp(now)).dt.total_seconds().to_numpy())
    finish = np.arange(1, len(seconds_left) + 1) / per_second
    return int((finish > seconds_left).sum())


def _evaluate_sla(rule: AlertRule, now: datetime) -> Evaluation:
    due = items_due_by(now + rule.window, queue_id=rule.queue_id)
    throughput = decisions_by_queue_vendor(now - rule.baseline, now, queue_id=rule.queue_id)
    per_queue = throughput.groupby("queue_slug")["n"].sum() / rule.baseline.total_seconds()
    at_risk: dict[str, int] = {}
    rows: dict[str, dict[str, Any]] = {}
    for queue_slug, group in due.groupby("queue_slug"):
        slug, rate = str(queue_slug), float(per_queue.get(queue_slug, 0.0))
        at_risk[slug] = _projected_breaches(group["due_at"], now=now, per_second=rate)
        rows[slug] = {
            "dimension": "queue",
            "value": slug,
            "slice": {"queue": slug},
            "at_risk": at_risk[slug],
            "due_soon": len(group),
            "overdue": int((pd.to_datetime(group["due_at"], utc=True) <= pd.Timestamp(now)).sum()),
            "throughput_per_hour": rounded(rate * 3600),
            "contribution": at_risk[slug],
        }
    value = sum(at_risk.values())
    capacity = float(per_queue.sum() * rule.window.total_seconds())
    judged = len(due) >= rule.min_volume
    fires = judged and value >= max(1.0, rule.absolute_threshold) and value / len(due) >= rule.relative_threshold
    causes: list[dict[str, Any]] = []
    if fires:
        worst = sorted((q for q, n in at_risk.items() if n), key=lambda q: at_risk[q], reverse=True)
        for q in worst:
            rows[q]["share_of_change"] = rounded(at_risk[q] / value)
        causes = [rows[q] for q in worst[:TOP_CAUSES]]
        causes += vendor_throughput_causes(worst, now=now, lookback=rule.baseline)
    return Evaluation(float(value), capacity, len(due), now, now + rule.window, judged, fires, causes)


def _evaluate_backlog(rule: AlertRule, now: datetime) -> Evaluation:
    then = now - rule.window
    current = backlog_by_queue(queue_id=rule.queue_id)
    before = backlog_by_queue(at=then, queue_id=rule.queue_id)
    growth = current.sub(before, fill_value=0)
    value, base = float(current.sum()), float(before.sum())
    delta = value - base
    judged = value >= rule.min_volume
    fires = judged and delta >= max(1.0, rule.absolute_threshold) and delta / max(base, 1.0) >= rule.relative_threshold
    causes: list[dict[str, Any]] = []
    if fires:
        arrivals = arrivals_by_queue(then, now, queue_id=rule.queue_id)
        decided = decisions_by_queue_vendor(then, now, queue_id=rule.queue_id).groupby("queue_slug")["n"].sum()
        grown = growth[growth > 0].sort_values(ascending=False)
        causes = [
            {
                "dimension": "queue",
                "value": str(q),
                "slice": {"queue": str(q)},
                "backlog_then": int(before.get(q, 0)),
                "backlog_now": int(current.get(q, 0)),
                "arrivals": int(arrivals.get(q, 0)),
                "decided": int(decided.get(q, 0)),
                "contribution": int(g),
                "share_of_change": rounded(g / delta),
            }
            for q, g in grown.head(TOP_CAUSES).items()
        ]
        causes += vendor_throughput_causes([str(q) for q in grown.index], now=now, lookback=rule.window)
    return Evaluation(value, base, int(value), then, now, judged, fires, causes)


EVALUATORS = {
    AlertMetric.FALSE_POSITIVE_RATE: _evaluate_rate,
    AlertMetric.OVERTURN_RATE: _evaluate_rate,
    AlertMetric.SLA_AT_RISK: _evaluate_sla,
    AlertMetric.BACKLOG_GROWTH: _evaluate_backlog,
}


def alert_rule_evaluate(rule: AlertRule, *, now: datetime | None = None) -> Evaluation:
    """Read the rule's metric now; writes nothing."""
    return EVALUATORS[AlertMetric(rule.metric)](rule, now or timezone.now())


def _rule_scope_sql() -> Any:
    """:attr:`AlertRule.scope` in SQL, for the alert's rule."""
    return Case(
        When(rule__queue_id__isnull=True, then=Value("all")),
        default=Concat(Value("queue:"), Cast("rule__queue_id", CharField())),
    )


@dataclass
class EvaluationRun:
    opened: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)


def alerts_evaluate(*, now: datetime | None = None) -> EvaluationRun:
    """The periodic task's body: evaluate every active rule, and open, update or resolve its alert."""
    now = now or timezone.now()
    run = EvaluationRun()
    # A rule switched off, or moved to another scope, no longer speaks for the alerts it opened.
    stale = Alert.objects.filter(state__in=OPEN_STATES).exclude(rule__is_active=True, scope=_rule_scope_sql())
    run.resolved += list(stale.values_list("pk", flat=True))
    stale.update(state=AlertState.RESOLVED, resolved_at=now)
    for rule in AlertRule.objects.filter(is_active=True).select_related("queue"):
        result = alert_rule_evaluate(rule, now=now)
        try:
            _alert_apply(rule, result, now=now, run=run)
        except IntegrityError:
            # Another evaluation opened this rule's alert between our read and our insert: it holds.
            logger.info("alert rule %s: opened concurrently, left to the other evaluation", rule.pk)
    return run


@transaction.atomic
def _alert_apply(rule: AlertRule, result: Evaluation, *, now: datetime, run: EvaluationRun) -> None:
    alert = Alert.objects.select_for_update().filter(rule=rule, scope=rule.scope, state__in=OPEN_STATES).first()
    figures = {
        "evaluated_at": now,
        "window_start": result.window_start,
        "window_end": result.window_end,
        "value": result.value,
        "baseline": result.baseline,
        "volume": result.volume,
    }
    if result.fires:
        if alert is None:
            with transaction.atomic():
                alert = Alert.objects.create(
                    rule=rule,
                    scope=rule.scope,
                    metric=rule.metric,
                    opened_at=now,
                    peak_value=result.value,
                    causes=result.causes,
                    **figures,
                )
            alert_webhooks_emit(alert)
            run.opened.append(alert.pk)
        else:
            for name, v in figures.items():
                setattr(alert, name, v)
            alert.peak_value = max(alert.peak_value, result.value)
            alert.causes = result.causes
            alert.save()
            run.updated.append(alert.pk)
    elif alert is not None and result.judged:
        alert.state = AlertState.RESOLVED
        alert.resolved_at = now
        for name, v in figures.items():
            setattr(alert, name, v)
        alert.save()
        run.resolved.append(alert.pk)
