"""Golden copies carry their golden's stored media: the same stored copies, hashes, refusals and bank matches,
so they show and score the same images as the item they came from, and their addresses are not fetched again
(a third-party image may have changed or gone since)."""

from __future__ import annotations

import io
import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest
from django.utils import timezone
from PIL import Image

from ops_platform.core.models import User
from qa.models import GoldenInjection
from qa.services import golden_copy, golden_create
from queues.models import Queue, ReviewItem
from routing.scoring.media import pdq, services
from routing.scoring.media.fetcher import AddressPolicy
from routing.scoring.media.models import MediaAsset, MediaMatch, MediaStatus
from routing.scoring.media.selectors import item_media, items_image_data_urls
from routing.scoring.media.services import banks_import, items_media_process
from tests.support.image_server import ImageServer, picture

pytestmark = pytest.mark.django_db

ORIGINAL = picture(41, size=(320, 240))
LATER = picture(42, size=(320, 240))
SAME = ("position", "status", "refusal", "host", "md5", "pdq", "pdq_quality", "copy_name", "preview_name")


@pytest.fixture
def server(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[ImageServer]:
    settings.MEDIA_FETCH_ENABLED = True
    loopback = frozenset({ipaddress.ip_address("127.0.0.1")})
    monkeypatch.setattr(services, "address_policy", lambda: AddressPolicy(allowed=loopback))
    with ImageServer() as s:
        s.body("/photo.png", ORIGINAL)
        yield s


def fetched(*urls: str) -> ReviewItem:
    item = ReviewItem.objects.create(
        source="test",
        external_id=f"g-{ReviewItem.objects.count()}",
        text="look",
        media_urls=list(urls),
        received_at=timezone.now(),
    )
    items_media_process([item])
    return item


def media_of(item: ReviewItem) -> list[tuple[Any, ...]]:
    return list(MediaAsset.objects.filter(item=item).order_by("position").values_list(*SAME))


def matches_of(item: ReviewItem) -> set[tuple[Any, ...]]:
    return set(MediaMatch.objects.filter(item=item).values_list("asset__position", "bank__slug", "kind", "distance"))


def test_a_golden_copy_shows_and_scores_the_images_of_the_item_it_came_from(
    server: ImageServer, qa_lead: User, intake_queue: Queue
) -> None:
    value, _ = pdq.pdq_hash(Image.open(io.BytesIO(ORIGINAL)))
    banks_import(text=f"{value},known-bad,case 7\n", actor="test")
    origin = fetched(server.url("/photo.png"), "http://10.0.0.1/inside.png")
    golden = golden_create(
        actor=qa_lead,
        queue=intake_queue,
        text="look",
        expected_is_violation=False,
        media_urls=list(origin.media_urls),
        origin_item=origin,
    )
    server.body("/photo.png", LATER)  # the address now serves another picture
    asked = len(server.requests)

    copy = golden_copy(golden, now=timezone.now())
    items_media_process([copy])  # what triage runs: nothing left to fetch

    assert len(server.requests) == asked
    assert media_of(copy) == media_of(origin)
    assert [row[1] for row in media_of(copy)] == [MediaStatus.STORED, MediaStatus.REFUSED]
    assert matches_of(copy) == matches_of(origin) == {(0, "known-bad", "pdq", 0)}
    assert items_image_data_urls([copy.pk])[copy.pk] == items_image_data_urls([origin.pk])[origin.pk]
    assert [(m.status, m.matches) for m in item_media(copy.pk)] == [
        (m.status, m.matches) for m in item_media(origin.pk)
    ]


def test_a_bank_added_after_the_golden_was_made_matches_its_next_copies(
    server: ImageServer, qa_lead: User, intake_queue: Queue
) -> None:
    origin = fetched(server.url("/photo.png"))
    golden = golden_create(
        actor=qa_lead,
        queue=intake_queue,
        text="look",
        expected_is_violation=False,
        media_urls=list(origin.media_urls),
        origin_item=origin,
    )
    value, _ = pdq.pdq_hash(Image.open(io.BytesIO(ORIGINAL)))
    banks_import(text=f"{value},added-later,\n", actor="test")

    copy = golden_copy(golden, now=timezone.now())

    assert not MediaMatch.objects.filter(item=origin).exists()
    assert matches_of(copy) == {(0, "added-later", "pdq", 0)}


def test_a_golden_written_by_hand_fetches_once_and_its_later_copies_share_that(
    server: ImageServer, qa_lead: User, intake_queue: Queue
) -> None:
    golden = golden_create(
        actor=qa_lead,
        queue=intake_queue,
        text="look",
        expected_is_violation=False,
        media_urls=[server.url("/photo.png")],
    )
    first = golden_copy(golden, now=timezone.now())
    GoldenInjection.objects.create(golden=golden, item=first, injected_at=timezone.now())
    items_media_process([first])
    server.body("/photo.png", LATER)
    asked = len(server.requests)

    second = golden_copy(golden, now=timezone.now())
    items_media_process([second])

    assert len(server.requests) == asked
    assert media_of(second) == media_of(first)
