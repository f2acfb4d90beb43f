"""Images through the platform: hash banks imported, media fetched and matched at scoring, the matches in rules,
omni-moderation seeing the stored copy, and reviewers seeing only signed links to it."""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import json
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import AuditLog, User
from queues.models import Queue, ReviewItem
from routing.rules.columns import media_columns
from routing.rules.engine import vocabulary_for
from routing.rules.features import item_rows
from routing.rules.language import evaluate_columns, interpret, parse
from routing.scoring import openai_backends
from routing.scoring.media import pdq, services
from routing.scoring.media.fetcher import AddressPolicy
from routing.scoring.media.models import BankHash, HashBank, MediaAsset, MediaMatch, MediaStatus
from routing.scoring.media.selectors import item_media, items_media_matches
from routing.scoring.media.services import bank_active_set, bank_delete, banks_import, items_media_process
from routing.scoring.media.store import media_storage, media_token
from routing.scoring.pipeline import items_score
from tests.conftest import PASSWORD
from tests.queues.factories import item_queued
from tests.support.fake_openai import FakeOpenAI
from tests.support.image_server import ImageServer, picture

pytestmark = pytest.mark.django_db

LOOPBACK = ipaddress.ip_address("127.0.0.1")
ORIGINAL = picture(11, size=(320, 240))
OTHER = picture(12, size=(320, 240))


def jpeg_of(data: bytes, quality: int = 75) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture
def server(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[ImageServer]:
    """The image server, reachable by this test alone: the worker's address policy allows 127.0.0.1 here."""
    settings.MEDIA_FETCH_ENABLED = True
    monkeypatch.setattr(services, "address_policy", lambda: AddressPolicy(allowed=frozenset({LOOPBACK})))
    with ImageServer() as s:
        s.body("/known.jpg", jpeg_of(ORIGINAL))
        s.body("/other.png", OTHER)
        yield s


def bank_of(data: bytes, slug: str = "known-bad", kind: str = "pdq") -> str:
    value = pdq.pdq_hash(Image.open(io.BytesIO(data)))[0] if kind == "pdq" else hashlib.md5(data).hexdigest()  # noqa: S324
    banks_import(text=f"hash,bank,label\n{value},{slug},case 42\n", actor="test")
    return value


def media_item(*urls: str, text: str = "look at this") -> ReviewItem:
    return ReviewItem.objects.create(
        source="test",
        external_id=f"m-{ReviewItem.objects.count()}",
        text=text,
        media_urls=list(urls),
        received_at=timezone.now(),
    )


# --- banks ------------------------------------------------------------------------------------------


def test_a_csv_import_creates_banks_counts_repeats_and_is_audited() -> None:
    a, b = "f" * 64, "0123456789abcdef" * 4
    text = f"hash,bank,label\n{a},NCMEC sample,one\n{b.upper()},ncmec-sample,two\n{'a' * 32},md5-bank,\n"
    first = banks_import(text=text, actor="policy-team")
    again = banks_import(text=text, actor="policy-team")

    assert (first.added, first.already, first.banks) == (3, 0, ["md5-bank", "ncmec-sample"])
    assert (again.added, again.already) == (0, 3)
    assert set(BankHash.objects.values_list("kind", "value")) == {("pdq", a), ("pdq", b), ("md5", "a" * 32)}
    assert AuditLog.objects.filter(action="hash_bank.import").count() == 2


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("nothex" * 10 + "abcd,bank,x\n", "line 1: not a PDQ"),
        (f"{'f' * 64},bank\n{'f' * 63},bank\n", "line 2: not a PDQ"),
        (f"{'f' * 64}\n", "line 1: expected hash,bank,label"),
        (f"{'f' * 64},!!!,x\n", "line 1: the bank name is empty"),
        ("hash,bank,label\n", "the file holds no hashes"),
    ],
)
def test_a_bad_row_refuses_the_whole_file_naming_the_line(text: str, problem: str) -> None:
    with pytest.raises(ApplicationError) as refused:
        banks_import(text=text, actor="policy-team")
    assert problem in refused.value.message
    assert not BankHash.objects.exists()


