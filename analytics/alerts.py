"""Alerts with causes: a false-positive or overturn rate rising over its trailing baseline, SLA at risk, backlog
growth; each alert names the slices that explain most of the change, is listed in the app and sent by webhook.

Metrics are read from raw rows with one set-based query per period (the ``*_observations`` functions below);
they are the seam where daily rollups can take over without touching detection or causes.

Causes of a rate change (mix-and-rate decomposition). With weights n (1/inclusion probability for QA samples,
1 per appeal), hits k, the overall rate R = K/N = Σ_s (n_s/N)·(k_s/n_s) over the slices s of any one dimension,
so the change from baseline b to window w splits exactly into per-slice contributions::

    contribution_s = n_w,s/N_w · r_w,s - n_b,s/N_b · r_b,s  ( = k_w,s/N_w - k_b,s/N_b ),  Σ_s contribution_s = R_w - R_b

and each contribution further into a rate effect p̄_s·(r_w,s - r_b,s) and a mix effect r̄_s·(p_w,s - p_b,s), with
p the slice's share of the weight and p̄, r̄ the two periods' means (a slice absent from a period takes the other
period's rate). Slices of every dimension are ranked together by their excess contribution, contribution_s -
p_w,s·(R_w - R_b): how much more of the change the slice carries than its share of the volume would. A slice that
is the whole population (every item in one language) carries all the change and explains none of it; the
excesses of one dimension add up to zero. Where two top slices of different dimensions (surface=comments,
vendor=acme) overlap so that their intersection alone carries at least :data:`ABSORB` of each one's contribution,
the intersection replaces them: it is the more precise explanation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from django.db import IntegrityError, transaction
from django.db.models import Case, CharField, Count, F, OuterRef, QuerySet, Subquery, Value, When
from django.db.models.functions import Cast, Coalesce, Concat
from django.utils import timezone

from analytics.filters import MetricFilter
from analytics.models import Alert, AlertMetric, AlertRule, AlertState
from ops_platform.core.errors import Conflict, NotPermitted
from ops_platform.core.models import ApiClient, ApiScope, Role, User, WebhookEventType
from ops_platform.core.services import audit_record
from ops_platform.core.webhooks import webhook_emit
from qa.models import ErrorType, QaSample, SampleState
from queues.models import Decision, ItemKind, ItemState, ReviewItem
from routing.models import Backend, ClassifierScore, RoutingDecision

logger = logging.getLogger(__name__)

DIMENSIONS = ("surface", "language", "rule", "model_version", "vendor", "queue")
NONE_LABEL = "(none)"
IN_HOUSE = "in-house"
TOP_CAUSES = 5
# Top single slices tried pairwise for a more precise intersection.
PAIR_CANDIDATES = 6
ABSORB = 0.8
# The vendors' usual throughput, against which a drop is measured (SLA and backlog causes).
USUAL_THROUGHPUT = timedelta(days=7)
WEBHOOK_CAUSES = 3
OPEN_STATES = (AlertState.OPEN, AlertState.ACKNOWLEDGED)


# --- observations from raw rows (the seam for rollups) ------------------------------------------------------


def _rule_of(item_ref: str) -> Subquery:
    """The matched rule of the item's latest live (non-shadow) routing decision."""
    latest = RoutingDecision.objects.filter(item=OuterRef(item_ref), shadow=False).order_by("-at", "-id")
    return Subquery(latest.values("matched")[:1])


def _model_version_of(item_ref: str) -> Subquery:
    """``backend:model_version`` of the item's latest real classifier score."""
    latest = (
        ClassifierScore.objects.filter(item=OuterRef(item_ref))
        .exclude(backend=Backend.UNSCORED)
        .order_by("-created_at", "-id")
        .annotate(label=Concat("backend", Value(":"), "model_version"))
    )
    return Subquery(latest.values("label")[:1])


