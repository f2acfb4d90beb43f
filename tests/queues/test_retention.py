"""Retention purge, erasure and legal holds (docs/retention.md): through the services and through HTTP, and the proof
that an erasure leaves no byte of the content in the database dump, the media storage or the logs."""

from __future__ import annotations

import logging
import os
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.utils import timezone
from PIL import Image

from ops_platform.core.errors import ApplicationError, NotPermitted
from ops_platform.core.models import ApiScope, AuditLog, Policy, User, WebhookEvent, WebhookEventType
from ops_platform.core.services import api_client_create
from qa.models import GoldenItem
from queues.models import (
    Account,
    AccountLabel,
    ContentPurgeReason,
    Decision,
    ItemEvent,
    ItemState,
    Queue,
    ReviewItem,
)
from queues.retention import services as retention
from queues.retention.models import Erasure, ErasureState
from queues.services import decision_record, item_claim, item_release
from routing.intake.models import DeadLetter, IdempotencyRecord
from routing.scoring.media.models import MediaAsset, MediaStatus
from routing.scoring.media.store import Decoded, image_store, media_storage
from routing.scoring.models import Backend, ClassifierScore
from tests.conftest import Api, item

pytestmark = pytest.mark.django_db


@pytest.fixture
def spam(intake_queue: Queue) -> Policy:
    policy = Policy.objects.create(slug="spam", name="Spam", guidelines="No unsolicited promotion.")
    intake_queue.policies.add(policy)
    return policy


def decided(api: Api, reviewer: User, n: int | str, *, policy: Policy | None = None, **fields: Any) -> ReviewItem:
    """An item submitted through the API, claimed and decided (a violation when a policy is given)."""
    item_id = api.post("/api/v1/items", item(n, **fields)).json()["id"]
    stored = ReviewItem.objects.get(pk=item_id)
    item_claim(item=stored, actor=reviewer)
    decision_record(item=stored, actor=reviewer, is_violation=policy is not None, policy=policy, rationale=f"r {n}")
    return ReviewItem.objects.get(pk=item_id)


def age(item_: ReviewItem, days: int) -> None:
    """Move the item's final decision ``days`` into the past."""
    at = timezone.now() - timedelta(days=days)
    ReviewItem.objects.filter(pk=item_.pk).update(decided_at=at)
    Decision.objects.filter(item=item_).update(decided_at=at)


# --- the retention purge ------------------------------------------------------------------------------------------


def test_purge_empties_content_past_retention_and_keeps_the_row_and_its_decision(api: Api, reviewer: User, settings):
    settings.CONTENT_RETENTION_DAYS = 30
    old = decided(api, reviewer, 1, metadata={"k": "v"}, media_urls=["https://example.test/a.png"])
    recent = decided(api, reviewer, 2)
    age(old, 31)
    age(recent, 29)

    result = retention.items_content_purge()

    old.refresh_from_db()
    recent.refresh_from_db()
    assert result.items == 1
    assert (old.text, old.metadata, old.media_urls) == ("", {}, [])
    assert old.content_purge_reason == ContentPurgeReason.RETENTION
    assert old.content_purged_at is not None
    assert old.state == ItemState.DECIDED
    assert old.decisions.get().is_final
    assert recent.text == "item number 2"
    assert recent.content_purged_at is None
    assert retention.items_content_purge().items == 0  # nothing twice


def test_a_policy_keeps_its_content_for_its_own_retention(api: Api, reviewer: User, spam: Policy, settings):
    settings.CONTENT_RETENTION_DAYS = 30
    Policy.objects.filter(pk=spam.pk).update(content_retention_days=400)
    kept = decided(api, reviewer, 1, policy=spam)
    purged = decided(api, reviewer, 2)
    age(kept, 100)
    age(purged, 100)

    assert retention.items_content_purge().items == 1

    kept.refresh_from_db()
    purged.refresh_from_db()
    assert kept.text == "item number 1"
    assert purged.text == ""
    age(kept, 401)
    assert retention.items_content_purge().items == 1