# --- fetched, stored, matched -------------------------------------------------------------------------


def test_an_image_is_stored_re_encoded_hashed_and_matched_within_the_distance(server: ImageServer) -> None:
    # The bank holds the original's PDQ; the item links a JPEG re-encode of it.
    bank_of(ORIGINAL)
    item = media_item(server.url("/known.jpg?sig=abc"), server.url("/other.png"))

    assert items_media_process([item]) == 2

    known, other = MediaAsset.objects.filter(item=item).order_by("position")
    assert (known.status, known.content_type, known.host) == (MediaStatus.STORED, "image/jpeg", "127.0.0.1")
    assert known.md5 == hashlib.md5(jpeg_of(ORIGINAL)).hexdigest()  # noqa: S324
    storage = media_storage()
    assert storage.exists(known.copy_name)
    assert storage.exists(known.preview_name)
    with storage.open(known.copy_name) as stored:
        assert stored.read() != jpeg_of(ORIGINAL)  # a copy of our own making, not the bytes served
    match = MediaMatch.objects.get(item=item)
    assert (match.asset, match.bank.slug, match.kind, match.label) == (known, "known-bad", "pdq", "case 42")
    assert 0 <= match.distance <= 31
    assert not other.matches.exists()


def test_an_md5_bank_matches_the_exact_bytes_at_distance_zero(server: ImageServer) -> None:
    bank_of(jpeg_of(ORIGINAL), slug="exact", kind="md5")
    item = media_item(server.url("/known.jpg"))
    items_media_process([item])
    match = MediaMatch.objects.get(item=item)
    assert (match.bank.slug, match.kind, match.distance) == ("exact", "md5", 0)


def test_processing_twice_has_one_effect(server: ImageServer) -> None:
    item = media_item(server.url("/other.png"))
    items_media_process([item])
    hits = len(server.requests)
    assert items_media_process([item]) == 0
    assert len(server.requests) == hits
    assert MediaAsset.objects.filter(item=item).count() == 1


def test_a_bank_added_later_is_seen_by_the_next_item_without_a_restart(server: ImageServer) -> None:
    first = media_item(server.url("/known.jpg"))
    items_media_process([first])
    assert not MediaMatch.objects.exists()
    bank_of(ORIGINAL)
    second = media_item(server.url("/known.jpg"))
    items_media_process([second])
    assert MediaMatch.objects.filter(item=second).exists()


@pytest.mark.parametrize("dihedral", [True, False])
def test_a_rotated_or_mirrored_copy_matches_through_the_dihedral_hashes(
    server: ImageServer, settings: Any, dihedral: bool
) -> None:
    settings.MEDIA_PDQ_DIHEDRAL = dihedral
    bank_of(ORIGINAL)
    for name, transpose in [("turned", Image.Transpose.ROTATE_90), ("mirrored", Image.Transpose.FLIP_LEFT_RIGHT)]:
        out = io.BytesIO()
        Image.open(io.BytesIO(ORIGINAL)).convert("RGB").transpose(transpose).save(out, format="PNG")
        server.body(f"/{name}.png", out.getvalue())
    item = media_item(server.url("/turned.png"), server.url("/mirrored.png"))
    items_media_process([item])
    matches = MediaMatch.objects.filter(item=item)
    assert matches.count() == (2 if dihedral else 0)
    assert all(m.distance <= 31 for m in matches)


def test_an_items_addresses_are_fetched_at_once(server: ImageServer, settings: Any) -> None:
    # The server answers only when three requests wait together: a fetcher going one by one gets 503s.
    settings.MEDIA_FETCH_CONCURRENCY = 3
    gate = threading.Barrier(3)
    for n in range(3):
        server.gated(f"/gate-{n}.png", picture(20 + n), gate)
    item = media_item(*(server.url(f"/gate-{n}.png") for n in range(3)))

    assert items_media_process([item]) == 3
    assert set(MediaAsset.objects.filter(item=item).values_list("status", flat=True)) == {MediaStatus.STORED}
    assert server.most_in_flight == 3


