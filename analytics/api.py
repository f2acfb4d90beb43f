"""Metrics API: every registered panel as JSON at ``/api/v1/metrics/<panel>``, with the dashboard's filter.

Readable by API keys with the ``metrics:read`` scope and by signed-in users who may see the dashboards.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import authentication, permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import panels
from analytics.filters import TRUTHS, VIEWS
from analytics.forms import metric_filter_from
from analytics.tables import filter_params, json_value
from ops_platform.core.api_auth import ApiKeyAuthentication
from ops_platform.core.api_errors import error_responses
from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import ApiClient, ApiScope


class CanReadMetrics(permissions.BasePermission):
    message = "Reading metrics needs an API key with the 'metrics:read' scope or the view_analytics permission."

    def has_permission(self, request: Request, view: Any) -> bool:
        who = request.user
        if isinstance(who, ApiClient):
            return who.has_scope(ApiScope.METRICS_READ)
        return bool(who is not None and who.is_authenticated and who.has_perm("core.view_analytics"))


class _MetricsView(APIView):
    # API key first: its WWW-Authenticate header makes an anonymous call a 401, not a 403.
    authentication_classes = [ApiKeyAuthentication, authentication.SessionAuthentication]
    permission_classes = [CanReadMetrics]


# An empty value means "not given": the dashboards' own filter form submits every field.
BLANK_MEANS_UNSET = {"x-blank-means-unset": True}  # becomes allowEmptyValue (ops_platform.core.api_schema)
FILTER_PARAMETERS = [
    OpenApiParameter(
        "period",
        str,
        enum=["7", "14", "28", "90"],
        extensions=BLANK_MEANS_UNSET,
        description="The last N days (default 28); ignored when start or end is given.",
    ),
    OpenApiParameter("start", OpenApiTypes.DATE, extensions=BLANK_MEANS_UNSET, description="First day, YYYY-MM-DD."),
    OpenApiParameter(
        "end", OpenApiTypes.DATE, extensions=BLANK_MEANS_UNSET, description="Last day, inclusive (default today)."
    ),
    OpenApiParameter("queue", int, extensions=BLANK_MEANS_UNSET, description="A queue's id."),
    OpenApiParameter("vendor", int, extensions=BLANK_MEANS_UNSET, description="A vendor's id."),
    OpenApiParameter("policy", int, extensions=BLANK_MEANS_UNSET, description="A policy's id."),
    OpenApiParameter(
        "truth",
        str,
        enum=list(TRUTHS),
        extensions=BLANK_MEANS_UNSET,
        description="Classifier metrics: the human label scores are judged against. `decision` (default): the item's "
        "final human decision; `qa`: QA ground truth of sampled items, weighted by 1/inclusion probability; "
        "`imported`: labels QA imported from elsewhere (golden sets, crowd, vendor tools). Other metrics ignore it.",
    ),
    OpenApiParameter(
        "view",
        str,
        enum=list(VIEWS),
        extensions=BLANK_MEANS_UNSET,
        description="Classifier metrics: `category` (default), each category against violations of its policies; "
        "`any`, the binary view: the highest category score (any category flagged) against any violation.",
    ),
]


def _error(status: int, code: str, detail: str, errors: list[dict[str, str]]) -> Response:
    return Response({"error": code, "detail": detail, "errors": errors}, status=status)


class MetricsIndexApi(_MetricsView):
    @extend_schema(
        operation_id="metrics_list",
        summary="The metrics (dashboard panels) available",
        responses={200: OpenApiTypes.OBJECT, **error_responses(403)},
    )
    def get(self, request: Request) -> Response:
        return Response(
            {
                "metrics": [
                    {"name": p.name, "title": p.title, "area": p.area, "description": p.description}
                    for p in panels.panels_all()
                ]
            }
        )


class MetricApi(_MetricsView):
    @extend_schema(
        operation_id="metrics_retrieve",
        summary="One metric as a table: columns (key, label, kind) and rows, with drill-down links",
        parameters=FILTER_PARAMETERS,
        responses={
            200: OpenApiTypes.OBJECT,
            **error_responses(400, 403, 404, s400="The filter is invalid: each error names the parameter."),
        },
    )
    def get(self, request: Request, name: str) -> Response:
        panel = panels.panel_get(name)
        if panel is None:
            return _error(404, "not_found", f"No metric named {name!r}.", [{"field": "name", "problem": "Not found."}])
        form, f = metric_filter_from(request.query_params)
        if f is None:
            return _error(400, "invalid", "The filter is invalid; see errors.", form.problems())
        as_of = panel.as_of()
        try:
            table = panel.table(f)
        except ApplicationError as e:
            return _error(e.status_code, e.code, e.message, [{"field": e.field or "", "problem": e.message}])
        body = {
            "metric": panel.name,
            "area": panel.area,
            "filter": filter_params(f),
            "as_of": json_value(as_of),
            **table.as_json(),
        }
        return Response(body)