def test_purge_commits_in_batches(api: Api, reviewer: User, settings):
    settings.CONTENT_RETENTION_DAYS = 1
    items = [decided(api, reviewer, n) for n in range(5)]
    for it in items:
        age(it, 2)

    result = retention.items_content_purge(batch_size=2)

    assert (result.items, result.batches) == (5, 3)
    assert set(ReviewItem.objects.values_list("text", flat=True)) == {""}


def test_purge_leaves_open_items_and_clears_scores_details(api: Api, reviewer: User, settings):
    settings.CONTENT_RETENTION_DAYS = 1
    done = decided(api, reviewer, 1)
    waiting = ReviewItem.objects.get(pk=api.post("/api/v1/items", item(2)).json()["id"])
    ClassifierScore.objects.create(
        item=done, backend=Backend.OPENAI_POLICY, scores={"S": 0.9}, detail={"rationale": "quotes the text"}
    )
    age(done, 2)
    ReviewItem.objects.filter(pk=waiting.pk).update(decided_at=timezone.now() - timedelta(days=5))

    retention.items_content_purge()

    assert ReviewItem.objects.get(pk=waiting.pk).text == "item number 2"
    score = ClassifierScore.objects.get(item=done, backend=Backend.OPENAI_POLICY)
    assert score.detail == {}
    assert score.scores == {"S": 0.9}


def test_rationales_go_after_the_longer_record_retention(api: Api, reviewer: User, settings):
    settings.CONTENT_RETENTION_DAYS = 1
    settings.RECORD_RETENTION_DAYS = 10
    it = decided(api, reviewer, 1)
    age(it, 5)
    retention.items_content_purge()
    assert Decision.objects.get(item=it).rationale == "r 1"

    age(it, 11)
    assert retention.items_content_purge().rationales == 1
    decision = Decision.objects.get(item=it)
    assert decision.rationale == ""
    assert decision.is_final


def test_record_retention_shorter_than_content_retention_is_refused_naming_the_field(spam: Policy, settings):
    settings.CONTENT_RETENTION_DAYS = 30
    spam.record_retention_days = 10
    with pytest.raises(ValidationError) as refused:
        spam.full_clean()
    assert "record_retention_days" in refused.value.message_dict


def test_the_purge_runs_from_the_beat_schedule():
    entry = settings.CELERY_BEAT_SCHEDULE["purge-expired-content"]
    assert entry["task"] == "queues.tasks.content_purge_task"


def test_the_purge_task_reports_what_it_did(api: Api, reviewer: User, settings):
    from queues.tasks import content_purge_task

    settings.CONTENT_RETENTION_DAYS = 1
    age(decided(api, reviewer, 1), 2)
    assert content_purge_task.apply().get()["items"] == 1


# --- legal holds --------------------------------------------------------------------------------------------------


def test_a_hold_on_an_item_keeps_it_from_the_purge_until_cleared(api: Api, reviewer: User, admin_user: User, settings):
    settings.CONTENT_RETENTION_DAYS = 1
    held = decided(api, reviewer, 1)
    age(held, 2)
    hold = retention.legal_hold_set(actor=admin_user, item_id=held.pk, reason="Case 2026-17")

    assert retention.items_content_purge().items == 0
    assert ReviewItem.objects.get(pk=held.pk).text == "item number 1"

    retention.legal_hold_clear(actor=admin_user, hold_id=hold.pk, reason="Case closed")
    assert retention.items_content_purge().items == 1
    actions = list(AuditLog.objects.filter(target_type="queues.legalhold").values_list("action", flat=True))
    assert sorted(actions) == ["legal_hold.cleared", "legal_hold.set"]


