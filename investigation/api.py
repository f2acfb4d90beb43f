"""``GET /api/v1/search/items``: the investigation search as JSON, for people signed in (the page's session).

The same form, service, scope and audit as the page: a vendor's people find only their queues' items, content
only for the roles that may read it. API keys belong to integrating services, which search nothing: 403.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from investigation import services
from investigation.forms import DECISIONS, search_form_for
from investigation.selectors import FoundItem, may_search
from ops_platform.core.api_auth import ApiKeyAuthentication
from ops_platform.core.api_errors import error_responses
from ops_platform.core.models import ClassifierCategory, User


class MaySearch(permissions.BasePermission):
    message = "Searching items needs a signed-in senior reviewer, QA, policy, ops or admin role (not an API key)."

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, User) and may_search(request.user)


BLANK_MEANS_UNSET = {"x-blank-means-unset": True}
PARAMETERS = [
    OpenApiParameter("q", str, extensions=BLANK_MEANS_UNSET, description="Text: full-text words (PostgreSQL)."),
    OpenApiParameter("item", int, extensions=BLANK_MEANS_UNSET, description="An item's id."),
    OpenApiParameter("external_id", str, extensions=BLANK_MEANS_UNSET, description="The client's id of the item."),
    OpenApiParameter("source", str, extensions=BLANK_MEANS_UNSET, description="The submitting source (a slug)."),
    OpenApiParameter("author", str, extensions=BLANK_MEANS_UNSET, description="The author reference (account)."),
    OpenApiParameter("queue", int, extensions=BLANK_MEANS_UNSET, description="A queue's id."),
    OpenApiParameter("policy", int, extensions=BLANK_MEANS_UNSET, description="The final decision's policy id."),
    OpenApiParameter(
        "decision",
        str,
        enum=[v for v, _ in DECISIONS if v],
        extensions=BLANK_MEANS_UNSET,
        description="Final decision.",
    ),
    OpenApiParameter("received_from", OpenApiTypes.DATE, extensions=BLANK_MEANS_UNSET, description="YYYY-MM-DD."),
    OpenApiParameter("received_to", OpenApiTypes.DATE, extensions=BLANK_MEANS_UNSET, description="Inclusive."),
    OpenApiParameter(
        "score_category",
        str,
        enum=list(ClassifierCategory.values),
        extensions=BLANK_MEANS_UNSET,
        description="Category.",
    ),
    OpenApiParameter("score_min", float, extensions=BLANK_MEANS_UNSET, description="Any backend's score ≥ this."),
    OpenApiParameter("score_max", float, extensions=BLANK_MEANS_UNSET, description="Any backend's score ≤ this."),
    OpenApiParameter("before", int, extensions=BLANK_MEANS_UNSET, description="The previous page's `next_before`."),
]


def _row(row: FoundItem, *, content: bool) -> dict[str, Any]:
    item, decision = row.item, row.decision
    data: dict[str, Any] = {
        "id": item.pk,
        "source": item.source,
        "external_id": item.external_id,
        "kind": item.kind,
        "state": item.state,
        "queue": item.queue.slug if item.queue else None,
        "author_ref": item.author_ref,
        "account_url": row.account_url,
        "received_at": item.received_at.isoformat(),
        "decided_at": item.decided_at.isoformat() if item.decided_at else None,
        "decision": None
        if decision is None
        else {
            "is_violation": decision.is_violation,
            "policy": decision.policy.slug if decision.policy else None,
            "action": decision.action.slug if decision.action else None,
        },
    }
    if content:
        data["excerpt"] = row.excerpt
    return data


class ItemSearchApi(APIView):
    # API key first: its WWW-Authenticate header makes an anonymous call a 401, not a 403.
    authentication_classes = [ApiKeyAuthentication, SessionAuthentication]
    permission_classes = [MaySearch]

    @extend_schema(
        operation_id="search_items",
        summary="Search items (investigation): the items the signed-in person may see, newest first",
        parameters=PARAMETERS,
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401, 403)},
    )
    def get(self, request: Request) -> Response:
        assert isinstance(request.user, User)  # MaySearch let only people in
        form = search_form_for(request.user, request.query_params)
        if not form.is_valid():
            errors = [{"field": k, "problem": " ".join(map(str, v))} for k, v in form.errors.items()]
            return Response({"error": "invalid", "detail": "The search is invalid; see errors.", "errors": errors}, 400)
        search_filter = form.search_filter()
        results = services.items_search(actor=request.user, search=search_filter, via="api")
        return Response(
            {
                "items": [_row(r, content=results.content) for r in results.rows],
                "content_shown": results.content,
                "next_before": results.next_before,
                "next": None
                if results.next_before is None
                else f"{request.path}?{urlencode({**search_filter.params(), 'before': results.next_before})}",
            }
        )
