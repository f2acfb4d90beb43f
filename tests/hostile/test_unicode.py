"""Unicode edge cases stored and shown faithfully: the API gives back exactly what it took, and the reviewer
page shows it isolated (bidi), escaped, with NUL made visible."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.db import connection
from django.test import Client
from hypothesis import given, settings
from hypothesis import strategies as st

from ops_platform.core.fields import ESCAPE, nul_decode, nul_encode
from ops_platform.core.models import User
from ops_platform.core.templatetags.content import HIDDEN, ZWJ, visible_chars
from queues.models import Queue, ReviewItem
from queues.services import item_claim
from tests.conftest import PASSWORD, Api
from tests.hostile.unicode_samples import UNICODE_SAMPLES
from tests.queues.factories import item_queued

pytestmark = [pytest.mark.django_db]

SAMPLE_IDS = list(UNICODE_SAMPLES)

# Every character the encoder treats specially, among others, so the round trip is tried on its edge cases.
_tricky_text = st.lists(st.sampled_from(["\x00", ESCAPE, "0", "a", "\u202e", "👩\u200d💻", "\ufeff"])).map("".join)


@given(st.one_of(st.text(), _tricky_text))
def test_the_nul_escape_is_reversible_and_leaves_no_nul(value: str) -> None:
    encoded = nul_encode(value)
    assert "\x00" not in encoded
    assert nul_decode(encoded) == value


def _utf8(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True).encode()


@pytest.mark.parametrize("name", SAMPLE_IDS)
def test_content_goes_in_and_comes_out_of_the_api_identical(api: Api, name: str) -> None:
    text = UNICODE_SAMPLES[name]
    sent = {
        "external_id": f"unicode-{name}",
        "kind": "user_report",
        "text": text,
        "report_reasons": [text, "plain"],
        "metadata": {text: text, "nested": {"list": [text, 1, None]}},
    }
    created = api.post("/api/v1/items", sent)
    assert created.status_code == 201, created.content

    read = api.get(f"/api/v1/items/{created.json()['id']}")

    assert read.status_code == 200
    body = read.json()
    for field in ("text", "report_reasons", "metadata"):
        # Same JSON value, and the same UTF-8 bytes once serialised the same way (jsonb keeps object keys
        # sorted its own way, so objects are compared with sorted keys).
        assert body[field] == sent[field]
        assert _utf8(body[field]) == _utf8(sent[field])
    stored = ReviewItem.objects.get(external_id=f"unicode-{name}")
    assert (stored.text, stored.report_reasons, stored.metadata) == (text, sent["report_reasons"], sent["metadata"])


def test_a_batch_with_nul_is_stored_through_the_bulk_insert(api: Api) -> None:
    batch = [{"external_id": f"b{i}", "text": f"{i}\x00{UNICODE_SAMPLES['everything']}"} for i in range(3)]

    assert api.post("/api/v1/items", batch).status_code == 201

    assert sorted(ReviewItem.objects.values_list("text", flat=True)) == sorted(b["text"] for b in batch)
    with connection.cursor() as cursor:  # what PostgreSQL holds is escaped, never a NUL
        cursor.execute("SELECT text FROM queues_reviewitem WHERE external_id = 'b0'")
        raw = cursor.fetchone()[0]
    assert "\x00" not in raw
    assert raw.startswith("0" + ESCAPE + "0")


def test_an_appeal_statement_with_nul_is_kept(api: Api) -> None:
    # Appeal storage goes through the same field; the statement becomes the appeal item's text.
    from queues.models import ItemKind

    original = ReviewItem.objects.create(
        source=api.client.source, external_id="orig", text="x", state="decided", received_at="2026-01-01T00:00:00Z"
    )
    statement = "I\x00disagree \u202eevil\u202c 👍🏽"
    response = api.post("/api/v1/appeals", {"external_id": "ap-1", "item_external_id": "orig", "statement": statement})

    assert response.status_code == 201, response.content
    appeal = ReviewItem.objects.get(external_id="ap-1")
    assert (appeal.kind, appeal.appeal_of_id, appeal.text) == (ItemKind.APPEAL, original.pk, statement)


def test_identifiers_still_refuse_nul_with_the_field_named(api: Api) -> None:
    response = api.post("/api/v1/items", {"external_id": "a\x00b", "text": "x"})

    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "external_id", "problem": "Must not contain NUL (U+0000)."}]


def _content_html(html: str) -> str:
    match = re.search(r'<div class="content" dir="auto" data-testid="content">(.*?)</div>', html, re.DOTALL)
    assert match, "the content block is missing"
    return match.group(1)


@pytest.fixture
def claimed(reviewer: User, intake_queue: Queue) -> Any:
    def claim(text: str, **fields: Any) -> ReviewItem:
        item = item_queued(intake_queue, text=text, **fields)
        item_claim(item=item, actor=reviewer)
        return item

    return claim


@pytest.mark.parametrize("name", SAMPLE_IDS)
def test_the_reviewer_page_shows_the_text_isolated_and_faithful(reviewer: User, claimed: Any, name: str) -> None:
    text = UNICODE_SAMPLES[name]
    item = claimed(text, report_reasons=[text], report_count=1, metadata={"k": text})
    browser = Client()
    browser.login(username=reviewer.username, password=PASSWORD)

    html = browser.get(f"/review/items/{item.pk}/").content.decode()

    shown = _content_html(html)
    # Everything is passed through exactly but the characters a reader cannot see: NUL, bidi controls and
    # zero-width characters become marked, visible placeholders (joiners inside emoji stay).
    assert shown == visible_chars(text)
    assert "\x00" not in html
    assert not set(shown) & (set(HIDDEN) - {ZWJ}), "a hidden character reached the page as itself"
    # The report reasons and metadata carry their own direction too: an override cannot leak into the page.
    assert re.search(r'<span class="tag" dir="auto" data-testid="report-reason">', html)
    assert '<td dir="auto">k</td>' in html


def test_the_content_block_is_bidi_isolated_by_the_stylesheet(reviewer: User, claimed: Any) -> None:
    item = claimed(UNICODE_SAMPLES["rtl_bidi_controls"])
    browser = Client()
    browser.login(username=reviewer.username, password=PASSWORD)
    html = browser.get(f"/review/items/{item.pk}/").content.decode()
    assert re.search(r'href="[^"]*core/base\.css"', html), "the page does not load the shared stylesheet"

    css = Path(finders.find("core/base.css")).read_text()

    rule = re.search(r"\.content \{([^}]*)\}", css)
    assert rule
    assert "unicode-bidi: plaintext" in rule.group(1)


def test_markup_in_content_is_escaped_next_to_nul(reviewer: User, claimed: Any) -> None:
    item = claimed("<script>alert(1)</script>\x00<b>bold</b>&amp;")
    browser = Client()
    browser.login(username=reviewer.username, password=PASSWORD)

    shown = _content_html(browser.get(f"/review/items/{item.pk}/").content.decode())

    assert "<script>" not in shown
    assert "<b>" not in shown
    assert shown.startswith('&lt;script&gt;alert(1)&lt;/script&gt;<span class="nul"')
    assert shown.endswith("&lt;b&gt;bold&lt;/b&gt;&amp;amp;")


@settings(max_examples=40, deadline=None)
@given(text=st.one_of(_tricky_text, st.text(max_size=200)))
def test_any_text_survives_the_database(text: str) -> None:
    item = ReviewItem.objects.create(source="prop", external_id="p", text=text, received_at="2026-01-01T00:00:00Z")
    try:
        assert ReviewItem.objects.get(pk=item.pk).text == text
    finally:
        item.delete()


def test_an_error_echoing_a_nul_field_name_is_stored_and_replayed_for_its_idempotency_key(api: Api) -> None:
    # Found by the schemathesis drill: the stored response of an Idempotency-Key call is JSON in PostgreSQL,
    # and "Unknown field" errors name the field as sent.
    body = [{"external_id": "k", "text": "x", "\x00evil\u202e": 1}]

    first = api.post("/api/v1/items", body, HTTP_IDEMPOTENCY_KEY="nul-echo")
    again = api.post("/api/v1/items", body, HTTP_IDEMPOTENCY_KEY="nul-echo")

    assert first.status_code == again.status_code == 400
    assert first.json()["errors"] == [{"index": 0, "field": "\x00evil\u202e", "problem": "Unknown field."}]
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