def test_the_pool_bounds_the_fetches_in_flight(server: ImageServer, settings: Any) -> None:
    settings.MEDIA_FETCH_CONCURRENCY = 2
    gate = threading.Barrier(2)
    for n in range(4):
        server.gated(f"/gate-{n}.png", picture(30 + n), gate)
    first = media_item(server.url("/gate-0.png"), server.url("/gate-1.png"))
    second = media_item(server.url("/gate-2.png"), server.url("/gate-3.png"))

    assert items_media_process([first, second]) == 4
    assert MediaAsset.objects.filter(status=MediaStatus.STORED).count() == 4
    assert server.most_in_flight == 2


def test_an_items_fetches_share_one_total_time_cap(server: ImageServer, settings: Any) -> None:
    # Each address alone may take 30 s; the item's addresses together 0.5 s. One fetch at a time, in order.
    settings.MEDIA_FETCH_CONCURRENCY = 1
    settings.MEDIA_FETCH_SECONDS = 30.0
    settings.MEDIA_ITEM_FETCH_SECONDS = 0.5
    server.drip("/drip.png")
    slow = media_item(server.url("/drip.png"), server.url("/known.jpg"))
    other = media_item(server.url("/other.png"))

    assert items_media_process([slow, other]) == 3
    refusals = list(MediaAsset.objects.filter(item=slow).order_by("position").values_list("refusal", flat=True))
    assert refusals == ["too_slow", "item_too_slow"]
    assert "/known.jpg" not in {path for path, _host in server.requests}  # never asked for: no time was left
    assert MediaAsset.objects.get(item=other).status == MediaStatus.STORED  # its own clock


def test_a_switched_off_bank_no_longer_matches(server: ImageServer) -> None:
    bank_of(ORIGINAL)
    HashBank.objects.update(is_active=False, updated_at=timezone.now())
    item = media_item(server.url("/known.jpg"))
    items_media_process([item])
    assert not MediaMatch.objects.exists()


def test_switching_a_bank_off_stops_its_matches_for_rules_and_new_images_until_switched_on(
    server: ImageServer,
) -> None:
    bank_of(ORIGINAL, slug="first")
    bank_of(ORIGINAL, slug="second")
    before = media_item(server.url("/known.jpg"))
    items_media_process([before])
    first = HashBank.objects.get(slug="first")

    bank_active_set(bank=first, active=False, actor="policy-team")
    after = media_item(server.url("/known.jpg"))
    items_media_process([after])

    assert set(MediaMatch.objects.filter(item=after).values_list("bank__slug", flat=True)) == {"second"}
    assert items_media_matches([before.pk])[before.pk].bank == "second"  # "first" is closest but off
    assert {m.bank for view in item_media(before.pk) for m in view.matches} == {"second"}
    bank_active_set(bank=HashBank.objects.get(slug="second"), active=False, actor="policy-team")
    assert items_media_matches([before.pk, after.pk]) == {}

    bank_active_set(bank=first, active=True, actor="policy-team")
    again = media_item(server.url("/known.jpg"))
    items_media_process([again])
    assert set(MediaMatch.objects.filter(item=again).values_list("bank__slug", flat=True)) == {"first"}
    assert items_media_matches([before.pk])[before.pk].bank == "first"
    actions = list(
        AuditLog.objects.filter(action__startswith="hash_bank.").order_by("pk").values_list("action", flat=True)
    )
    assert actions[-3:] == ["hash_bank.disable", "hash_bank.disable", "hash_bank.enable"]


