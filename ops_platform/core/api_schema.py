"""Touches on the generated OpenAPI schema that drf-spectacular cannot derive from the views."""

from __future__ import annotations

from typing import Any

from django.conf import settings


def require_request_bodies(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Every body this API takes is required, a list of items is bounded by the batch limit, and query
    parameters marked ``x-blank-means-unset`` are documented as allowing an empty value.

    drf-spectacular marks a body required only when it can see required fields, which it cannot through a
    one-of (one item or a list of them); without the flag clients and fuzzers may send no body at all. It
    has no way to say ``allowEmptyValue`` (it takes only ``x-`` extensions), hence the marker.
    """
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            if "requestBody" in operation:
                operation["requestBody"]["required"] = True
            for parameter in operation.get("parameters", []):
                if parameter.pop("x-blank-means-unset", False):
                    parameter["allowEmptyValue"] = True
    for schema in result.get("components", {}).get("schemas", {}).values():
        for variant in schema.get("oneOf", []):
            if variant.get("type") == "array" and "maxItems" not in variant:
                variant["maxItems"] = settings.API_MAX_BATCH_ITEMS
                variant["minItems"] = 1
    return result
