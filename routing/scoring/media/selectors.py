"""Reads for images: each item's closest bank match (what rules see) and its stored media (what reviewers see)."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count
from django.urls import reverse

from queues.models import ReviewItem
from queues.panels import Panel
from routing.scoring.media.models import HashBank, MediaAsset, MediaMatch, MediaStatus
from routing.scoring.media.store import media_storage, media_token


@dataclass(frozen=True)
class BestMatch:
    bank: str
    kind: str
    distance: int
    label: str


def items_media_matches(item_ids: Sequence[int]) -> dict[int, BestMatch]:
    """item id -> its closest match (an exact MD5 match counts as distance 0), for items that matched a bank
    that is switched on."""
    best: dict[int, BestMatch] = {}
    rows = (
        MediaMatch.objects.filter(item_id__in=list(item_ids), bank__is_active=True)
        .order_by("item_id", "distance", "bank__slug")
        .values_list("item_id", "bank__slug", "kind", "distance", "label")
    )
    for item_id, bank, kind, distance, label in rows:
        best.setdefault(item_id, BestMatch(bank, kind, distance, label))
    return best


@dataclass(frozen=True)
class MediaView:
    position: int
    status: str
    refusal: str
    host: str
    width: int | None
    height: int | None
    copy_url: str
    preview_url: str
    matches: list[BestMatch]


def item_media(item_id: int) -> list[MediaView]:
    """An item's media as a reviewer sees them: signed links to the stored copies, and what each matched."""
    assets = list(MediaAsset.objects.filter(item_id=item_id).order_by("position"))
    matches: dict[int, list[BestMatch]] = {}
    active = MediaMatch.objects.filter(asset__in=assets, bank__is_active=True)
    for m in active.select_related("bank").order_by("distance"):
        matches.setdefault(m.asset_id, []).append(BestMatch(m.bank.slug, m.kind, m.distance, m.label))
    views = []
    for asset in assets:
        stored = asset.status == MediaStatus.STORED
        views.append(
            MediaView(
                position=asset.position,
                status=asset.status,
                refusal=asset.refusal,
                host=asset.host,
                width=asset.width,
                height=asset.height,
                copy_url=reverse("media-copy", args=[media_token(asset.pk, "copy")]) if stored else "",
                preview_url=reverse("media-copy", args=[media_token(asset.pk, "preview")]) if stored else "",
                matches=matches.get(asset.pk, []),
            )
        )
    return views


def banks_summary() -> list[tuple[HashBank, int, int]]:
    """(bank, entries, items matched) for the policy staff's bank page."""
    banks = HashBank.objects.annotate(
        entries=Count("hashes", distinct=True), matched=Count("matches__item", distinct=True)
    ).order_by("slug")
    return [(b, b.entries, b.matched) for b in banks]


def items_image_data_urls(item_ids: Sequence[int]) -> dict[int, list[str]]:
    """item id -> its stored copies as data: URLs in position order (the re-encoded JPEGs, never the
    third-party addresses); at most ``MEDIA_MAX_PER_ITEM`` each."""
    rows = (
        MediaAsset.objects.filter(item_id__in=list(item_ids), status=MediaStatus.STORED)
        .order_by("item_id", "position")
        .values_list("item_id", "copy_name")
    )
    storage = media_storage()
    urls: dict[int, list[str]] = {}
    for item_id, name in rows:
        mine = urls.setdefault(item_id, [])
        if len(mine) >= settings.MEDIA_MAX_PER_ITEM:
            continue
        with storage.open(name, "rb") as handle:
            mine.append("data:image/jpeg;base64," + base64.b64encode(handle.read()).decode("ascii"))
    return urls


def media_panel(item: ReviewItem) -> Panel | None:
    """The item's media on the reviewer's page, inside the item's card: stored copies and bank matches."""
    if not item.media_urls:
        return None
    media = item_media(item.pk)
    if not media:
        return None
    return Panel("Media", "routing/media_panel.html", {"media": media}, placement="content")
