"""How the API says no: size-limited JSON parsing and one error body shape for every 4xx/5xx.

Every error answers ``{"error": code, "detail": message, "errors": [{"index"?, "field"?, "problem"}]}``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, parsers, serializers, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ops_platform.core.errors import ApplicationError

logger = logging.getLogger(__name__)


class ErrorEntry(serializers.Serializer):
    index = serializers.IntegerField(required=False, help_text="Position in the submitted list, for batches.")
    field = serializers.CharField(required=False, help_text="The field at fault, e.g. 'text' or 'media_urls[1]'.")
    problem = serializers.CharField()


class ErrorBody(serializers.Serializer):
    """Every error answers with this shape."""

    error = serializers.CharField()
    detail = serializers.CharField()
    errors = ErrorEntry(many=True)  # type: ignore[assignment]


_ERROR_MEANINGS = {
    400: "Invalid request: each error names index, field and problem.",
    401: "Missing or invalid API key.",
    403: "The key lacks the scope.",
    404: "Not found.",
    409: "Conflict with the current state.",
    413: "Body larger than the limit.",
    422: "Idempotency-Key reused with a different body.",
    429: "Rate limit; see Retry-After.",
    503: "The database is unreachable; retry after Retry-After seconds.",
}


def error_responses(*statuses: int, **meanings: str) -> dict[int, OpenApiResponse]:
    """The OpenAPI responses for these error statuses, all with the one error body; every authenticated
    operation can also answer 401, 429 and 503. ``meanings`` overrides a description (``s409="..."``)."""
    codes = sorted({401, 429, 503, *statuses})
    return {
        code: OpenApiResponse(ErrorBody, description=meanings.get(f"s{code}", _ERROR_MEANINGS[code])) for code in codes
    }


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class LimitedJSONParser(parsers.BaseParser):
    """JSON, but never more than ``API_MAX_BODY_BYTES`` read into memory and no unbounded nesting.

    Not a subclass of DRF's ``JSONParser``: DRF hands that one ``request.body``, which Django caps at
    ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (2.5 MB, meant for forms) with a bare 400, long before this limit.
    Only standard JSON is read: NaN and Infinity (which PostgreSQL's jsonb refuses), numbers that overflow,
    and objects naming a key twice (parsers disagree on which value wins) are malformed.
    """

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Mapping[str, Any] | None = None) -> Any:
        limit = settings.API_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        too_large = PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes.")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise too_large
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise too_large
        try:
            data = json.loads(
                raw, parse_constant=_not_json, parse_float=_finite_float, object_pairs_hook=_without_repeated_keys
            )
        except RecursionError as exc:
            raise exceptions.ParseError(f"JSON is nested deeper than {settings.API_MAX_JSON_DEPTH} levels.") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"Malformed JSON: {exc}") from exc
        if json_depth_exceeds(data, settings.API_MAX_JSON_DEPTH):
            # Anything deeper would reach code that recurses (serializers, json.dumps) near the stack's limit.
            raise exceptions.ParseError(f"JSON is nested deeper than {settings.API_MAX_JSON_DEPTH} levels.")
        return data


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _without_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"the key {repeated[:40]!r} appears twice in one object")
    return result


def json_depth_exceeds(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest deeper than ``limit`` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            current = list(current.values())
        if isinstance(current, list):
            if depth + 1 > limit:
                return True
            stack.extend((child, depth + 1) for child in current if isinstance(child, dict | list))
    return False


def flatten_errors(detail: Any, *, index: int | None = None, path: str = "") -> list[dict[str, Any]]:
    """Turn DRF's nested error detail into a flat list naming index, field and problem."""
    out: list[dict[str, Any]] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):  # DRF reports errors of list elements keyed by position
                out += flatten_errors(value, index=index, path=f"{path}[{key}]")
                continue
            name = "" if key in ("non_field_errors", "detail") else str(key)
            out += flatten_errors(value, index=index, path=f"{path}.{name}" if path and name else path or name)
    elif isinstance(detail, list):
        if all(isinstance(d, str) for d in detail):
            for problem in detail:
                out.append(_entry(index, path, str(problem)))
        else:
            for i, d in enumerate(detail):
                if path:
                    out += flatten_errors(d, index=index, path=f"{path}[{i}]")
                else:
                    out += flatten_errors(d, index=i if index is None else index, path=path)
    elif detail is not None:
        out.append(_entry(index, path, str(detail)))
    return [e for e in out if e["problem"]]


def _entry(index: int | None, field: str, problem: str) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    if index is not None:
        entry["index"] = index
    if field:
        entry["field"] = field
    entry["problem"] = problem
    return entry


def error_response(code: str, detail: str, errors: list[dict[str, Any]], status_code: int) -> Response:
    return Response({"error": code, "detail": detail, "errors": errors}, status=status_code)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        entry = _entry(exc.extra.get("index"), exc.field or "", exc.message)  # type: ignore[arg-type]
        return error_response(exc.code, exc.message, [entry], exc.status_code)
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is unreachable (restart, failover): a retryable 503, never a 500.
        logger.warning("database unavailable during API call: %s", type(exc).__name__)
        unavailable = error_response("unavailable", "The service is temporarily unavailable; retry shortly.", [], 503)
        unavailable["Retry-After"] = "5"
        return unavailable
    if isinstance(exc, DatabaseError):
        return None
    handled = drf_exception_handler(exc, context)
    if handled is None:
        return None
    response = handled
    code = getattr(exc, "default_code", "error")
    if isinstance(exc, exceptions.ValidationError):
        errors = flatten_errors(exc.detail)
        detail = "The request is invalid; see errors."
        code = "invalid"
    else:
        detail = str(getattr(exc, "detail", exc))
        errors = [{"problem": detail}]
        code = getattr(getattr(exc, "detail", None), "code", code) or code
    response.data = {"error": code, "detail": detail, "errors": errors}
    return response
