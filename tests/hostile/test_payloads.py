"""Oversize and deeply nested bodies to the intake API: a clear 4xx naming the problem, nothing stored."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from queues.models import ReviewItem
from routing.models import IdempotencyRecord
from tests.conftest import Api, item

pytestmark = [pytest.mark.django_db]

DEPTH = 10_000
LIMIT = django_settings.API_MAX_JSON_DEPTH


def nested_arrays(depth: int) -> str:
    return "[" * depth + "]" * depth


def nested_objects(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


def in_metadata(depth: int) -> str:
    return '{"external_id": "deep", "text": "x", "metadata": ' + nested_objects(depth) + "}"


def in_an_appeal(depth: int) -> str:
    return '{"external_id": "ap", "item_external_id": "orig", "statement": ' + nested_arrays(depth) + "}"


DEEP_BODIES = {
    "arrays": ("/api/v1/items", nested_arrays),
    "objects": ("/api/v1/items", nested_objects),
    "metadata": ("/api/v1/items", in_metadata),
    "batch": ("/api/v1/items", lambda d: "[" + in_metadata(d) + "]"),
    "appeal": ("/api/v1/appeals", in_an_appeal),
}


def assert_refused(response: Any, status: int, words: str) -> None:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert set(body) == {"error", "detail", "errors"}
    assert words in body["detail"] or any(words in e["problem"] for e in body["errors"]), body
    assert ReviewItem.objects.count() == 0


@pytest.mark.parametrize("idempotency_key", [None, "deep-1"], ids=["plain", "idempotency-key"])
@pytest.mark.parametrize("shape", list(DEEP_BODIES))
@pytest.mark.parametrize("depth", [LIMIT + 1, 900, DEPTH], ids=["just-past-the-limit", "900", "10000"])
def test_deep_nesting_is_refused_with_400_never_a_crash(
    api: Api, shape: str, depth: int, idempotency_key: str | None
) -> None:
    path, build = DEEP_BODIES[shape]
    extra = {"HTTP_IDEMPOTENCY_KEY": idempotency_key} if idempotency_key else {}

    response = api.post(path, build(depth), **extra)

    assert_refused(response, 400, f"nested deeper than {LIMIT} levels")
    assert IdempotencyRecord.objects.count() == 0


def test_nesting_within_the_parser_limit_is_left_to_the_field_rules(api: Api) -> None:
    # 32 levels parse; metadata allows 5, and says so about the field.
    response = api.post("/api/v1/items", in_metadata(LIMIT - 2))

    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "metadata", "problem": "Nested deeper than 5 levels."}]
    assert ReviewItem.objects.count() == 0


def test_a_body_over_the_limit_gets_413_before_anything_is_stored(api: Api, settings: Any) -> None:
    settings.API_MAX_BODY_BYTES = 50_000
    batch = [item(i) for i in range(5)] + [item(5, text="x" * 30_000), item(6, text="x" * 30_000)]

    for path, body in (("/api/v1/items", batch), ("/api/v1/appeals", {"statement": "x" * 60_000})):
        response = api.post(path, body, HTTP_IDEMPOTENCY_KEY=f"big-{path}")
        assert_refused(response, 413, "Request body exceeds the limit of 50000 bytes.")
    assert IdempotencyRecord.objects.count() == 0


def test_a_declared_length_over_the_limit_is_refused_without_reading(api: Api, settings: Any) -> None:
    settings.API_MAX_BODY_BYTES = 1_000

    response = api.post("/api/v1/items", item(1), CONTENT_LENGTH="5000000")

    assert_refused(response, 413, "exceeds the limit")


@pytest.mark.parametrize("declared", ["²", "١٢", "-5", "5e9"])
def test_a_declared_length_that_is_no_ascii_number_is_not_a_crash(api: Api, declared: str) -> None:
    """'²'.isdigit() is true and int('²') raises: the declared length is believed only when it is ASCII digits."""
    response = api.post("/api/v1/items", item(1), CONTENT_LENGTH=declared)

    assert response.status_code < 500


def test_a_body_over_djangos_form_limit_but_within_the_api_limit_is_taken(api: Api) -> None:
    # DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB) guards form posts; the API reads its own stream up to
    # API_MAX_BODY_BYTES (10 MiB), so a large legitimate batch is not refused by the wrong limit.
    batch = [item(i, text="y" * 50_000) for i in range(60)]
    body_size = len(str(batch))
    assert django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE < body_size < django_settings.API_MAX_BODY_BYTES

    response = api.post("/api/v1/items", batch)

    assert response.status_code == 201
    assert ReviewItem.objects.count() == 60


def test_a_form_post_over_djangos_limit_gets_400_not_500(db: None) -> None:
    client = Client()
    response = client.post(
        "/accounts/login/",
        "username=" + "a" * (django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10),
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 400


@pytest.mark.parametrize(
    ("field", "body", "problem"),
    [
        ("text", item(1, text="x" * 50_001), "no more than 50000 characters"),
        ("metadata", item(1, metadata={f"k{i}": "v" * 100 for i in range(200)}), "Larger than 16384 bytes"),
        ("media_urls", item(1, media_urls=[f"https://x.example/{i}" for i in range(21)]), "no more than 20"),
        ("report_reasons", item(1, kind="user_report", report_reasons=["r"] * 101), "no more than 100"),
        ("external_id", item(1, external_id="e" * 201), "no more than 200 characters"),
    ],
)
def test_an_oversize_field_in_the_last_item_refuses_the_whole_batch(
    api: Api, field: str, body: dict[str, Any], problem: str
) -> None:
    response = api.post("/api/v1/items", [item(i) for i in range(10)] + [body])

    assert response.status_code == 400
    assert any(
        e.get("index") == 10 and e.get("field") == field and problem in e["problem"] for e in response.json()["errors"]
    )
    assert ReviewItem.objects.count() == 0


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ('{"external_id": "n", "text": "x", "metadata": {"big": ' + "9" * 5_000 + "}}", "Malformed JSON"),
        ('{"external_id": "n", "text": "x", "metadata": {"nan": NaN}}', "Malformed JSON"),
        ('{"external_id": "n", "text": "x", "metadata": {"inf": Infinity}}', "Malformed JSON"),
        ('{"external_id": "n", "text": "x", "metadata": {"inf": -1e999}}', "Malformed JSON"),
        ('{"external_id": "n", "text": "x", "metadata": {"a": 1, "a": 2}}', "Malformed JSON"),
    ],
    ids=["huge-integer", "NaN", "Infinity", "overflowing-float", "duplicate-key"],
)
def test_numbers_and_keys_json_does_not_allow_are_refused(api: Api, raw: str, words: str) -> None:
    assert_refused(api.post("/api/v1/items", raw), 400, words)