def _frame(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(rows, columns=columns)
    for dim in DIMENSIONS:
        if dim in frame:
            frame[dim] = frame[dim].fillna(NONE_LABEL).replace("", NONE_LABEL).astype(str)
    if "vendor" in frame:
        frame["vendor"] = frame["vendor"].replace(NONE_LABEL, IN_HOUSE)
    return frame


RATE_COLUMNS = ["at", "weight", "hit", *DIMENSIONS]


def qa_observations(start: datetime, end: datetime, *, queue_id: int | None = None) -> pd.DataFrame:
    """QA samples closed in [start, end): weight 1/inclusion probability, hit when found a false positive.

    The slices describe the re-reviewed decision as it was (the sample's snapshot of vendor and queue).
    """
    samples = QaSample.objects.filter(
        state=SampleState.CLOSED, closed_at__gte=start, closed_at__lt=end, item__is_golden=False
    )
    if queue_id is not None:
        samples = samples.filter(original_queue_id=queue_id)
    rows: Any = samples.values(
        "inclusion_probability",
        "error_type",
        at=F("closed_at"),
        surface=F("item__surface"),
        language=F("item__language"),
        rule=_rule_of("item_id"),
        model_version=_model_version_of("item_id"),
        vendor=F("original_vendor__slug"),
        queue=F("original_queue__slug"),
    )
    frame = _frame(list(rows), ["inclusion_probability", "error_type", *RATE_COLUMNS])
    frame["weight"] = 1.0 / frame["inclusion_probability"].astype(float)
    frame["hit"] = (frame["error_type"] == ErrorType.FALSE_POSITIVE).astype(float)
    return frame[RATE_COLUMNS]


def appeal_observations(start: datetime, end: datetime, *, queue_id: int | None = None) -> pd.DataFrame:
    """Appeals decided in [start, end) (their current final decision), hit when overturned.

    The slices describe the contested decision: the appealed item, and the last decision on it made before the
    appeal arrived (its reviewer's vendor, its queue).
    """
    contested = Decision.objects.filter(
        item=OuterRef("item__appeal_of"), decided_at__lt=OuterRef("item__received_at")
    ).order_by("-decided_at", "-id")
    appeals = (
        Decision.objects.filter(
            is_final=True, decided_at__gte=start, decided_at__lt=end, item__kind=ItemKind.APPEAL, item__is_golden=False
        )
        .exclude(appeal_outcome="")
        .annotate(contested_queue_id=Subquery(contested.values("queue_id")[:1]))
    )
    if queue_id is not None:
        appeals = appeals.filter(contested_queue_id=queue_id)
    rows: Any = appeals.values(
        "appeal_outcome",
        at=F("decided_at"),
        surface=F("item__appeal_of__surface"),
        language=F("item__appeal_of__language"),
        rule=_rule_of("item__appeal_of"),
        model_version=_model_version_of("item__appeal_of"),
        vendor=Subquery(contested.values("reviewer__reviewer_profile__team__vendor__slug")[:1]),
        contested_queue=Subquery(contested.values("queue__slug")[:1]),
    )
    columns = ["appeal_outcome", *RATE_COLUMNS]
    frame = _frame([{**r, "queue": r.pop("contested_queue")} for r in rows], columns)
    frame["weight"] = 1.0
    frame["hit"] = (frame["appeal_outcome"] == "overturned").astype(float)
    return frame[RATE_COLUMNS]


def _items(queue_id: int | None) -> QuerySet[ReviewItem]:
    """Operational items in a queue (golden copies left out), of one queue when given."""
    items = ReviewItem.objects.filter(is_golden=False, queue__isnull=False)
    return items.filter(queue_id=queue_id) if queue_id is not None else items


def backlog_by_queue(*, at: datetime | None = None, queue_id: int | None = None) -> pd.Series:
    """Items waiting per queue slug: from their state now, or reconstructed for a past instant as items queued
    by then and not yet decided (the queue is the item's current one: a later move counts where it went)."""
    items = _items(queue_id)
    if at is None:
        items = items.filter(state__in=[ItemState.QUEUED, ItemState.CLAIMED])
    else:
        items = items.filter(queued_at__lte=at).exclude(decided_at__lte=at)
    rows = items.values(queue_slug=F("queue__slug")).annotate(n=Count("id"))
    return pd.Series({r["queue_slug"]: r["n"] for r in rows}, dtype=float)


def arrivals_by_queue(start: datetime, end: datetime, *, queue_id: int | None = None) -> pd.Series:
    rows = (
        _items(queue_id)
        .filter(queued_at__gte=start, queued_at__lt=end)
        .values(queue_slug=F("queue__slug"))
        .annotate(n=Count("id"))
    )
    return pd.Series({r["queue_slug"]: r["n"] for r in rows}, dtype=float)


def decisions_by_queue_vendor(
    start: datetime, end: datetime, *, queue_id: int | None = None, queues: list[str] | None = None
) -> pd.DataFrame:
    """Decisions made in [start, end) per queue and decider's vendor: the throughput actually delivered."""
    decisions = Decision.objects.filter(decided_at__gte=start, decided_at__lt=end, item__is_golden=False)
    if queue_id is not None:
        decisions = decisions.filter(queue_id=queue_id)
    if queues is not None:
        decisions = decisions.filter(queue__slug__in=queues)
    rows = decisions.values(
        queue_slug=F("queue__slug"),
        vendor=Coalesce(F("reviewer__reviewer_profile__team__vendor__slug"), Value(IN_HOUSE)),
    ).annotate(n=Count("id"))
    return pd.DataFrame.from_records(list(rows), columns=["queue_slug", "vendor", "n"])


def items_due_by(deadline: datetime, *, queue_id: int | None = None) -> pd.DataFrame:
    """Waiting items due by ``deadline`` (overdue ones too), with their queue and due time."""
    rows = (
        _items(queue_id)
        .filter(state__in=[ItemState.QUEUED, ItemState.CLAIMED], due_at__lte=deadline)
        .values("due_at", queue_slug=F("queue__slug"))
    )
    return pd.DataFrame.from_records(list(rows), columns=["due_at", "queue_slug"])


# --- causes -------------------------------------------------------------------------------------------------


def _r(x: float) -> float:
    return round(float(x), 6)


def _slice_figures(win: pd.DataFrame, base: pd.DataFrame, n_w: float, n_b: float, delta: float) -> dict[str, float]:
    nw, kw = win["weight"].sum(), (win["weight"] * win["hit"]).sum()
    nb, kb = base["weight"].sum(), (base["weight"] * base["hit"]).sum()
    p_w, p_b = nw / n_w if n_w else 0.0, nb / n_b if n_b else 0.0
    r_w = kw / nw if nw else np.nan
    r_b = kb / nb if nb else np.nan
    r_w_eff = r_b if np.isnan(r_w) else r_w
    r_b_eff = r_w_eff if np.isnan(r_b) else r_b
    contribution = (kw / n_w if n_w else 0.0) - (kb / n_b if n_b else 0.0)
    return {
        "window_rate": _r(0 if np.isnan(r_w) else r_w),
        "baseline_rate": _r(0 if np.isnan(r_b) else r_b),
        "window_share": _r(p_w),
        "baseline_share": _r(p_b),
        "window_volume": len(win),
        "contribution": _r(contribution),
        "excess_contribution": _r(contribution - p_w * delta),
        "rate_effect": _r((p_w + p_b) / 2 * (r_w_eff - r_b_eff)),
        "mix_effect": _r((r_w_eff + r_b_eff) / 2 * (p_w - p_b)),
    }


def slice_contributions(window: pd.DataFrame, baseline: pd.DataFrame, dim: str) -> pd.DataFrame:
    """Every value of one dimension: its contribution k_w,s/N_w - k_b,s/N_b (they add up to R_w - R_b) and its
    share of the window's weight."""
    n_w, n_b = window["weight"].sum(), baseline["weight"].sum()
    k_w = (window["weight"] * window["hit"]).groupby(window[dim]).sum() / n_w
    k_b = (baseline["weight"] * baseline["hit"]).groupby(baseline[dim]).sum() / n_b if n_b else pd.Series()
    share = window["weight"].groupby(window[dim]).sum() / n_w
    frame = pd.DataFrame({"contribution": k_w.sub(k_b, fill_value=0)})
    frame["window_share"] = share.reindex(frame.index, fill_value=0.0)
    return frame


def rate_change_causes(window: pd.DataFrame, baseline: pd.DataFrame, *, top: int = TOP_CAUSES) -> list[dict[str, Any]]:
    """The slices (of any dimension, or two overlapping ones) that explain most of a rate's rise."""
    n_w, n_b = window["weight"].sum(), baseline["weight"].sum()
    if not n_w:
        return []
    delta = _rate(window) - _rate(baseline)
    singles: list[dict[str, Any]] = []
    for dim in DIMENSIONS:
        frame = slice_contributions(window, baseline, dim)
        frame["excess"] = frame["contribution"] - frame["window_share"] * delta
        frame = frame[(frame["contribution"] > 0) & (frame["excess"] > 0)].sort_values("excess", ascending=False)
        for value, row in frame.head(top).iterrows():
            singles.append({"slice": {dim: str(value)}, "contribution": float(row["contribution"])})
    singles.sort(key=lambda c: c["contribution"], reverse=True)

    def mask(frame: pd.DataFrame, slice_: dict[str, str]) -> pd.Series:
        m = pd.Series(True, index=frame.index)
        for dim, value in slice_.items():
            m &= frame[dim] == value
        return m

    causes: list[dict[str, Any]] = []
    absorbed: set[int] = set()
    candidates = singles[:PAIR_CANDIDATES]
    for (i, a), (j, b) in combinations(enumerate(candidates), 2):
        if set(a["slice"]) & set(b["slice"]):
            continue
        both = {d: v for d in DIMENSIONS for v in [a["slice"].get(d) or b["slice"].get(d)] if v}
        figures = _slice_figures(window[mask(window, both)], baseline[mask(baseline, both)], n_w, n_b, delta)
        if figures["contribution"] >= ABSORB * max(a["contribution"], b["contribution"]):
            causes.append({"slice": both, **figures})
            absorbed |= {i, j}
    for i, single in enumerate(singles):
        if i not in absorbed:
            s = single["slice"]
            causes.append(
                {"slice": s, **_slice_figures(window[mask(window, s)], baseline[mask(baseline, s)], n_w, n_b, delta)}
            )
    # One intersection can come from several pairs of the same parents only once.
    unique = {tuple(sorted(c["slice"].items())): c for c in causes}
    ranked = sorted(unique.values(), key=lambda c: c["excess_contribution"], reverse=True)[:top]
    for cause in ranked:
        cause["dimension"] = "+".join(cause["slice"])
        cause["value"] = " / ".join(cause["slice"].values())
        cause["share_of_change"] = _r(cause["contribution"] / delta) if delta else None
    return ranked


def vendor_throughput_causes(queues: list[str], *, now: datetime, lookback: timedelta) -> list[dict[str, Any]]:
    """Vendors deciding fewer items per hour in ``queues`` over ``lookback`` than over their usual week."""
    if not queues:
        return []
    current = decisions_by_queue_vendor(now - lookback, now, queues=queues).groupby("vendor")["n"].sum()
    usual = decisions_by_queue_vendor(now - lookback - USUAL_THROUGHPUT, now - lookback, queues=queues)
    usual_rate = usual.groupby("vendor")["n"].sum() / (USUAL_THROUGHPUT / timedelta(hours=1))
    current_rate = current / (lookback / timedelta(hours=1))
    drop = usual_rate.sub(current_rate, fill_value=0).sort_values(ascending=False)
    return [
        {
            "dimension": "vendor",
            "value": str(vendor),
            "slice": {"vendor": str(vendor)},
            "throughput_per_hour": _r(current_rate.get(vendor, 0.0)),
            "usual_per_hour": _r(usual_rate.get(vendor, 0.0)),
            "contribution": _r(d),
        }
        for vendor, d in drop.items()
        if d > 0
    ][:TOP_CAUSES]


# --- evaluation ---------------------------------------------------------------------------------------------


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


def _rate(frame: pd.DataFrame) -> float:
    total = frame["weight"].sum()
    return float((frame["weight"] * frame["hit"]).sum() / total) if total else 0.0


def _evaluate_rate(rule: AlertRule, now: datetime) -> Evaluation:
    start = now - rule.window
    loader = qa_observations if rule.metric == AlertMetric.FALSE_POSITIVE_RATE else appeal_observations
    frame = loader(start - rule.baseline, now, queue_id=rule.queue_id)
    window, baseline = frame[frame["at"] >= start], frame[frame["at"] < start]
    value, base = _rate(window), _rate(baseline)
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
            "throughput_per_hour": _r(rate * 3600),
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
            rows[q]["share_of_change"] = _r(at_risk[q] / value)
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
                "share_of_change": _r(g / delta),
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


# --- delivery -----------------------------------------------------------------------------------------------


def alert_payload(alert: Alert) -> dict[str, Any]:
    """What leaves the platform: figures and slice labels, never content."""
    rule = alert.rule
    return {
        "alert_id": alert.pk,
        "rule": {"id": rule.pk, "name": rule.name},
        "metric": alert.metric,
        "scope": alert.scope,
        "queue": rule.queue.slug if rule.queue else None,
        "value": alert.value,
        "baseline": alert.baseline,
        "volume": alert.volume,
        "window": {"start": alert.window_start.isoformat(), "end": alert.window_end.isoformat()},
        "opened_at": alert.opened_at.isoformat(),
        "causes": alert.causes[:WEBHOOK_CAUSES],
    }


def alert_webhooks_emit(alert: Alert) -> int:
    """One signed ``alert.opened`` event to every active client subscribed with ``alerts:read``."""
    payload = alert_payload(alert)
    # Scopes are a JSON list; clients are few, and a Python filter works on SQLite (the demo) too.
    clients = [c for c in ApiClient.objects.filter(is_active=True) if c.has_scope(ApiScope.ALERTS_READ)]
    return sum(
        webhook_emit(client=c, event_type=WebhookEventType.ALERT_OPENED, payload=payload) is not None for c in clients
    )


def alerts_open() -> QuerySet[Alert]:
    """Alerts still needing attention (open or acknowledged), newest first."""
    return Alert.objects.filter(state__in=OPEN_STATES).select_related("rule", "rule__queue", "acknowledged_by")


def alerts_recent(f: MetricFilter, *, state: str | None = None) -> QuerySet[Alert]:
    """Alerts opened in the filter's period, newest first; a queue filter keeps that queue's rules. Vendor and
    policy filters do not narrow alerts (a vendor appears among the causes, not the scope)."""
    alerts = Alert.objects.filter(opened_at__gte=f.start_at, opened_at__lt=f.end_at)
    if f.queue_id is not None:
        alerts = alerts.filter(rule__queue_id=f.queue_id)
    if state:
        alerts = alerts.filter(state=state)
    return alerts.select_related("rule", "rule__queue", "acknowledged_by", "resolved_by")


# --- people's changes (audited) -----------------------------------------------------------------------------


def alert_rules_may_edit(user: User) -> bool:
    """Admins (``manage_platform``), or ops managers: ``view_analytics`` held through the ops-manager role (an
    admin-granted ``view_analytics`` alone lets someone see alerts, not change what raises them)."""
    return user.has_perm("core.manage_platform") or (
        user.has_perm("core.view_analytics") and user.has_role(Role.OPS_MANAGER)
    )


RULE_FIELDS = (
    "name",
    "metric",
    "queue",
    "window",
    "baseline",
    "relative_threshold",
    "absolute_threshold",
    "min_volume",
    "is_active",
)


def _rule_snapshot(rule: AlertRule) -> dict[str, Any]:
    snapshot: dict[str, Any] = {name: getattr(rule, name) for name in RULE_FIELDS if name != "queue"}
    snapshot["queue"] = rule.queue_id
    snapshot["window"] = str(rule.window)
    snapshot["baseline"] = str(rule.baseline)
    return snapshot


@transaction.atomic
def alert_rule_save(*, actor: User, rule: AlertRule | None = None, reason: str = "", **fields: Any) -> AlertRule:
    """Create a rule (``rule`` None) or change one; audited with before and after."""
    if not alert_rules_may_edit(actor):
        raise NotPermitted("Only ops managers and admins change alert rules.")
    unknown = set(fields) - set(RULE_FIELDS)
    if unknown:
        raise ValueError(f"not alert rule fields: {sorted(unknown)}")
    before = None if rule is None else _rule_snapshot(rule)
    rule = rule or AlertRule(created_by=actor)
    for name, value in fields.items():
        setattr(rule, name, value)
    rule.full_clean(exclude=["created_by"])
    rule.save()
    audit_record(
        actor=actor,
        action="alert_rule.create" if before is None else "alert_rule.update",
        target=rule,
        before=before,
        after=_rule_snapshot(rule),
        reason=reason,
    )
    return rule


@transaction.atomic
def alert_acknowledge(*, alert: Alert, actor: User) -> Alert:
    """Someone is on it: the alert stays until the condition clears, but no longer counts as unseen."""
    if not actor.has_perm("core.view_analytics"):
        raise NotPermitted("Only people who see the dashboards acknowledge alerts.")
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.state != AlertState.OPEN:
        raise Conflict(f"Alert {alert.pk} is {alert.state}; only an open alert is acknowledged.")
    alert.state, alert.acknowledged_by, alert.acknowledged_at = AlertState.ACKNOWLEDGED, actor, timezone.now()
    alert.save(update_fields=["state", "acknowledged_by", "acknowledged_at"])
    audit_record(actor=actor, action="alert.acknowledge", target=alert, after={"state": alert.state})
    return alert


@transaction.atomic
def alert_resolve(*, alert: Alert, actor: User, reason: str = "") -> Alert:
    """Close an alert by hand; if the condition still holds, the next evaluation opens a new one."""
    if not actor.has_perm("core.view_analytics"):
        raise NotPermitted("Only people who see the dashboards resolve alerts.")
    alert = Alert.objects.select_for_update().get(pk=alert.pk)
    if alert.state == AlertState.RESOLVED:
        raise Conflict(f"Alert {alert.pk} is already resolved.")
    before = {"state": alert.state}
    alert.state, alert.resolved_by, alert.resolved_at = AlertState.RESOLVED, actor, timezone.now()
    alert.save(update_fields=["state", "resolved_by", "resolved_at"])
    audit_record(
        actor=actor, action="alert.resolve", target=alert, before=before, after={"state": alert.state}, reason=reason
    )
    return alert
