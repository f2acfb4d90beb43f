"""Intake REST API: ``POST /api/v1/items`` (one item or up to 1,000), ``GET /api/v1/items/{id}`` and ``POST
/api/v1/appeals``. HTTP statuses are chosen here, from the services' domain results and errors."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ops_platform.core.api_errors import error_responses, flatten_errors
from ops_platform.core.models import ApiClient, ApiScope
from queues.selectors import item_final_decision, item_get_for_source
from routing.intake.idempotency import StoredResponse, idempotent_call
from routing.intake.selectors import appeal_of
from routing.intake.serializers import AppealIn, AppealResult, ItemBatchResult, ItemIn, ItemOut, ItemResult
from routing.intake.services import appeal_ingest, items_ingest

# One item (an object) or up to 1,000 (a list).
ITEM_OR_ITEMS = PolymorphicProxySerializer(
    component_name="ItemOrItems",
    serializers=[ItemIn, ItemIn(many=True)],
    resource_type_field_name=None,
    many=False,
)
# A single item answers with its own result, a list with the batch summary; either may be 201 or 200.
ITEM_OR_BATCH = PolymorphicProxySerializer(
    component_name="ItemOrBatchResult", serializers=[ItemResult, ItemBatchResult], resource_type_field_name=None
)


def _invalid(errors: list[dict[str, Any]]) -> StoredResponse:
    return StoredResponse(400, {"error": "invalid", "detail": "The request is invalid; see errors.", "errors": errors})


def ingest(client: ApiClient, data: Any) -> StoredResponse:
    """Validate everything first (all or nothing), then store; per item 201 created or 200 already held."""
    batch = isinstance(data, list)
    if batch:
        if not data:
            return _invalid([{"problem": "The list is empty."}])
        if len(data) > settings.API_MAX_BATCH_ITEMS:
            return _invalid([{"problem": f"At most {settings.API_MAX_BATCH_ITEMS} items per call; got {len(data)}."}])
        not_objects = [
            {"index": i, "problem": "Each item must be a JSON object."}
            for i, d in enumerate(data)
            if not isinstance(d, dict)
        ]
        if not_objects:
            return _invalid(not_objects)
    elif not isinstance(data, dict):
        return _invalid([{"problem": "Send one item as a JSON object or a list of items."}])
    serializer = ItemIn(data=data, many=batch)
    if not serializer.is_valid():
        if not batch:
            return _invalid(flatten_errors(serializer.errors))
        errors = []
        per_item = serializer.errors
        pairs = per_item.items() if isinstance(per_item, dict) else enumerate(per_item)
        for index, item_errors in pairs:
            errors += [{"index": index, **e} for e in flatten_errors(item_errors)]
        return _invalid(errors)
    validated = serializer.validated_data if batch else [serializer.validated_data]
    results = items_ingest(client=client, items=validated)
    rows = [
        {
            "index": r.index,
            "id": r.id,
            "external_id": r.external_id,
            "status": 201 if r.created else 200,
            "state": r.state,
        }
        for r in results
    ]
    if not batch:
        return StoredResponse(201 if results[0].created else 200, rows[0])
    created = sum(1 for r in results if r.created)
    body = {"created": created, "existing": len(rows) - created, "results": rows}
    return StoredResponse(201 if created else 200, body)


class ItemsApi(APIView):
    required_scopes = {"POST": ApiScope.ITEMS_WRITE}

    @extend_schema(
        operation_id="items_create",
        summary="Submit one item, or a list of up to 1,000",
        description=(
            "Idempotent by (your source, external_id): an item already held answers 200 with its id, a new one "
            "201. With a list, the call answers 201 if any item was created (200 otherwise) and every result "
            "carries its own status. Validation is all or nothing. Send `Idempotency-Key` to make a retried call "
            "replay the first call's response."
        ),
        request=ITEM_OR_ITEMS,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                {"type": "string", "minLength": 1, "maxLength": 200},
                OpenApiParameter.HEADER,
                required=False,
                description="Replays the first call's response to retries with the same key (24 h).",
            )
        ],
        responses={
            201: OpenApiResponse(ITEM_OR_BATCH, description="Created (a list: at least one item created)."),
            200: OpenApiResponse(ITEM_OR_BATCH, description="Already held (a list: every item already held)."),
            **error_responses(
                400, 403, 409, 413, 422, s409="A call with this Idempotency-Key is still running; retry shortly."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        client = request.user
        assert isinstance(client, ApiClient)
        data = request.data
        key = request.headers.get("Idempotency-Key")
        replayed = False
        if key is not None:
            digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()
            stored, replayed = idempotent_call(
                client=client, key=key, request_hash=digest, run=lambda: ingest(client, data)
            )
        else:
            stored = ingest(client, data)
        response = Response(stored.body, status=stored.status)
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return response


class ItemDetailApi(APIView):
    required_scopes = {"GET": ApiScope.ITEMS_READ}

    @extend_schema(
        operation_id="items_retrieve",
        responses={200: ItemOut, **error_responses(403, 404, s404="No such item from your source.")},
    )
    def get(self, request: Request, pk: int) -> Response:
        client = request.user
        assert isinstance(client, ApiClient)
        item = item_get_for_source(item_id=pk, source=client.source)
        if item is None:
            return Response(
                {
                    "error": "not_found",
                    "detail": f"No item {pk} from your source.",
                    "errors": [{"field": "id", "problem": "Not found."}],
                },
                status=404,
            )
        return Response(ItemOut(item, context={"decision": item_final_decision(item=item)}).data)


class AppealsApi(APIView):
    required_scopes = {"POST": ApiScope.APPEALS_WRITE}

    @extend_schema(
        operation_id="appeals_create",
        summary="Appeal the decision on one of your items",
        description=(
            "Creates an appeal of a decided (or rule-actioned) item, triaged to the appeals queue. It is never "
            "given to the reviewer who made the original decision; its outcome (upheld or overturned) comes back "
            "by webhook. Idempotent by (your source, external_id): 201 created, 200 already held. 404 when the "
            "item is unknown, 409 when it has no decision yet or an appeal of it is still open."
        ),
        request=AppealIn,
        responses={
            201: AppealResult,
            200: AppealResult,
            **error_responses(
                400,
                403,
                404,
                409,
                413,
                s404="The appealed item is unknown.",
                s409="The item has no decision yet, an appeal of it is open, or the id is used by another item.",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        client = request.user
        assert isinstance(client, ApiClient)
        if not isinstance(request.data, dict):
            return Response(_invalid([{"problem": "Send one appeal as a JSON object."}]).body, status=400)
        serializer = AppealIn(data=request.data)
        if not serializer.is_valid():
            return Response(_invalid(flatten_errors(serializer.errors)).body, status=400)
        result = appeal_ingest(client=client, data=serializer.validated_data)
        body = {
            "id": result.id,
            "external_id": result.external_id,
            "appeal_of": appeal_of(item_id=result.id),
            "status": 201 if result.created else 200,
            "state": result.state,
        }
        return Response(body, status=201 if result.created else 200)