def test_a_hold_on_an_account_keeps_all_its_items(api: Api, reviewer: User, admin_user: User, settings):
    settings.CONTENT_RETENTION_DAYS = 1
    mine = decided(api, reviewer, 1, author_ref="held-author")
    other = decided(api, reviewer, 2, author_ref="someone-else")
    age(mine, 2)
    age(other, 2)
    account = Account.objects.get(source="integrator", ref="held-author")
    retention.legal_hold_set(actor=admin_user, account_id=account.pk, reason="Litigation")

    assert retention.items_content_purge().items == 1
    assert ReviewItem.objects.get(pk=mine.pk).text == "item number 1"


def test_only_an_admin_sets_a_hold_and_a_reason_is_required(api: Api, reviewer: User, admin_user: User):
    it = decided(api, reviewer, 1)
    with pytest.raises(NotPermitted):
        retention.legal_hold_set(actor=reviewer, item_id=it.pk, reason="x")
    with pytest.raises(ApplicationError) as blank:
        retention.legal_hold_set(actor=admin_user, item_id=it.pk, reason="  ")
    assert blank.value.field == "reason"


def test_holds_over_http_need_a_signed_in_admin(api: Api, reviewer: User, admin_user: User):
    it = decided(api, reviewer, 1)
    browser = Client()
    browser.force_login(reviewer)
    assert browser.post("/api/v1/legal-holds", {"item_id": it.pk, "reason": "x"}, "application/json").status_code == 403
    assert api.post("/api/v1/legal-holds", {"item_id": it.pk, "reason": "x"}).status_code in (401, 403)

    browser.force_login(admin_user)
    bad = browser.post("/api/v1/legal-holds", {"item_id": it.pk}, "application/json")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "reason"
    made = browser.post("/api/v1/legal-holds", {"item_id": it.pk, "reason": "Case 9"}, "application/json")
    assert made.status_code == 201
    cleared = browser.post(f"/api/v1/legal-holds/{made.json()['id']}/clear", {}, "application/json")
    assert cleared.status_code == 200
    assert cleared.json()["cleared_at"]
    forged = Client(enforce_csrf_checks=True)
    forged.force_login(admin_user)
    assert forged.post("/api/v1/legal-holds", {"item_id": it.pk, "reason": "y"}, "application/json").status_code == 403


# --- erasure ------------------------------------------------------------------------------------------------------


def test_erasure_by_item_ids_empties_them_and_their_appeals(api: Api, reviewer: User):
    it = decided(api, reviewer, 1)
    keep = decided(api, reviewer, 2)
    appeal = api.post("/api/v1/appeals", {"external_id": "ap-1", "item_external_id": "ext-1", "statement": "mine"})
    assert appeal.status_code == 201

    response = api.post("/api/v1/erasures", {"item_ids": [it.pk]})

    assert response.status_code == 201
    body = response.json()
    assert body["state"] == ErasureState.DONE
    assert body["items_erased"] == 2
    assert body["by"] == "item_ids"
    assert ReviewItem.objects.get(pk=it.pk).text == ""
    assert ReviewItem.objects.get(pk=appeal.json()["id"]).text == ""
    assert ReviewItem.objects.get(pk=keep.pk).text == "item number 2"
    assert Decision.objects.get(item=it).rationale == ""
    assert api.get(f"/api/v1/erasures/{body['id']}").json()["items_erased"] == 2


def test_erasure_refuses_bad_input_naming_the_field(api: Api):
    cases = [
        ({}, "account_ref"),
        ({"account_ref": "a", "item_ids": [1]}, "account_ref"),
        ({"item_ids": []}, "item_ids"),
        ({"item_ids": ["x"]}, "item_ids[0]"),
        ({"account_ref": ""}, "account_ref"),
    ]
    for body, field in cases:
        response = api.post("/api/v1/erasures", body)
        assert response.status_code == 400, body
        assert response.json()["errors"][0]["field"] == field, body
    assert api.post("/api/v1/erasures", [1]).status_code == 400


