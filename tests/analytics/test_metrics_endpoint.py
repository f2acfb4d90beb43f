"""/metrics: scraped over HTTP, parsed with prometheus-client's own text parser and checked against the rows it
counts; the counters' settle-and-recount bookkeeping; who may scrape; Celery queue lengths read from a real Redis."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings as django_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from analytics.exporter import refresh
from analytics.exporter.collector import metrics_exposition
from analytics.exporter.refresh import metrics_snapshot_refresh
from analytics.models import MetricsSnapshot
from analytics.tasks import metrics_refresh_task
from ops_platform.core.models import ApiClient, Policy, User, WebhookDelivery, WebhookEvent
from queues.models import Decision, EnforcementAction, ItemEvent, ItemState, Queue, ReviewItem
from queues.services.claims import item_claim
from queues.services.decisions import decision_record
from queues.services.placement import items_auto_action, items_enqueue
from routing.scoring.guards import CircuitBreaker
from routing.scoring.models import ClassifierCall
from tests.conftest import celery_publishing_to

TOKEN = "scrape-token-for-tests"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def _item(n: int, source: str, received: datetime) -> ReviewItem:
    return ReviewItem.objects.create(source=source, external_id=f"m-{n}", text="x", received_at=received)


def world(now: datetime, reviewer: User) -> dict[str, Queue]:
    """Items in every state over two sources and two queues, classifier usage and webhook attempts."""
    fast = Queue.objects.create(slug="fast", name="Fast", sla=timedelta(hours=1))
    slow = Queue.objects.create(slug="slow", name="Slow", sla=timedelta(hours=4))
    ago = [timedelta(minutes=m) for m in (400, 300, 190, 95, 61, 30, 12, 1)]
    items = [_item(n, "s1" if n % 3 else "s2", now - a) for n, a in enumerate(ago)]
    items.append(_item(99, "s2", now - timedelta(seconds=20)))  # un-triaged, inside the settle window
    for it, queue in zip(items[:6], [fast, fast, slow, fast, slow, fast], strict=True):
        items_enqueue(item_ids=[it.pk], queue=queue, actor="rules", at=it.received_at + timedelta(minutes=1))
    policy = Policy.objects.create(slug="spam", name="Spam", guidelines="-")
    action = EnforcementAction.objects.create(slug="remove", name="Remove")
    items_auto_action(item_ids=[items[6].pk], actor="rules", policy=policy, action=action, reason="r", at=now)
    for it, claim_after, decide_after in [(items[0], 10, 13), (items[1], 50, 52), (items[3], 2, 3)]:
        it.refresh_from_db()
        claimed = it.received_at + timedelta(minutes=claim_after)
        item_claim(item=it, actor=reviewer, at=claimed)
        decision_record(
            item=it, actor=reviewer, is_violation=False, at=it.received_at + timedelta(minutes=decide_after)
        )
    items[2].refresh_from_db()
    item_claim(item=items[2], actor=reviewer, at=now - timedelta(minutes=5))
    for backend, outcome, ms, cost in [
        ("local", "ok", 20, "0"),
        ("local", "ok", 40, "0"),
        ("local", "ok", 300, "0"),
        ("openai_moderation", "ok", 500, "0.012"),
        ("openai_moderation", "server_error", 1200, "0"),
        ("openai_moderation", "circuit_open", 0, "0"),
    ]:
        ClassifierCall.objects.create(
            backend=backend, outcome=outcome, items=5, latency_ms=ms, cost_usd=Decimal(cost), created_at=now
        )
    client = ApiClient.objects.create(name="s1", source="s1")
    events = [WebhookEvent.objects.create(client=client, event_type="decision.final", payload={}) for _ in range(3)]
    WebhookEvent.objects.filter(pk=events[0].pk).update(delivered_at=now)
    WebhookEvent.objects.filter(pk=events[1].pk).update(gave_up_at=now)
    WebhookEvent.objects.filter(pk=events[2].pk).update(created_at=now - timedelta(minutes=7))
    WebhookDelivery.objects.create(event=events[0], attempt=1, at=now - timedelta(hours=1), delivered=True)
    WebhookDelivery.objects.create(event=events[1], attempt=1, at=now - timedelta(hours=1), status_code=500)
    last = django_settings.WEBHOOK_MAX_ATTEMPTS
    WebhookDelivery.objects.create(event=events[1], attempt=last, at=now, status_code=503)
    WebhookDelivery.objects.create(event=events[2], attempt=1, at=now, error="ConnectError")
    return {"fast": fast, "slow": slow}


def reference_histogram(durations: list[float], bounds: tuple[float, ...]) -> dict[str, float]:
    out = {f"{b:g}": float(sum(d <= b for d in durations)) for b in bounds}
    return out | {"+Inf": float(len(durations)), "sum": sum(durations)}


def scraped_histogram(found: Samples, name: str, **labels: str) -> dict[str, float]:
    out = {}
    for (n, pairs), v in found.items():
        found_labels = dict(pairs)
        le = found_labels.pop("le", None)
        if n == f"{name}_bucket" and le is not None and found_labels == labels:
            out[le] = v
    return out | {"sum": value(found, f"{name}_sum", **labels)}


@pytest.mark.django_db(transaction=True)
def test_a_scrape_over_http_shows_what_the_database_holds(live_server: Any, settings: Any, reviewer: User) -> None:
    settings.METRICS_TOKEN = TOKEN
    now = timezone.now()
    world(now, reviewer)
    for _ in range(settings.SCORING_BREAKER_FAILURES):
        CircuitBreaker("openai_policy").failure()
    metrics_refresh_task.apply(throw=True)  # the task the schedule runs, in this process
    before = time.time()
    response = httpx.get(f"{live_server.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    after = time.time()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    found = samples(response.text)

    items = list(ReviewItem.objects.all())
    source = {it.pk: it.source for it in items}
    for src, n in Counter(it.source for it in items).items():
        assert value(found, "ops_items_received_total", source=src) == n
    triaged = Counter(
        (source[e.item_id], e.queue.slug if e.queue else "", e.to_state)
        for e in ItemEvent.objects.filter(from_state=ItemState.RECEIVED).select_related("queue")
    )
    assert len(triaged) >= 4
    for (src, queue, outcome), n in triaged.items():
        assert value(found, "ops_items_triaged_total", source=src, queue=queue, outcome=outcome) == n
    decided = Counter((source[e.item_id], e.queue.slug) for e in ItemEvent.objects.filter(event="decided"))
    assert sum(decided.values()) == 3
    for (src, queue), n in decided.items():
        assert value(found, "ops_items_decided_total", source=src, queue=queue) == n

    decisions = list(Decision.objects.filter(is_final=True, supersedes__isnull=True).select_related("item", "queue"))
    assert {d.queue.slug for d in decisions} == {"fast"}
    for slug in ("fast",):
        mine = [d for d in decisions if d.queue.slug == slug]
        claim = [(d.decided_at - d.claimed_at).total_seconds() for d in mine]
        whole = [(d.decided_at - d.item.received_at).total_seconds() for d in mine]
        assert scraped_histogram(found, "ops_claim_to_decision_seconds", queue=slug) == pytest.approx(
            reference_histogram(claim, refresh.CLAIM_TO_DECISION_BUCKETS)
        )
        assert scraped_histogram(found, "ops_received_to_decision_seconds", queue=slug) == pytest.approx(
            reference_histogram(whole, refresh.RECEIVED_TO_DECISION_BUCKETS)
        )

    calls = list(ClassifierCall.objects.all())
    for (backend, outcome), n in Counter((c.backend, c.outcome) for c in calls).items():
        assert value(found, "ops_classifier_calls_total", backend=backend, outcome=outcome) == n
    assert value(found, "ops_classifier_spend_usd_total", backend="openai_moderation") == pytest.approx(0.012)
    assert value(found, "ops_classifier_items_total", backend="local") == 15
    made = [c.latency_ms / 1000 for c in calls if c.backend == "openai_moderation" and c.outcome != "circuit_open"]
    assert scraped_histogram(found, "ops_classifier_call_seconds", backend="openai_moderation") == pytest.approx(
        reference_histogram(made, refresh.CLASSIFIER_LATENCY_BUCKETS)
    )
    assert value(found, "ops_classifier_circuit_state", backend="openai_policy", state="open") == 1
    assert value(found, "ops_classifier_circuit_state", backend="local", state="closed") == 1

    deliveries = list(WebhookDelivery.objects.all())
    assert value(found, "ops_webhook_deliveries_total", outcome="delivered") == sum(d.delivered for d in deliveries)
    assert value(found, "ops_webhook_deliveries_total", outcome="failed") == sum(not d.delivered for d in deliveries)
    assert value(found, "ops_webhook_events_given_up_total") == 1
    pending = list(WebhookEvent.objects.pending())
    assert value(found, "ops_webhook_backlog_events") == len(pending) == 1
    assert before - pending[0].created_at.timestamp() - 1 <= value(found, "ops_webhook_backlog_oldest_age_seconds")

    for queue in Queue.objects.all():
        for state in (ItemState.QUEUED, ItemState.CLAIMED):
            n = sum(1 for it in items if it.queue_id == queue.pk and it.state == state)
            assert value(found, "ops_queue_depth", queue=queue.slug, state=state) == n
        waiting = [it.received_at.timestamp() for it in items if it.queue_id == queue.pk and it.state == "queued"]
        age = value(found, "ops_queue_oldest_waiting_age_seconds", queue=queue.slug)
        assert before - min(waiting) <= age <= after - min(waiting) + 1  # the scrape's own clock, not a timing
        assert value(found, "ops_queue_sla_seconds", queue=queue.slug) == queue.sla.total_seconds()
    untriaged = [it for it in items if it.state == ItemState.RECEIVED]
    assert value(found, "ops_triage_backlog_items") == len(untriaged) == 2
    oldest = min(it.received_at.timestamp() for it in untriaged)
    assert before - oldest <= value(found, "ops_triage_lag_seconds") <= after - oldest + 1


@pytest.mark.django_db
def test_counters_settle_once_and_recount_the_recent_rows(settings: Any) -> None:
    """Runs at moving clocks: each run's published count is every row, and rows past the cut-off are added once."""
    settings.METRICS_SETTLE_SECONDS = 120
    start = timezone.now() - timedelta(hours=1)
    for n in range(30):
        _item(n, "s1", start + timedelta(minutes=2 * n))  # one every 2 minutes, the last at start + 58 min
    for step in range(0, 70, 7):
        run_at = start + timedelta(minutes=step)
        published = metrics_snapshot_refresh(now=run_at)
        assert published["received"]["s1"] == 30
        settled = MetricsSnapshot.objects.get(name="counters").data["settled"].get("received", {}).get("s1", 0)
        assert settled == ReviewItem.objects.filter(received_at__lt=run_at - timedelta(seconds=120)).count()
    metrics_snapshot_refresh(now=start + timedelta(minutes=30))  # a clock that went back keeps the later cut-off
    data = MetricsSnapshot.objects.get(name="counters").data
    assert data["settled"]["received"]["s1"] == 30
    assert data["published"]["received"]["s1"] == 30


