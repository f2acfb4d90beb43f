"""POST /api/v1/items and GET /api/v1/items/{id}: statuses, validation messages, auth, limits."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import OperationalError
from django.test import Client
from django.utils import timezone

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import ApiKey, ApiScope, User
from ops_platform.core.services import api_client_create, api_key_revoke, api_key_rotate
from queues.models import ItemState, Queue, QueueOrdering, ReviewItem
from queues.services import decision_record, item_claim, item_claim_next
from routing.intake.services import appeal_ingest, items_ingest
from tests.conftest import Api, item

pytestmark = pytest.mark.django_db


def test_it_creates_one_item_then_answers_200_for_the_same_external_id(api: Api):
    first = api.post("/api/v1/items", item(1))
    again = api.post("/api/v1/items", item(1, text="changed text is ignored"))

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert ReviewItem.objects.get().text == "item number 1"


def test_a_batch_reports_each_item_created_or_existing(api: Api):
    api.post("/api/v1/items", item(1))
    response = api.post("/api/v1/items", [item(1), item(2), item(3), item(2)])

    body = response.json()
    assert response.status_code == 201
    assert [r["status"] for r in body["results"]] == [200, 201, 201, 200]
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3]
    assert body["results"][1]["id"] == body["results"][3]["id"]
    assert (body["created"], body["existing"]) == (2, 2)
    assert ReviewItem.objects.count() == 3


def test_a_batch_with_nothing_new_answers_200(api: Api):
    api.post("/api/v1/items", [item(1), item(2)])
    assert api.post("/api/v1/items", [item(2), item(1)]).status_code == 200


def test_new_items_are_triaged_into_the_default_queue_after_commit(api: Api, intake_queue):
    item_id = api.post("/api/v1/items", item(1)).json()["id"]

    stored = ReviewItem.objects.get(pk=item_id)
    assert stored.state == ItemState.QUEUED
    assert stored.queue == intake_queue
    assert stored.due_at == stored.received_at + intake_queue.sla


def test_items_keep_every_field_exactly(api: Api):
    text = "  <script>alert(1)</script> ‮RTL‬ zero​width 👩‍👩‍👧 \n"
    payload = item(
        "full",
        kind="user_report",
        text=text,
        media_urls=["https://img.example/a.png"],
        author_ref="u-42",
        surface="comment",
        language="pt-BR",
        metadata={"thread": {"id": 7}, "tags": ["x"]},
        report_reasons=["spam", "harassment"],
        created_at="2026-01-02T03:04:05.123456Z",
    )
    before = timezone.now()
    item_id = api.post("/api/v1/items", payload).json()["id"]

    stored = ReviewItem.objects.get(pk=item_id)
    assert stored.text == text
    assert (stored.kind, stored.author_ref, stored.surface, stored.language) == (
        "user_report",
        "u-42",
        "comment",
        "pt-BR",
    )
    assert stored.metadata == {"thread": {"id": 7}, "tags": ["x"]}
    assert stored.report_reasons == ["spam", "harassment"]
    assert stored.report_count == 2
    assert stored.created_at.isoformat() == "2026-01-02T03:04:05.123456+00:00"
    assert before <= stored.received_at <= timezone.now()


BAD_FIELDS = [
    ({"external_id": "x" * 201}, "external_id", "no more than 200 characters"),
    ({"external_id": "   "}, "external_id", "Must not be blank"),
    ({"external_id": None}, "external_id", "may not be null"),
    ({"kind": "appeal"}, "kind", "not a valid choice"),
    ({"text": "x" * 50_001}, "text", "no more than 50000 characters"),
    ({"text": 12}, "text", "Not a valid string"),
    ({"external_id": "nul\x00byte"}, "external_id", "Must not contain NUL"),
    ({"text": "\ud800"}, "text", "Surrogate characters are not allowed"),
    ({"text": "", "media_urls": []}, "text", "needs text or media_urls"),
    ({"media_urls": ["https://ok.example/a.png", "javascript:alert(1)"]}, "media_urls[1]", "http or https URL"),
    ({"media_urls": ["ftp://files.example/a.png"]}, "media_urls[0]", "Enter a valid http or https URL"),
    ({"media_urls": "https://x.example/a.png"}, "media_urls", "Expected a list"),
    ({"language": "english!"}, "language", "BCP 47"),
    ({"metadata": [1, 2]}, "metadata", "Expected a dictionary"),
    ({"metadata": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}, "metadata", "Nested deeper than 5"),
    ({"metadata": {"big": "x" * 17_000}}, "metadata", "Larger than 16384 bytes"),
    ({"author_ref": "nul\x00"}, "author_ref", "Must not contain NUL"),
    ({"metadata": {"k": "\ud800"}}, "metadata", "unpaired UTF-16 surrogate"),
    ({"kind": "user_report"}, "report_reasons", "needs at least one reason"),
    ({"received_at": "yesterday"}, "received_at", "Datetime has wrong format"),
    ({"received_at": "2999-01-01T00:00:00Z"}, "received_at", "in the future"),
    ({"created_at": "0001-01-01T00:00:00Z"}, "created_at", "days ago"),
    ({"created_at": "0001-01-01"}, "created_at", "days ago"),
    ({"created_at": "9999-12-31T23:59:59Z"}, "created_at", "in the future"),
    ({"received_at": "0001-01-01T00:00:00Z"}, "received_at", "days ago"),
    ({"created_at": "2026-01-01T00:00:00Z", "received_at": "2026-01-01T00:00:00Z"}, "received_at", "send created_at"),
    ({"colour": "red"}, "colour", "Unknown field"),
]


@pytest.mark.parametrize(("override", "field", "problem"), BAD_FIELDS, ids=[f"{f}:{p}" for _, f, p in BAD_FIELDS])
def test_each_bad_field_is_named_with_its_index_and_nothing_is_stored(api: Api, override, field, problem):
    response = api.post("/api/v1/items", [item(1), {**item(2), **override}])

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert any(e.get("index") == 1 and e.get("field") == field and problem in e["problem"] for e in body["errors"]), (
        body["errors"]
    )
    assert ReviewItem.objects.count() == 0


# --- receipt time is the server's: a client timestamp cannot move an item up a queue ---------------------


@pytest.mark.parametrize("ordering", QueueOrdering.values)
def test_an_item_with_an_old_created_at_is_not_claimed_before_an_earlier_received_one(
    api: Api, intake_queue: Queue, reviewer: User, ordering: str
):
    Queue.objects.filter(pk=intake_queue.pk).update(ordering=ordering)
    first = api.post("/api/v1/items", item("first")).json()["id"]
    long_ago = (timezone.now() - timedelta(days=300)).isoformat()
    late = api.post("/api/v1/items", item("late", created_at=long_ago)).json()["id"]
    alias = api.post("/api/v1/items", item("alias", received_at=long_ago)).json()["id"]

    stored = ReviewItem.objects.get(pk=late)
    assert stored.state == ItemState.QUEUED
    assert stored.created_at == datetime.fromisoformat(long_ago)
    assert stored.received_at > ReviewItem.objects.get(pk=first).received_at
    assert stored.due_at == stored.received_at + intake_queue.sla
    assert ReviewItem.objects.get(pk=alias).created_at == datetime.fromisoformat(long_ago)
    claimed = item_claim_next(queue=Queue.objects.get(pk=intake_queue.pk), actor=reviewer)
    assert claimed is not None
    assert claimed.pk == first


def test_intake_stamps_its_own_clock_and_refuses_an_implausible_created_at(api: Api):
    now = timezone.now()
    kept = now - timedelta(days=2)
    [result] = items_ingest(client=api.client, items=[{**item(1), "created_at": kept}], at=now)
    stored = ReviewItem.objects.get(pk=result.id)
    assert (stored.received_at, stored.created_at) == (now, kept)

    for implausible in (datetime(1, 1, 1, tzinfo=UTC), now + timedelta(days=1)):
        with pytest.raises(ApplicationError) as refused:
            items_ingest(client=api.client, items=[item(2), {**item(3), "created_at": implausible}], at=now)
        assert refused.value.field == "created_at"
    assert ReviewItem.objects.count() == 1


def test_an_appeal_is_received_by_the_servers_clock_and_bounds_its_created_at(
    api: Api, intake_queue: Queue, reviewer: User
):
    original = ReviewItem.objects.get(pk=api.post("/api/v1/items", item(1)).json()["id"])
    item_claim(item=original, actor=reviewer)
    decision_record(item=original, actor=reviewer, is_violation=False)
    appeal = {"external_id": "appeal-1", "item_external_id": "ext-1", "statement": "Please look again."}

    refused = api.post("/api/v1/appeals", {**appeal, "received_at": "0001-01-01T00:00:00Z"})
    assert refused.status_code == 400
    assert refused.json()["errors"] == [{"field": "received_at", "problem": refused.json()["errors"][0]["problem"]}]
    assert "days ago" in refused.json()["errors"][0]["problem"]
    with pytest.raises(ApplicationError) as service_refused:
        appeal_ingest(client=api.client, data={**appeal, "created_at": datetime(1, 1, 1, tzinfo=UTC)})
    assert service_refused.value.field == "created_at"

    before = timezone.now()
    created = api.post("/api/v1/appeals", {**appeal, "created_at": "2026-01-01T00:00:00Z"})
    assert created.status_code == 201, created.json()
    stored = ReviewItem.objects.get(pk=created.json()["id"])
    assert stored.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert stored.received_at >= before


def test_a_missing_required_field_in_a_single_item_is_named(api: Api):
    response = api.post("/api/v1/items", {"text": "no id"})

    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "external_id", "problem": "This field is required."}]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "The list is empty."),
        ("42", "Send one item as a JSON object or a list of items."),
        ([item(1), "not an object"], "Each item must be a JSON object."),
    ],
)
def test_bodies_of_the_wrong_shape_are_refused(api: Api, body: Any, problem: str):
    response = api.post("/api/v1/items", body)

    assert response.status_code == 400
    assert problem in [e["problem"] for e in response.json()["errors"]]


def test_more_than_1000_items_are_refused(api: Api):
    response = api.post("/api/v1/items", [item(i) for i in range(1001)])

    assert response.status_code == 400
    assert response.json()["errors"] == [{"problem": "At most 1000 items per call; got 1001."}]


def test_malformed_and_deeply_nested_json_get_400(api: Api):
    assert api.post("/api/v1/items", "{not json").status_code == 400
    deep = api.post("/api/v1/items", "[" * 100_000 + "]" * 100_000)
    assert deep.status_code == 400
    assert "nested deeper than 32 levels" in deep.json()["detail"]


def test_an_oversize_body_gets_413(api: Api, settings):
    settings.API_MAX_BODY_BYTES = 10_000
    response = api.post("/api/v1/items", [item(i, text="x" * 500) for i in range(30)])

    assert response.status_code == 413
    assert response.json()["detail"] == "Request body exceeds the limit of 10000 bytes."
    assert ReviewItem.objects.count() == 0


def test_no_key_gets_401_with_a_challenge(api: Api):
    response = api.http.post("/api/v1/items", "{}", content_type="application/json")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json()["error"] == "not_authenticated"


@pytest.mark.parametrize(
    "header",
    ["Bearer tsk_0000000000000000_wrong", "Bearer nonsense", "Token abc", "Bearer "],
)
def test_a_bad_key_gets_401(api: Api, header: str):
    response = api.http.post("/api/v1/items", "{}", content_type="application/json", HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response.json()["error"] == "authentication_failed"


def test_a_valid_lookup_with_a_wrong_secret_gets_401(api: Api):
    lookup = ApiKey.split(api.key)
    response = api.http.get("/api/v1/items/1", HTTP_AUTHORIZATION=f"Bearer tsk_{lookup}_not-the-secret")
    assert response.status_code == 401


def test_a_key_without_the_scope_gets_403_naming_it(db, intake_queue):
    client, key = api_client_create(actor="test", name="Reader", source="reader", scopes=[ApiScope.ITEMS_READ])
    api = Api(client, key, Client())

    response = api.post("/api/v1/items", item(1))

    assert response.status_code == 403
    assert response.json()["detail"] == "This API key lacks the 'items:write' scope."


def test_a_revoked_key_stops_working(api: Api):
    api_key_revoke(actor="test", key=api.client.keys.get(), reason="leaked")
    assert api.post("/api/v1/items", item(1)).status_code == 401


def test_rotation_keeps_the_old_key_for_the_grace_period_only(api: Api):
    new_key, raw = api_key_rotate(actor="test", client=api.client, grace=timedelta(hours=1))
    old = api
    new = Api(api.client, raw, api.http, api.commit_hooks)

    assert old.post("/api/v1/items", item(1)).status_code == 201
    assert new.post("/api/v1/items", item(2)).status_code == 201
    ApiKey.objects.exclude(pk=new_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert old.post("/api/v1/items", item(3)).status_code == 401
    assert new.post("/api/v1/items", item(3)).status_code == 201


def test_the_rate_limit_answers_429_with_retry_after(api: Api):
    cache.clear()
    api.client.rate_limit_per_minute = 3
    api.client.save()

    statuses = [api.post("/api/v1/items", item(i)).status_code for i in range(4)]

    assert statuses == [201, 201, 201, 429]
    limited = api.post("/api/v1/items", item(9))
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["error"] == "throttled"
    assert not ReviewItem.objects.filter(external_id="ext-9").exists()


def test_an_idempotency_key_replays_the_first_response(api: Api):
    first = api.post("/api/v1/items", [item(1), item(2)], HTTP_IDEMPOTENCY_KEY="call-1")
    replay = api.post("/api/v1/items", [item(1), item(2)], HTTP_IDEMPOTENCY_KEY="call-1")
    fresh = api.post("/api/v1/items", [item(1), item(2)])

    assert (first.status_code, replay.status_code, fresh.status_code) == (201, 201, 200)
    assert replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


def test_an_idempotency_key_reused_with_another_body_gets_422(api: Api):
    api.post("/api/v1/items", item(1), HTTP_IDEMPOTENCY_KEY="call-1")
    response = api.post("/api/v1/items", item(2), HTTP_IDEMPOTENCY_KEY="call-1")

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "Idempotency-Key", "problem": "This Idempotency-Key was used with a different request body."}
    ]
    assert not ReviewItem.objects.filter(external_id="ext-2").exists()


def test_get_returns_the_item_as_it_stands(api: Api):
    item_id = api.post("/api/v1/items", item(1)).json()["id"]

    body = api.get(f"/api/v1/items/{item_id}").json()

    assert body["external_id"] == "ext-1"
    assert body["state"] == "queued"
    assert body["queue"] == "general"
    assert body["decision"] is None
    assert body["triaged_at"] is not None


def test_get_of_another_sources_item_is_404(api: Api, db):
    other_client, other_key = api_client_create(
        actor="test", name="Other", source="other", scopes=[ApiScope.ITEMS_WRITE, ApiScope.ITEMS_READ]
    )
    other = Api(other_client, other_key, api.http, api.commit_hooks)
    other_id = other.post("/api/v1/items", item(1)).json()["id"]

    response = api.get(f"/api/v1/items/{other_id}")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_item_text_never_reaches_the_logs(api: Api, caplog):
    secret = "SECRET-CONTENT-7f3a"
    with caplog.at_level(logging.DEBUG):
        api.post("/api/v1/items", item(1, text=f"hello {secret}"))
        api.post("/api/v1/items", [item(2, text=f"{secret}", language="not a tag")])
        api.post("/api/v1/items", f'{{"external_id": "{secret}"')

    assert caplog.records
    assert secret not in caplog.text


def test_the_openapi_schema_and_docs_are_served_without_network(api: Api):
    schema = api.http.get("/api/schema/?format=json")
    docs = api.http.get("/api/docs/")

    assert schema.status_code == 200
    assert "/api/v1/items" in schema.json()["paths"]
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "drf_spectacular_sidecar" in html
    assert "cdn." not in html
    assert "unpkg" not in html


def test_a_database_outage_answers_503_with_retry_after_not_500(api: Api, monkeypatch):
    def database_gone(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("routing.intake.api.items_ingest", database_gone)
    response = api.post("/api/v1/items", item(1))

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json()["error"] == "unavailable"


def test_the_openapi_schema_validates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert "/api/v1/items/{id}" in (tmp_path / "schema.yml").read_text()