def test_a_client_cannot_erase_or_read_another_sources_items(api: Api, reviewer: User):
    theirs = decided(api, reviewer, 1)
    _, key = api_client_create(actor="test", name="Other", source="other", scopes=[ApiScope.ERASURES_WRITE])
    other = Api(api.client, key, Client())
    refused = other.post("/api/v1/erasures", {"item_ids": [theirs.pk]})
    assert refused.status_code == 404
    assert refused.json()["errors"][0]["field"] == "item_ids"
    assert ReviewItem.objects.get(pk=theirs.pk).text == "item number 1"

    mine = api.post("/api/v1/erasures", {"item_ids": [theirs.pk]}).json()
    assert other.get(f"/api/v1/erasures/{mine['id']}").status_code == 404


def test_erasure_needs_its_scope(api: Api, reviewer: User):
    _, key = api_client_create(actor="test", name="Narrow", source="integrator2", scopes=[ApiScope.ITEMS_WRITE])
    assert Api(api.client, key, Client()).post("/api/v1/erasures", {"account_ref": "a"}).status_code == 403


def test_erasure_is_idempotent_with_a_key_and_harmless_without(api: Api, reviewer: User):
    decided(api, reviewer, 1, author_ref="alice-ref")
    first = api.post("/api/v1/erasures", {"account_ref": "alice-ref"}, HTTP_IDEMPOTENCY_KEY="k1")
    again = api.post("/api/v1/erasures", {"account_ref": "alice-ref"}, HTTP_IDEMPOTENCY_KEY="k1")
    other_body = api.post("/api/v1/erasures", {"item_ids": [1]}, HTTP_IDEMPOTENCY_KEY="k1")
    no_key = api.post("/api/v1/erasures", {"account_ref": "alice-ref"})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["items_erased"] == 1
    assert other_body.status_code == 422
    assert other_body.json()["errors"][0]["field"] == "Idempotency-Key"
    assert no_key.status_code == 201
    assert no_key.json()["items_erased"] == 0
    assert Erasure.objects.count() == 2


def test_erasure_of_a_held_item_or_account_is_refused_with_409_naming_the_hold(
    api: Api, reviewer: User, admin_user: User
):
    it = decided(api, reviewer, 1, author_ref="bob-ref")
    hold = retention.legal_hold_set(actor=admin_user, item_id=it.pk, reason="Case 3")

    by_items = api.post("/api/v1/erasures", {"item_ids": [it.pk]})
    by_account = api.post("/api/v1/erasures", {"account_ref": "bob-ref"})

    for response, field in ((by_items, "item_ids"), (by_account, "account_ref")):
        assert response.status_code == 409
        assert response.json()["error"] == "legal_hold"
        assert response.json()["errors"][0]["field"] == field
        assert f"legal hold {hold.pk}" in response.json()["detail"]
    assert ReviewItem.objects.get(pk=it.pk).text == "item number 1"
    assert not Erasure.objects.exists()

    retention.legal_hold_clear(actor=admin_user, hold_id=hold.pk)
    assert api.post("/api/v1/erasures", {"account_ref": "bob-ref"}).status_code == 201


def test_erasure_by_account_renames_it_and_keeps_its_figures(api: Api, reviewer: User, spam: Policy):
    it = decided(api, reviewer, 1, author_ref="carol-ref", policy=spam)
    account = Account.objects.get(source="integrator", ref="carol-ref")

    erasure, created = retention.erasure_request(client=api.client, account_ref="carol-ref")

    account.refresh_from_db()
    assert created
    assert account.ref == f"erased-{erasure.pk}"
    stored = ReviewItem.objects.get(pk=it.pk)
    assert stored.author_ref == account.ref
    assert stored.content_purge_reason == ContentPurgeReason.ERASURE
    assert Decision.objects.get(item=it).is_violation
    assert Decision.objects.get(item=it).policy == spam
    audit = AuditLog.objects.filter(target_type="queues.erasure").order_by("at", "id")
    assert [a.action for a in audit] == ["erasure.requested", "erasure.completed"]
    assert "carol-ref" not in str([(a.before, a.after, a.reason) for a in audit])


# --- no byte left: the database dump, the media storage, the logs -------------------------------------------------


