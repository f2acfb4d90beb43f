"""A prometheus-client collector over the ``MetricsSnapshot`` rows: one query per scrape, plus the circuit states
(a cache read per backend) and, when the broker is Redis, each Celery queue's length (LLEN, pipelined)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import redis
from django.conf import settings
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from analytics.exporter import refresh
from analytics.models import MetricsSnapshot
from routing.scoring.guards import CircuitBreaker

logger = logging.getLogger(__name__)

CIRCUIT_STATES = ("closed", "half-open", "open")
# kombu's Redis transport keeps a queue's prioritised messages in lists named after it with these suffixes.
PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def _counter(name: str, doc: str, labels: list[str], series: dict[str, Any]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in sorted(series.items()):
        family.add_metric(key.split("|") if labels else [], value)
    return family


def _histogram(name: str, doc: str, label: str, bounds: tuple[float, ...], series: dict[str, Any]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key, h in sorted(series.items()):
        buckets = [(f"{b:g}", count) for b, count in zip(bounds, h["b"], strict=True)] + [("+Inf", h["n"])]
        family.add_metric([key], buckets, h["sum"])
    return family


def _age(now: float, timestamp: float | None) -> float:
    return max(0.0, now - timestamp) if timestamp is not None else 0.0


def celery_queue_names() -> list[str]:
    routes: dict[str, dict[str, str]] = settings.CELERY_TASK_ROUTES
    return sorted({settings.CELERY_TASK_DEFAULT_QUEUE, *(route["queue"] for route in routes.values())})


def celery_queue_lengths() -> dict[str, int] | None:
    """Messages waiting in each Celery queue, when the broker is Redis; None otherwise or when it does not answer."""
    url: str = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://")) or settings.CELERY_TASK_ALWAYS_EAGER:
        return None
    names = celery_queue_names()
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        pipe = client.pipeline(transaction=False)
        for name in names:
            for suffix in PRIORITY_SUFFIXES:
                pipe.llen(name + suffix)
        lengths = pipe.execute()
    except redis.RedisError as exc:
        logger.warning("metrics: the broker did not answer (%s)", type(exc).__name__)
        return None
    width = len(PRIORITY_SUFFIXES)
    return {name: sum(lengths[i * width : (i + 1) * width]) for i, name in enumerate(names)}


class SnapshotCollector(Collector):
    """Every ``ops_*`` metric: docs/metrics.md lists them."""

    def collect(self) -> Iterator[Metric]:
        rows = {row.name: row for row in MetricsSnapshot.objects.all()}
        now = time.time()
        up = GaugeMetricFamily("ops_metrics_snapshot_age_seconds", "Seconds since the metrics job last ran.")
        counters_row, gauges_row = rows.get("counters"), rows.get("gauges")
        if counters_row is None or gauges_row is None:
            yield up  # no sample: the job has never run (an alert on absent() catches it)
            yield from self._live()
            return
        up.add_metric([], _age(now, min(counters_row.taken_at, gauges_row.taken_at).timestamp()))
        yield up
        c: dict[str, Any] = counters_row.data.get("published", {})
        g: dict[str, Any] = gauges_row.data
        yield GaugeMetricFamily(
            "ops_metrics_refresh_duration_seconds", "How long the metrics job's last run took.", g["refresh_seconds"]
        )
        yield _counter("ops_items_received", "Items received by intake.", ["source"], c.get("received", {}))
        yield _counter(
            "ops_items_triaged",
            "Items triaged: placed in a queue (state queued) or closed by a rule (auto_actioned, queue empty).",
            ["source", "queue", "outcome"],
            c.get("triaged", {}),
        )
        yield _counter("ops_items_decided", "Items decided by a person.", ["source", "queue"], c.get("decided", {}))
        yield _histogram(
            "ops_claim_to_decision_seconds",
            "Final decisions: time from the reviewer's claim to the decision.",
            "queue",
            refresh.CLAIM_TO_DECISION_BUCKETS,
            c.get("claim_to_decision", {}),
        )
        yield _histogram(
            "ops_received_to_decision_seconds",
            "Final decisions: time from the item's receipt to the decision.",
            "queue",
            refresh.RECEIVED_TO_DECISION_BUCKETS,
            c.get("received_to_decision", {}),
        )
        yield _counter(
            "ops_classifier_calls",
            "Classifier calls (and skipped calls) by outcome; every outcome but ok is an error or a skip.",
            ["backend", "outcome"],
            c.get("classifier_calls", {}),
        )
        yield _counter(
            "ops_classifier_items", "Items sent to a classifier.", ["backend"], c.get("classifier_items", {})
        )
        yield _counter(
            "ops_classifier_spend_usd", "Estimated classifier spend in USD.", ["backend"], c.get("classifier_spend", {})
        )
        yield _histogram(
            "ops_classifier_call_seconds",
            "Latency of classifier calls that were made (skips left out).",
            "backend",
            refresh.CLASSIFIER_LATENCY_BUCKETS,
            c.get("classifier_latency", {}),
        )
        yield _counter(
            "ops_webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered: a 2xx answer).",
            ["outcome"],
            c.get("webhook_deliveries", {}),
        )
        yield _counter(
            "ops_webhook_events_given_up",
            "Webhook events given up after their last attempt.",
            [],
            c.get("webhook_given_up", {}),
        )
        depth = GaugeMetricFamily(
            "ops_queue_depth", "Open items per queue: queued (waiting) or claimed.", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "ops_queue_oldest_waiting_age_seconds",
            "Age since receipt of the oldest queued item (0: none).",
            labels=["queue"],
        )
        sla = GaugeMetricFamily(
            "ops_queue_sla_seconds", "The queue's target time from receipt to decision.", labels=["queue"]
        )
        for slug, q in sorted(g["queues"].items()):
            depth.add_metric([slug, "queued"], q["queued"])
            depth.add_metric([slug, "claimed"], q["claimed"])
            oldest.add_metric([slug], _age(now, q["oldest"]))
            sla.add_metric([slug], q["sla"])
        yield from (depth, oldest, sla)
        yield GaugeMetricFamily("ops_triage_backlog_items", "Items received and not yet triaged.", g["untriaged"])
        yield GaugeMetricFamily(
            "ops_triage_lag_seconds",
            "Age of the oldest item not yet triaged (0: none).",
            _age(now, g["untriaged_oldest"]),
        )
        yield GaugeMetricFamily(
            "ops_webhook_backlog_events", "Webhook events not yet delivered nor given up.", g["webhook_pending"]
        )
        yield GaugeMetricFamily(
            "ops_webhook_backlog_oldest_age_seconds",
            "Age of the oldest webhook event not yet delivered (0: none).",
            _age(now, g["webhook_pending_oldest"]),
        )
        yield from self._live()

    def _live(self) -> Iterator[Metric]:
        circuit = GaugeMetricFamily(
            "ops_classifier_circuit_state",
            "1 for the circuit breaker's current state per backend.",
            labels=["backend", "state"],
        )
        for backend in settings.SCORING_BACKENDS:
            current = CircuitBreaker(backend).state()
            for state in CIRCUIT_STATES:
                circuit.add_metric([backend, state], 1.0 if state == current else 0.0)
        yield circuit
        lengths = celery_queue_lengths()
        if lengths is not None:
            family = GaugeMetricFamily(
                "ops_celery_queue_length", "Messages waiting in a Celery queue (Redis LLEN).", labels=["queue"]
            )
            for name, length in lengths.items():
                family.add_metric([name], length)
            yield family


def metrics_exposition() -> bytes:
    """The Prometheus text format of every metric."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector())
    return generate_latest(registry)
