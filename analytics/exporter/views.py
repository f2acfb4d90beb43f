"""``GET /metrics``: the Prometheus text format, for a scraper holding the token or on an allowed address."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from analytics.exporter.access import scrape_refusal
from analytics.exporter.collector import metrics_exposition


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    refusal = scrape_refusal(request)
    if refusal is not None:
        response = JsonResponse({"error": "not_permitted", "detail": refusal.detail}, status=refusal.status)
        if refusal.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)
