"""Optional OpenTelemetry traces of an item's path: the intake request, the triage task, scoring and routing.

Off by default (``TRACING_ENABLED``). On, every HTTP request is a server span (continuing the caller's trace
when it sends a W3C ``traceparent``), a task published while a span is current carries the trace context in its
message headers, and the worker runs the task in a consumer span whose parent is the publisher's: an item's
intake call, its triage task and the scoring and routing inside it form one trace across processes.

Only the OpenTelemetry API is used where spans are made; ``tracing_configure`` installs the SDK's provider with
the exporter ``TRACING_EXPORTER`` names unless the deployment already installed one (``opentelemetry-instrument``,
or its own code), which then receives the spans. Span attributes are ids and counts, never content.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from celery import signals
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

tracer = trace.get_tracer("ops_platform")

_configured = threading.Lock()
# Task id -> (span, context token) between task_prerun and task_postrun, in the worker's thread.
_running: dict[str, tuple[trace.Span, object]] = {}


def tracing_configure() -> bool:
    """When ``TRACING_ENABLED``: install an SDK provider if none is, and join Celery's publish and run signals.
    Idempotent; returns whether tracing is on."""
    if not settings.TRACING_ENABLED:
        return False
    with _configured:
        if settings.TRACING_EXPORTER not in ("console", "none"):
            exporter = settings.TRACING_EXPORTER
            raise ImproperlyConfigured(f"TRACING_EXPORTER must be 'console' or 'none', not {exporter!r}")
        if not isinstance(trace.get_tracer_provider(), TracerProvider):
            provider = TracerProvider()
            if settings.TRACING_EXPORTER == "console":
                provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
            trace.set_tracer_provider(provider)
        signals.before_task_publish.connect(_task_publish, weak=False, dispatch_uid="ops-tracing-publish")
        signals.task_prerun.connect(_task_start, weak=False, dispatch_uid="ops-tracing-prerun")
        signals.task_postrun.connect(_task_end, weak=False, dispatch_uid="ops-tracing-postrun")
    return True


def _task_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """The current trace context goes into the message's headers (``traceparent``)."""
    if settings.TRACING_ENABLED and headers is not None:
        propagate.inject(headers)


def _task_start(task_id: str = "", task: Any = None, **_: Any) -> None:
    if not settings.TRACING_ENABLED:
        return
    request = getattr(task, "request", None)
    carrier = {key: getattr(request, key) for key in ("traceparent", "tracestate") if getattr(request, key, None)}
    parent = propagate.extract(carrier) if carrier else None
    name = getattr(task, "name", "task")
    span = tracer.start_span(f"run {name}", context=parent, kind=trace.SpanKind.CONSUMER)
    span.set_attribute("celery.task_id", task_id)
    _running[task_id] = (span, context.attach(trace.set_span_in_context(span)))


def _task_end(task_id: str = "", **_: Any) -> None:
    started = _running.pop(task_id, None)
    if started is not None:
        span, token = started
        context.detach(token)  # type: ignore[arg-type]
        span.end()


class TracingMiddleware:
    """Each request in a server span named by its method and route, when tracing is on."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not settings.TRACING_ENABLED:
            return self.get_response(request)
        parent = propagate.extract({k.lower(): v for k, v in request.headers.items()})
        with tracer.start_as_current_span(str(request.method), context=parent, kind=trace.SpanKind.SERVER) as span:
            response = self.get_response(request)
            match = getattr(request, "resolver_match", None)
            if match is not None and match.route:
                span.update_name(f"{request.method} {match.route}")
            span.set_attribute("http.response.status_code", response.status_code)
            return response