def _dump(tmp_path: Path) -> bytes:
    db = connection.settings_dict
    out = tmp_path / "dump.sql"
    env = {**os.environ, "PGPASSWORD": db.get("PASSWORD") or ""}
    command = ["pg_dump", "-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432), "-U", db["USER"]]
    subprocess.run([*command, "-f", str(out), db["NAME"]], check=True, env=env)
    return out.read_bytes()


def _storage_bytes() -> bytes:
    root = Path(media_storage().path(""))
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_erased_accounts_content_leaves_no_byte_in_the_dump_the_storage_or_the_logs(
    api: Api, reviewer: User, admin_user: User, spam: Policy, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    marker = f"ZQXMARK{uuid.uuid4().hex}"
    ref = f"author-{marker}"
    fields = {
        "author_ref": ref,
        "text": f"buy now {marker} cheap",
        "metadata": {"profile": f"bio {marker}", "author_created_at": "2020-01-01T00:00:00Z"},
        "media_urls": [f"https://img.example.test/{marker}.png"],
        "report_reasons": [f"reported {marker}"],
    }
    first_id = api.post("/api/v1/items", item(1, **fields), HTTP_IDEMPOTENCY_KEY=f"key-{marker[:20]}").json()["id"]
    first = ReviewItem.objects.get(pk=first_id)
    item_claim(item=first, actor=reviewer)
    item_release(item=first, actor=reviewer, reason=f"skip {marker}")
    first.refresh_from_db()
    item_claim(item=first, actor=reviewer)
    decision_record(item=first, actor=reviewer, is_violation=True, policy=spam, rationale=f"quotes {marker}")
    second = ReviewItem.objects.get(pk=api.post("/api/v1/items", item(2, **fields)).json()["id"])
    bystander = ReviewItem.objects.get(pk=api.post("/api/v1/items", item(3, text="unrelated words")).json()["id"])
    account = Account.objects.get(source="integrator", ref=ref)
    AccountLabel.objects.create(
        account=account, label="watch", set_at=timezone.now(), set_by_label="t", reason=f"label {marker}"
    )
    ClassifierScore.objects.create(item=first, backend=Backend.OPENAI_POLICY, scores={"S": 1.0}, detail={"why": marker})
    copy_name, preview_name = image_store(Decoded(Image.new("RGB", (64, 48), (200, 10, 90)), 64, 48))
    MediaAsset.objects.create(
        item=first, position=0, host="img.example.test", status=MediaStatus.STORED, copy_name=copy_name,
        preview_name=preview_name, md5="0" * 32,
    )  # fmt: skip
    media_bytes = media_storage().open(copy_name).read()
    WebhookEvent.objects.create(
        client=api.client,
        event_type=WebhookEventType.ACCOUNT_ACTION,
        payload={"source": "integrator", "account_ref": ref, "reason": f"why {marker}"},
    )
    DeadLetter.objects.create(task="routing.tasks.triage_task", args=[[second.pk]], error_type="E", error=marker)
    GoldenItem.objects.create(
        text=f"golden {marker}", origin_item=first, queue=first.queue, expected_is_violation=True, created_by=admin_user
    )
    assert IdempotencyRecord.objects.exists()
    before = _dump(tmp_path)
    assert marker.encode() in before  # the search finds the content while it is there
    assert media_bytes[-200:] in _storage_bytes()

    response = api.post("/api/v1/erasures", {"account_ref": ref})

    assert response.status_code == 201
    assert response.json()["items_erased"] == 2
    after = _dump(tmp_path)
    assert marker.encode() not in after
    assert media_bytes[-200:] not in _storage_bytes()
    assert not media_storage().exists(copy_name)
    assert not media_storage().exists(preview_name)
    assert marker not in caplog.text
    assert ReviewItem.objects.get(pk=bystander.pk).text == "unrelated words"
    assert ItemEvent.objects.filter(item=first).exists()
    assert Decision.objects.get(item=first).is_final
