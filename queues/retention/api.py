"""``POST /api/v1/erasures`` and ``GET /api/v1/erasures/{id}`` (API clients, their own source), and the legal holds
(``POST /api/v1/legal-holds``, ``POST /api/v1/legal-holds/{id}/clear``: signed-in admins)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ops_platform.core.api_auth import HasScopeOrSignedIn
from ops_platform.core.api_errors import error_responses, flatten_errors
from ops_platform.core.errors import NotPermitted
from ops_platform.core.models import ApiClient, ApiScope, User
from queues.retention import services
from queues.retention.models import Erasure, LegalHold


class ErasureIn(serializers.Serializer[Any]):
    account_ref = serializers.CharField(required=False, max_length=200, trim_whitespace=False)
    item_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        min_length=1,
        max_length=services.MAX_ERASURE_ITEM_IDS,
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("account_ref" in attrs) == ("item_ids" in attrs):
            raise serializers.ValidationError({"account_ref": "Send either account_ref or item_ids, not both."})
        return attrs


class ErasureOut(serializers.ModelSerializer[Erasure]):
    # Plain text, not an enum: several components have a "state" and their enums' names would collide.
    state = serializers.CharField(read_only=True, help_text="running, then done")
    by = serializers.SerializerMethodField()

    class Meta:
        model = Erasure
        fields = ["id", "state", "by", "item_ids", "items_erased", "wiped", "requested_at", "completed_at"]

    def get_by(self, erasure: Erasure) -> str:
        return "account_ref" if erasure.by_account else "item_ids"


class ErasuresApi(APIView):
    required_scopes = {"POST": ApiScope.ERASURES_WRITE}

    @extend_schema(
        operation_id="erasures_create",
        summary="Erase an account's content and personal data, or some items' content",
        description=(
            "By `account_ref` (every item of that author in your source, the account renamed to a pseudonym) or by "
            "`item_ids` (those items and their appeals). Content goes everywhere the platform keeps it; decisions "
            "and figures stay (docs/retention.md). 201 once done. With the same `Idempotency-Key` the first "
            "erasure answers again (200); without one, asking again erases nothing more. 409 when a legal hold "
            "is in force on an item concerned or the account: nothing is erased."
        ),
        request=ErasureIn,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                {"type": "string", "minLength": 1, "maxLength": 200},
                OpenApiParameter.HEADER,
                required=False,
            )
        ],
        responses={
            201: ErasureOut,
            200: ErasureOut,
            **error_responses(
                400, 403, 404, 409, 422, s404="An item id is not one of yours.", s409="A legal hold is in force."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        client = request.user
        assert isinstance(client, ApiClient)
        if not isinstance(request.data, dict):
            return Response(
                {"error": "invalid", "detail": "Send a JSON object.", "errors": [{"problem": "Send a JSON object."}]},
                status=400,
            )
        serializer = ErasureIn(data=request.data)
        if not serializer.is_valid():
            errors = flatten_errors(serializer.errors)
            return Response(
                {"error": "invalid", "detail": "The request is invalid; see errors.", "errors": errors}, 400
            )
        erasure, created = services.erasure_request(
            client=client,
            account_ref=serializer.validated_data.get("account_ref"),
            item_ids=serializer.validated_data.get("item_ids"),
            idempotency_key=request.headers.get("Idempotency-Key", ""),
        )
        return Response(ErasureOut(erasure).data, status=201 if created else 200)


class ErasureDetailApi(APIView):
    required_scopes = {"GET": ApiScope.ERASURES_WRITE}

    @extend_schema(operation_id="erasures_retrieve", responses={200: ErasureOut, **error_responses(403, 404)})
    def get(self, request: Request, pk: int) -> Response:
        client = request.user
        assert isinstance(client, ApiClient)
        erasure = services.erasure_get_for_source(erasure_id=pk, source=client.source)
        if erasure is None:
            errors = [{"field": "id", "problem": "Not found."}]
            return Response({"error": "not_found", "detail": f"No erasure {pk} of yours.", "errors": errors}, 404)
        return Response(ErasureOut(erasure).data)


class LegalHoldIn(serializers.Serializer[Any]):
    item_id = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    account_id = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    reason = serializers.CharField(max_length=500)


class LegalHoldOut(serializers.ModelSerializer[LegalHold]):
    class Meta:
        model = LegalHold
        fields = ["id", "item", "account", "reason", "set_at", "set_by", "cleared_at", "cleared_by"]


def _signed_in(request: Request) -> User:
    user = request.user
    if not isinstance(user, User):
        raise NotPermitted("Sign in as an admin to set or clear a legal hold.")
    return user


class LegalHoldsApi(APIView):
    # A person's act (audited under their name): a signed-in session, never an API key (no scope grants it).
    authentication_classes = [SessionAuthentication]
    permission_classes = [HasScopeOrSignedIn]

    @extend_schema(
        operation_id="legal_holds_create",
        request=LegalHoldIn,
        responses={201: LegalHoldOut, **error_responses(400, 403, 404, 413)},
    )
    def post(self, request: Request) -> Response:
        actor = _signed_in(request)
        serializer = LegalHoldIn(data=request.data if isinstance(request.data, dict) else {})
        if not serializer.is_valid():
            errors = flatten_errors(serializer.errors)
            return Response(
                {"error": "invalid", "detail": "The request is invalid; see errors.", "errors": errors}, 400
            )
        hold = services.legal_hold_set(actor=actor, **serializer.validated_data)
        return Response(LegalHoldOut(hold).data, status=201)


class LegalHoldClearApi(APIView):
    authentication_classes = [SessionAuthentication]
    permission_classes = [HasScopeOrSignedIn]

    @extend_schema(
        operation_id="legal_holds_clear", request=None, responses={200: LegalHoldOut, **error_responses(403, 404, 413)}
    )
    def post(self, request: Request, pk: int) -> Response:
        actor = _signed_in(request)
        reason = request.data.get("reason", "") if isinstance(request.data, dict) else ""
        hold = services.legal_hold_clear(actor=actor, hold_id=pk, reason=str(reason))
        return Response(LegalHoldOut(hold).data)