def test_deleting_a_bank_takes_its_slug_and_removes_its_hashes_and_matches(server: ImageServer) -> None:
    bank_of(ORIGINAL, slug="doomed")
    bank_of(ORIGINAL, slug="kept")
    item = media_item(server.url("/known.jpg"))
    items_media_process([item])
    doomed = HashBank.objects.get(slug="doomed")

    with pytest.raises(ApplicationError) as refused:
        bank_delete(bank=doomed, actor="policy-team", confirm="kept")
    assert refused.value.field == "confirm"
    assert HashBank.objects.filter(slug="doomed").exists()

    assert bank_delete(bank=doomed, actor="policy-team", confirm="doomed") == 1
    assert list(HashBank.objects.values_list("slug", flat=True)) == ["kept"]
    assert set(BankHash.objects.values_list("bank__slug", flat=True)) == {"kept"}
    assert set(MediaMatch.objects.values_list("bank__slug", flat=True)) == {"kept"}
    entry = AuditLog.objects.get(action="hash_bank.delete")
    assert entry.before["slug"] == "doomed"
    assert entry.after == {"entries_deleted": 1, "items_matched": 1}
    later = media_item(server.url("/known.jpg"))
    items_media_process([later])
    assert set(MediaMatch.objects.filter(item=later).values_list("bank__slug", flat=True)) == {"kept"}


def test_a_private_address_is_recorded_as_refused_and_scoring_goes_on(settings: Any, fake_openai: FakeOpenAI) -> None:
    settings.MEDIA_FETCH_ENABLED = True
    settings.SCORING_DEFAULT_CHAIN = ["openai_moderation"]
    item = media_item("http://169.254.169.254/latest/meta-data/iam", text="hello")

    report = items_score(item_ids=[item.pk])

    asset = MediaAsset.objects.get(item=item)
    assert (asset.status, asset.refusal, asset.host) == (MediaStatus.REFUSED, "private_address", "169.254.169.254")
    assert report.scored == {"openai_moderation": 1}


# --- rules ------------------------------------------------------------------------------------------


def test_rules_read_the_closest_match_live_and_in_backtest_columns(server: ImageServer) -> None:
    bank_of(ORIGINAL)
    matched = media_item(server.url("/known.jpg"))
    unmatched = media_item(server.url("/other.png"))
    plain = ReviewItem.objects.create(source="test", external_id="plain", text="no media", received_at=timezone.now())
    items = [matched, unmatched, plain]
    items_media_process(items)
    distance = MediaMatch.objects.get().distance

    rows = item_rows(items)
    assert (rows[matched.pk]["media.hash_match"], rows[matched.pk]["media.bank"]) == (True, "known-bad")
    assert rows[matched.pk]["media.distance"] == distance
    assert (rows[unmatched.pk]["media.hash_match"], rows[plain.pk]["media.bank"]) == (False, "")

    condition = 'media.hash_match and media.bank == "known-bad" and media.distance <= 31'
    node = parse(condition, vocabulary_for("intake"))
    live = [interpret(node, rows[i.pk]) is True for i in items]
    ids = np.array(sorted(i.pk for i in items), dtype=np.int64)
    columns = {**media_columns(ids)}
    backtest = evaluate_columns(node, columns, len(ids)).tolist()
    assert live == [True, False, False]
    assert backtest == [live[[i.pk for i in items].index(pk)] for pk in ids.tolist()]


def test_a_misspelt_media_name_is_refused_with_a_suggestion() -> None:
    from routing.rules.language import RuleLanguageError

    with pytest.raises(RuleLanguageError) as refused:
        parse("media.hash_matches", vocabulary_for("intake"))
    assert "media.hash_match" in str(refused.value.problems[0])


# --- omni-moderation --------------------------------------------------------------------------------


