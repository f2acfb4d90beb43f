"""The periodic job behind ``/metrics``: it counts, so that a scrape only reads one small row.

Counters come from the durable record (items, item history, decisions, classifier usage records, webhook
deliveries), not from in-process counters, so every web process and worker shows the same figures and a restart
loses nothing. They are kept incrementally: rows older than a cut-off (``METRICS_SETTLE_SECONDS`` before the run,
long enough for any transaction that stamped a row to have committed) are added to a settled total once, as the
cut-off moves past them; rows after the cut-off are counted again on each run. Each run reads only the rows of a
few minutes, through the time indexes those tables already have; the first run counts the whole history once.

Gauges (queue depth, the oldest waiting item, the triage backlog, the webhook backlog) are recounted on each run:
GROUP BYs over partial or leading-column indexes of the open items only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, DateTimeField, DurationField, ExpressionWrapper, F, Min, Q, QuerySet, Sum
from django.utils import timezone

from analytics.models import MetricsSnapshot
from ops_platform.core.models import WebhookDelivery, WebhookEvent
from queues.models import Decision, ItemEvent, ItemState, Queue, ReviewItem
from routing.scoring.models import CallOutcome, ClassifierCall

# Upper bounds (seconds) of the histograms' buckets; +Inf is the count.
CLAIM_TO_DECISION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600)
RECEIVED_TO_DECISION_BUCKETS = (60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 12 * 3600, 86400, 2 * 86400, 7 * 86400)
CLASSIFIER_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BUCKETS = [list(CLAIM_TO_DECISION_BUCKETS), list(RECEIVED_TO_DECISION_BUCKETS), list(CLASSIFIER_LATENCY_BUCKETS)]
# Outcomes that are not calls: the backend was skipped before anything was sent, so they have no latency.
SKIPPED = (CallOutcome.UNAVAILABLE, CallOutcome.CIRCUIT_OPEN, CallOutcome.BUDGET_SPENT)

Counts = dict[str, dict[str, Any]]  # family -> series key ("a|b" label values) -> number or histogram


def _window(qs: QuerySet[Any], field: str, start: datetime | None, end: datetime | None) -> QuerySet[Any]:
    if start is not None:
        qs = qs.filter(**{f"{field}__gte": start})
    if end is not None:
        qs = qs.filter(**{f"{field}__lt": end})
    return qs


def _histogram(qs: QuerySet[Any], key: str, duration: Any, bounds: list[Any], seconds: Callable[[Any], float]) -> Any:
    """Per ``key``: cumulative counts at each bucket bound, the sum (seconds) and the count, in one GROUP BY."""
    aggregates = {f"le{i}": Count("pk", filter=Q(duration__lte=b)) for i, b in enumerate(bounds)}
    rows = qs.annotate(duration=duration).values(key).annotate(n=Count("pk"), total=Sum("duration"), **aggregates)
    return {
        str(row[key] or ""): {
            "b": [row[f"le{i}"] for i in range(len(bounds))],
            "sum": seconds(row["total"]) if row["total"] is not None else 0.0,
            "n": row["n"],
        }
        for row in rows
    }


def _between(later: str, earlier: str) -> ExpressionWrapper:
    return ExpressionWrapper(F(later) - F(earlier), output_field=DurationField())


def _td(bounds: tuple[float, ...]) -> list[timedelta]:
    return [timedelta(seconds=b) for b in bounds]


def counts_between(start: datetime | None, end: datetime | None) -> Counts:
    """Every counter's increase over rows stamped in [start, end) (None: unbounded)."""
    slugs = dict(Queue.objects.values_list("pk", "slug"))
    counts: Counts = {"received": {}, "triaged": {}, "decided": {}}
    for row in _window(ReviewItem.objects.all(), "received_at", start, end).values("source").annotate(n=Count("pk")):
        counts["received"][row["source"]] = row["n"]
    events = _window(ItemEvent.objects.all(), "at", start, end)
    triaged = events.filter(from_state=ItemState.RECEIVED).values("item__source", "queue_id", "to_state")
    for row in triaged.annotate(n=Count("pk")):
        key = f"{row['item__source']}|{slugs.get(row['queue_id'], '')}|{row['to_state']}"
        counts["triaged"][key] = counts["triaged"].get(key, 0) + row["n"]
    for row in events.filter(event="decided").values("item__source", "queue_id").annotate(n=Count("pk")):
        key = f"{row['item__source']}|{slugs.get(row['queue_id'], '')}"
        counts["decided"][key] = counts["decided"].get(key, 0) + row["n"]
    decisions = _window(
        Decision.objects.filter(is_final=True, is_reversal=False, supersedes__isnull=True), "decided_at", start, end
    )
    claimed = decisions.filter(claimed_at__isnull=False)
    for name, qs, duration, buckets in (
        ("claim_to_decision", claimed, _between("decided_at", "claimed_at"), CLAIM_TO_DECISION_BUCKETS),
        ("received_to_decision", decisions, _between("decided_at", "item__received_at"), RECEIVED_TO_DECISION_BUCKETS),
    ):
        by_id = _histogram(qs, "queue_id", duration, _td(buckets), timedelta.total_seconds)
        counts[name] = {slugs.get(int(k), "") if k else "": v for k, v in by_id.items()}
    counts |= {"classifier_calls": {}, "classifier_items": {}, "classifier_spend": {}, "classifier_latency": {}}
    for backend in settings.SCORING_BACKENDS:
        calls = _window(ClassifierCall.objects.filter(backend=backend), "created_at", start, end)
        for row in calls.values("outcome").annotate(n=Count("pk"), items=Sum("items"), cost=Sum("cost_usd")):
            counts["classifier_calls"][f"{backend}|{row['outcome']}"] = row["n"]
            counts["classifier_items"][backend] = counts["classifier_items"].get(backend, 0) + (row["items"] or 0)
            counts["classifier_spend"][backend] = counts["classifier_spend"].get(backend, 0.0) + float(row["cost"] or 0)
        made = calls.exclude(outcome__in=SKIPPED)
        bounds = [b * 1000 for b in CLASSIFIER_LATENCY_BUCKETS]
        counts["classifier_latency"] |= _histogram(made, "backend", F("latency_ms"), bounds, lambda ms: ms / 1000)
    deliveries = _window(WebhookDelivery.objects.all(), "at", start, end).aggregate(
        ok=Count("pk", filter=Q(delivered=True)),
        failed=Count("pk", filter=Q(delivered=False)),
        last=Count("pk", filter=Q(delivered=False, attempt__gte=settings.WEBHOOK_MAX_ATTEMPTS)),
    )
    counts["webhook_deliveries"] = {"delivered": deliveries["ok"], "failed": deliveries["failed"]}
    counts["webhook_given_up"] = {"": deliveries["last"]}
    return counts


