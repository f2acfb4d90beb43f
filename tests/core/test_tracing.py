"""Optional OpenTelemetry traces (ops_platform/core/tracing.py): off, nothing is traced; on, an item submitted over
HTTP and triaged by a Celery worker makes one trace, the task's span a child of the request's through the
``traceparent`` the message carried."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import signals
from celery.contrib.testing.worker import start_worker
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ops_platform.celery import app as celery_app
from ops_platform.core.tracing import tracing_configure
from queues.models import ItemState, ReviewItem
from tests.conftest import Api, RedisServer, celery_publishing_to, item, wait_until


@pytest.fixture
def spans(settings) -> Iterator[InMemorySpanExporter]:
    """Tracing on, every finished span of this process kept in memory (the SDK's provider is installed once per
    process: a later test adds its own exporter to it)."""
    settings.TRACING_ENABLED = True
    settings.TRACING_EXPORTER = "none"
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    assert tracing_configure()
    yield exporter
    exporter.shutdown()  # a shut-down exporter drops what later tests' spans would add


def close_connections(**_: object) -> None:
    connections.close_all()


@pytest.fixture
def worker_closes_connections() -> Iterator[None]:
    """An in-process worker closes its thread's database connection after each task: left open, it would keep
    the test database from being dropped at the end of the run."""
    signals.task_postrun.connect(close_connections, weak=False, dispatch_uid="test-tracing-close")
    yield
    signals.task_postrun.disconnect(dispatch_uid="test-tracing-close")


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    matching = [s for s in finished if s.name == name]
    assert len(matching) == 1, [s.name for s in finished]
    return matching[0]


def test_tracing_is_off_by_default(settings):
    assert settings.TRACING_ENABLED is False
    assert tracing_configure() is False


def test_an_unknown_exporter_is_refused_naming_the_setting(settings):
    settings.TRACING_ENABLED = True
    settings.TRACING_EXPORTER = "otlp"

    with pytest.raises(ImproperlyConfigured, match="TRACING_EXPORTER"):
        tracing_configure()


@pytest.mark.django_db
def test_an_intake_call_is_a_server_span_named_by_its_route(api: Api, spans: InMemorySpanExporter):
    response = api.post("/api/v1/items", item(1))

    assert response.status_code == 201
    request = by_name(spans.get_finished_spans(), "POST api/v1/items")
    assert request.kind == trace.SpanKind.SERVER
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 201


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.celery_worker
@pytest.mark.django_db(transaction=True)
def test_an_item_submitted_over_http_and_triaged_by_a_worker_is_one_trace(
    api: Api, redis_server: RedisServer, spans: InMemorySpanExporter, worker_closes_connections: None
):
    with celery_publishing_to(redis_server.url):
        response = api.post("/api/v1/items", item(1))
        assert response.status_code == 201
        item_id = response.json()["id"]
        # A real worker consuming the real message from Redis, in this process so its spans reach the exporter.
        with start_worker(celery_app, pool="solo", perform_ping_check=False, queues=["triage"], loglevel="WARNING"):
            wait_until(
                lambda: ReviewItem.objects.get(pk=item_id).state != ItemState.RECEIVED,
                timeout=60,
                what="the worker to triage the item",
            )
            wait_until(
                lambda: any(s.name == "run routing.tasks.items_triage_task" for s in spans.get_finished_spans()),
                timeout=10,
                what="the task's span to end",
            )

    finished = spans.get_finished_spans()
    request = by_name(finished, "POST api/v1/items")
    task = by_name(finished, "run routing.tasks.items_triage_task")
    score = by_name(finished, "triage.score")
    route = by_name(finished, "triage.route")
    assert task.kind == trace.SpanKind.CONSUMER
    assert request.context is not None
    assert task.parent is not None
    assert task.context is not None
    assert task.context.trace_id == request.context.trace_id
    assert task.parent.span_id == request.context.span_id
    assert task.parent.is_remote  # it came through the message's headers, not this thread's context
    for inner in (score, route):
        assert inner.parent is not None
        assert inner.parent.span_id == task.context.span_id
    assert route.attributes is not None
    assert route.attributes["ops.items_routed"] == 1