@pytest.mark.django_db(transaction=True)
def test_unauthenticated_scrapes_are_refused(live_server: Any, settings: Any) -> None:
    metrics_snapshot_refresh()
    url = f"{live_server.url}/metrics"
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_ADDRESSES = "", []
    off = httpx.get(url)
    assert off.status_code == 403
    assert "METRICS_TOKEN" in off.json()["detail"]
    settings.METRICS_TOKEN = TOKEN
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        refused = httpx.get(url, headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "ops_" not in refused.text
    assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_ADDRESSES = "", ["10.0.0.0/8", "::1"]
    assert httpx.get(url).status_code == 403  # the live server sees 127.0.0.1
    settings.METRICS_ALLOWED_ADDRESSES = ["10.0.0.0/8", "127.0.0.0/30"]
    allowed = httpx.get(url)
    assert allowed.status_code == 200
    assert "ops_items_received" in allowed.text
    posted = httpx.post(url)  # refused by the CSRF check (no token) or, past it, by the view's GET only
    assert posted.status_code in (403, 405)
    assert "ops_" not in posted.text


@pytest.mark.django_db
def test_celery_queue_lengths_come_from_the_redis_broker(settings: Any, shared_redis_url: str) -> None:
    # Into the context first: it restores Celery's configuration as it finds it, and Celery reads Django's
    # settings through, so settings changed before it would be "restored" for the rest of the run.
    with celery_publishing_to(shared_redis_url):
        settings.CELERY_BROKER_URL, settings.CELERY_TASK_ALWAYS_EAGER = shared_redis_url, False
        for _ in range(3):
            metrics_refresh_task.delay()  # routed to the analytics queue; no worker takes it here
        found = samples(metrics_exposition().decode())
    broker = redis.Redis.from_url(shared_redis_url)
    assert value(found, "ops_celery_queue_length", queue="analytics") == broker.llen("analytics") == 3
    assert value(found, "ops_celery_queue_length", queue="triage") == 0
    assert ("ops_metrics_snapshot_age_seconds", ()) not in found  # the job never ran: no figure, not a zero


@pytest.mark.django_db
def test_new_histogram_buckets_count_the_history_again() -> None:
    """Settled histograms of other buckets cannot be added to: a release that changes them recounts from scratch."""
    now = timezone.now()
    for n in range(4):
        _item(n, "s1", now - timedelta(hours=n + 1))
    metrics_snapshot_refresh(now=now)
    row = MetricsSnapshot.objects.get(name="counters")
    row.data["buckets"] = [[1, 2], [3], [4]]
    row.data["settled"]["received"]["s1"] = 1000  # what an earlier layout had settled is dropped, not added to
    row.save()
    published = metrics_snapshot_refresh(now=now + timedelta(minutes=1))
    assert published["received"]["s1"] == 4
    assert MetricsSnapshot.objects.get(name="counters").data["buckets"] == refresh.BUCKETS