def _add(a: Any, b: Any) -> Any:
    if isinstance(a, dict):
        return {
            "b": [x + y for x, y in zip(a["b"], b["b"], strict=True)],
            "sum": a["sum"] + b["sum"],
            "n": a["n"] + b["n"],
        }
    return a + b


def counts_merge(a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]]) -> Counts:
    merged: Counts = {}
    for family in a.keys() | b.keys():
        left, right = a.get(family, {}), b.get(family, {})
        merged[family] = {
            k: _add(left[k], right[k]) if k in left and k in right else left.get(k, right.get(k))
            for k in left.keys() | right.keys()
        }
    return merged


def gauges_take(now: datetime) -> dict[str, Any]:
    """The live figures: open items per queue and state with the oldest waiting, the triage and webhook backlogs."""
    queues = {
        q["pk"]: {"slug": q["slug"], "sla": q["sla"].total_seconds(), "queued": 0, "claimed": 0, "oldest": None}
        for q in Queue.objects.values("pk", "slug", "sla")
    }
    # Counts by (queue, state) read item_queue_work_idx alone; each queue's oldest is the first entry of its
    # item_queue_fifo_idx: one GROUP BY with MIN would visit every open row's heap tuple instead.
    open_items = ReviewItem.objects.filter(state__in=[ItemState.QUEUED, ItemState.CLAIMED], queue__isnull=False)
    for row in open_items.values("queue_id", "state").annotate(n=Count("*")).order_by():
        queues[row["queue_id"]][row["state"]] = row["n"]
    for pk, queue in queues.items():
        if queue["queued"]:
            waiting = ReviewItem.objects.filter(queue_id=pk, state=ItemState.QUEUED)
            oldest = waiting.order_by("received_at", "id").values_list("received_at", flat=True).first()
            queue["oldest"] = oldest.timestamp() if oldest else None
    untriaged = ReviewItem.objects.filter(state=ItemState.RECEIVED).aggregate(n=Count("*"), oldest=Min("received_at"))
    webhooks = WebhookEvent.objects.pending().aggregate(n=Count("pk"), oldest=Min("created_at"))
    return {
        "queues": {q.pop("slug"): q for q in queues.values()},
        "untriaged": untriaged["n"],
        "untriaged_oldest": untriaged["oldest"].timestamp() if untriaged["oldest"] else None,
        "webhook_pending": webhooks["n"],
        "webhook_pending_oldest": webhooks["oldest"].timestamp() if webhooks["oldest"] else None,
    }


def metrics_snapshot_refresh(*, now: datetime | None = None) -> dict[str, Any]:
    """Move the counters' cut-off forward, recount the recent rows and the gauges; returns the published counters.

    The counters' row is locked for the run, so two runs at once (beat and a manual run) never add a window twice.
    """
    started = time.perf_counter()
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.METRICS_SETTLE_SECONDS)
    with transaction.atomic():
        MetricsSnapshot.objects.bulk_create(
            [MetricsSnapshot(name="counters", data={}, taken_at=now)], ignore_conflicts=True
        )
        row = MetricsSnapshot.objects.select_for_update().get(name="counters")
        previous = DateTimeField().to_python(row.data.get("cutoff")) if row.data.get("cutoff") else None
        settled = row.data.get("settled", {})
        if row.data.get("buckets") != BUCKETS:  # a release changed the histograms' buckets: count history again
            previous, settled = None, {}
        if previous is None or cutoff > previous:
            settled = counts_merge(settled, counts_between(previous, cutoff))
        else:
            cutoff = previous  # the clock went back, or runs came faster than the settle time: keep the cut-off
        published = counts_merge(settled, counts_between(cutoff, None))
        gauges = gauges_take(now)
        gauges["refresh_seconds"] = time.perf_counter() - started
        row.data = {"cutoff": cutoff.isoformat(), "settled": settled, "published": published, "buckets": BUCKETS}
        row.taken_at = now
        row.save(update_fields=["data", "taken_at"])
        MetricsSnapshot.objects.update_or_create(name="gauges", defaults={"data": gauges, "taken_at": now})
    return published