def test_omni_moderation_gets_the_stored_copy_as_a_data_url_never_the_address(
    server: ImageServer, settings: Any, fake_openai: FakeOpenAI
) -> None:
    settings.SCORING_DEFAULT_CHAIN = ["openai_moderation"]
    with_image = media_item(server.url("/known.jpg?sig=secret"), text="caption")
    text_only = ReviewItem.objects.create(source="test", external_id="t", text="just text", received_at=timezone.now())

    report = items_score(item_ids=[with_image.pk, text_only.pk])

    assert report.scored == {"openai_moderation": 2}
    bodies = [r.body for r in fake_openai.requests]
    assert ["just text"] in [b["input"] for b in bodies]
    [multi] = [b["input"] for b in bodies if isinstance(b["input"][0], dict)]
    assert multi[0] == {"type": "text", "text": "caption"}
    assert multi[1]["type"] == "image_url"
    assert multi[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert "127.0.0.1" not in json.dumps(bodies)
    assert "secret" not in json.dumps(bodies)
    score = with_image.scores.get(backend="openai_moderation")
    assert "sexual" in score.detail["image_categories"]


def reddish(url: str) -> dict[str, float]:
    """Scores a data: URL's image: mostly red is violent."""
    data = base64.b64decode(url.split(",", 1)[1])
    r, g, b = Image.open(io.BytesIO(data)).convert("RGB").resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    return {"violence": 0.9} if r > 2 * max(g, b) else {"violence": 0.05}


def test_omni_moderation_scores_every_image_and_keeps_the_highest(server: ImageServer, settings: Any) -> None:
    # The violent picture is the item's second: scoring the first alone would miss it.
    settings.SCORING_DEFAULT_CHAIN = ["openai_moderation"]
    red = io.BytesIO()
    Image.new("RGB", (160, 120), (200, 20, 30)).save(red, format="PNG")
    server.body("/red.png", red.getvalue())
    item = media_item(server.url("/other.png"), server.url("/red.png"), server.url("/known.jpg"), text="caption")
    with FakeOpenAI(image_scorer=reddish) as fake:
        settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL = "sk-test", fake.base_url
        openai_backends._client.cache_clear()
        items_score(item_ids=[item.pk])
        bodies = [r.body["input"] for r in fake.requests if r.path.endswith("/moderations")]
    openai_backends._client.cache_clear()

    assert len(bodies) == 3  # one request per image: the endpoint takes one image each
    for body in bodies:
        assert [part["type"] for part in body] == ["text", "image_url"]
        assert body[0]["text"] == "caption"
    assert len({body[1]["image_url"]["url"] for body in bodies}) == 3
    score = item.scores.get(backend="openai_moderation")
    assert score.scores["violence"] == pytest.approx(0.9)
    assert score.detail["images"] == 3
    assert score.detail["flagged"] is True


# --- what reviewers see -----------------------------------------------------------------------------


@pytest.fixture
def reviewing(reviewer: User, intake_queue: Queue, server: ImageServer) -> tuple[Client, ReviewItem, str]:
    bank_of(ORIGINAL)
    url = server.url("/known.jpg?sig=private-token")
    item = item_queued(intake_queue, media_urls=[url, "http://10.0.0.1/inside.png"])
    items_media_process([item])
    http = Client()
    http.login(username=reviewer.username, password=PASSWORD)
    return http, item, url


def test_the_item_page_shows_signed_links_and_the_match_never_the_address(
    reviewing: tuple[Client, ReviewItem, str],
) -> None:
    http, _, _ = reviewing
    page = http.post(reverse("review-next", args=["general"]), follow=True)
    html = page.content.decode()

    assert "/media/copy/" in html
    assert "127.0.0.1:" not in html
    assert "private-token" not in html
    assert 'data-testid="media-match"' in html
    assert "known-bad" in html
    assert "was not fetched: private_address" in html
    csp = page.headers["Content-Security-Policy"]
    img_src = next(d for d in csp.split(";") if d.strip().startswith("img-src")).split()[1:]
    assert img_src == ["'self'", "data:"]


def test_a_signed_link_serves_the_copy_and_a_forged_or_expired_one_does_not(
    reviewing: tuple[Client, ReviewItem, str], settings: Any
) -> None:
    http, item, _ = reviewing
    asset = MediaAsset.objects.get(item=item, position=0)
    token = media_token(asset.pk, "copy")

    served = http.get(reverse("media-copy", args=[token]))
    assert served.status_code == 200
    assert served["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(b"".join(served.streaming_content))).format == "JPEG"

    forged = signing.dumps({"a": asset.pk + 1, "v": "copy"}, salt="another-salt")
    assert http.get(reverse("media-copy", args=[forged])).status_code == 404
    assert http.get(reverse("media-copy", args=[token[:-2] + "xx"])).status_code == 404
    settings.MEDIA_LINK_MAX_AGE = -1
    assert http.get(reverse("media-copy", args=[token])).status_code == 404
    assert Client().get(reverse("media-copy", args=[media_token(asset.pk, "copy")])).status_code == 302


def test_policy_staff_import_a_bank_on_its_page_and_reviewers_cannot(policy_staff: User, reviewer: User) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    http = Client()
    http.login(username=reviewer.username, password=PASSWORD)
    assert http.get(reverse("media-banks")).status_code == 403

    http.login(username=policy_staff.username, password=PASSWORD)
    csv = SimpleUploadedFile("bank.csv", f"hash,bank,label\n{'e' * 64},partner-bank,x\n".encode())
    done = http.post(reverse("media-banks"), {"file": csv}, follow=True)
    assert "Added 1 hashes to partner-bank" in done.content.decode()
    bad = SimpleUploadedFile("bank.csv", b"<script>alert(1)</script>,bank,x\n")
    refused = http.post(reverse("media-banks"), {"file": bad}, follow=True)
    assert "line 1: not a PDQ" in refused.content.decode()
    assert "<script>alert(1)" not in refused.content.decode()
    assert list(HashBank.objects.values_list("slug", flat=True)) == ["partner-bank"]


def test_policy_staff_switch_off_and_delete_a_bank_on_its_page_and_reviewers_cannot(
    policy_staff: User, reviewer: User
) -> None:
    banks_import(text=f"{'e' * 64},partner-bank,x\n", actor="test")
    http = Client()
    http.login(username=reviewer.username, password=PASSWORD)
    assert http.post(reverse("media-bank-active", args=["partner-bank"]), {"active": "off"}).status_code == 403
    assert (
        http.post(reverse("media-bank-delete", args=["partner-bank"]), {"confirm": "partner-bank"}).status_code == 403
    )
    assert HashBank.objects.get().is_active

    http.login(username=policy_staff.username, password=PASSWORD)
    page = http.get(reverse("media-banks")).content.decode()
    assert 'data-testid="disable-partner-bank"' in page
    off = http.post(reverse("media-bank-active", args=["partner-bank"]), {"active": "off"}, follow=True)
    assert "partner-bank is now off." in off.content.decode()
    assert 'data-testid="enable-partner-bank"' in off.content.decode()
    assert not HashBank.objects.get().is_active
    wrong = http.post(reverse("media-bank-delete", args=["partner-bank"]), {"confirm": "partner"})
    assert wrong.status_code == 400
    assert 'data-field="confirm"' in wrong.content.decode()
    assert "Type the bank&#x27;s slug (partner-bank) to delete it." in wrong.content.decode()
    junk = http.post(reverse("media-bank-active", args=["partner-bank"]), {"active": "<b>maybe</b>"})
    assert junk.status_code == 400
    assert 'data-field="active"' in junk.content.decode()
    assert HashBank.objects.exists()
    gone = http.post(reverse("media-bank-delete", args=["partner-bank"]), {"confirm": "partner-bank"}, follow=True)
    assert "Deleted partner-bank and its 1 hashes." in gone.content.decode()
    assert not HashBank.objects.exists()
    assert http.post(reverse("media-bank-delete", args=["partner-bank"]), {"confirm": "x"}).status_code == 404
    assert set(AuditLog.objects.filter(actor=policy_staff).values_list("action", flat=True)) == {
        "hash_bank.disable",
        "hash_bank.delete",
    }
