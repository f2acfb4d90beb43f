"""Writes for images: fetch, store and hash an item's media and match them against the active banks; import
hash banks from the CSV hash-sharing programmes exchange."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone
from django.utils.text import slugify

from ops_platform.core.errors import ApplicationError
from ops_platform.core.models import User
from ops_platform.core.services import audit_record
from queues.models import ReviewItem
from routing.scoring.media import pdq
from routing.scoring.media.fetcher import (
    AddressPolicy,
    CachingResolver,
    Fetched,
    FetchLimits,
    IPAddress,
    MediaRefused,
    local_endpoints_parse,
    media_fetch,
    media_log_refusal,
)
from routing.scoring.media.index import PdqIndex
from routing.scoring.media.models import BankHash, HashBank, HashKind, MediaAsset, MediaMatch, MediaStatus
from routing.scoring.media.store import Decoded, image_decode, image_store

logger = logging.getLogger(__name__)

CSV_COLUMNS = ("hash", "bank", "label")


# --- banks ------------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    added: int = 0
    already: int = 0
    banks: list[str] = field(default_factory=list)


def hash_kind(value: str) -> str:
    """pdq for 64 hex digits, md5 for 32; anything else is refused by the caller."""
    if pdq.is_pdq(value):
        return HashKind.PDQ
    if len(value) == 32 and all(ch in "0123456789abcdef" for ch in value):
        return HashKind.MD5
    return ""


def banks_import(*, text: str, actor: User | str) -> ImportReport:
    """Add the rows of a ``hash,bank,label`` CSV (header optional). Banks are created as they are named; a
    hash already in its bank is counted, not duplicated. Any bad row refuses the whole file, naming the line."""
    rows: list[tuple[int, str, str, str, str]] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip():
            continue
        cells = [cell.strip() for cell in row]
        if number == 1 and [c.lower() for c in cells[:3]] == list(CSV_COLUMNS):
            continue
        if len(cells) < 2:
            raise ApplicationError(f"line {number}: expected hash,bank,label")
        value, bank = cells[0].lower(), slugify(cells[1])[:64]
        label = cells[2][:200] if len(cells) > 2 else ""
        kind = hash_kind(value)
        if not kind:
            raise ApplicationError(f"line {number}: not a PDQ (64 hex digits) or MD5 (32 hex digits) hash")
        if not bank:
            raise ApplicationError(f"line {number}: the bank name is empty")
        rows.append((number, value, bank, label, kind))
    if not rows:
        raise ApplicationError("the file holds no hashes")
    report = ImportReport()
    now = timezone.now()
    with transaction.atomic():
        banks: dict[str, HashBank] = {}
        for slug in dict.fromkeys(r[2] for r in rows):
            banks[slug], _ = HashBank.objects.select_for_update().get_or_create(slug=slug, defaults={"name": slug})
        before = BankHash.objects.filter(bank__in=banks.values()).count()
        BankHash.objects.bulk_create(
            [BankHash(bank=banks[b], kind=k, value=v, label=lbl, created_at=now) for _, v, b, lbl, k in rows],
            ignore_conflicts=True,
        )
        report.added = BankHash.objects.filter(bank__in=banks.values()).count() - before
        report.already = len(rows) - report.added
        report.banks = sorted(banks)
        HashBank.objects.filter(pk__in=[b.pk for b in banks.values()]).update(updated_at=now)
        audit_record(
            actor=actor,
            action="hash_bank.import",
            target=next(iter(banks.values())),
            after={"banks": report.banks, "added": report.added, "already": report.already},
        )
    return report


def bank_active_set(*, bank: HashBank, active: bool, actor: User | str) -> HashBank:
    """Switch a bank on or off. An inactive bank matches no new image, and rules no longer see the matches it
    made (they stay stored, and count again if it is switched back on). Audited."""
    with transaction.atomic():
        bank = HashBank.objects.select_for_update().get(pk=bank.pk)
        if bank.is_active == active:
            return bank
        before = {"is_active": bank.is_active}
        bank.is_active = active
        bank.updated_at = timezone.now()
        bank.save(update_fields=["is_active", "updated_at"])
        action = "hash_bank.enable" if active else "hash_bank.disable"
        audit_record(actor=actor, action=action, target=bank, before=before, after={"is_active": active})
    return bank


def bank_delete(*, bank: HashBank, actor: User | str, confirm: str) -> int:
    """Delete a bank, its entries and the matches it made; ``confirm`` must repeat its slug. Returns how many
    entries went. Audited with what was deleted (the entries themselves are not kept)."""
    if confirm.strip() != bank.slug:
        raise ApplicationError(f"Type the bank's slug ({bank.slug}) to delete it.", field="confirm")
    with transaction.atomic():
        bank = HashBank.objects.select_for_update().get(pk=bank.pk)
        entries = BankHash.objects.filter(bank=bank).count()
        matched = MediaMatch.objects.filter(bank=bank).values("item_id").distinct().count()
        audit_record(
            actor=actor,
            action="hash_bank.delete",
            target=bank,
            before={"slug": bank.slug, "name": bank.name, "is_active": bank.is_active},
            after={"entries_deleted": entries, "items_matched": matched},
        )
        MediaMatch.objects.filter(bank=bank).delete()
        BankHash.objects.filter(bank=bank).delete()
        bank.delete()
    return entries


# --- the per-worker matcher ------------------------------------------------------------------------------


@dataclass
class Matcher:
    version: tuple[object, ...]
    index: PdqIndex
    pdq_entries: list[tuple[int, str, str]]  # row -> (bank id, bank slug, label)
    md5: dict[str, list[tuple[int, str, str]]]


_matcher: Matcher | None = None
_lock = threading.Lock()


def banks_version() -> tuple[object, ...]:
    """Changes whenever a bank or an entry is added, removed, switched on or off."""
    hashes = BankHash.objects.aggregate(n=Count("pk"), last=Max("pk"))
    banks = HashBank.objects.aggregate(n=Count("pk"), changed=Max("updated_at"))
    active = HashBank.objects.filter(is_active=True).count()
    return hashes["n"], hashes["last"], banks["n"], banks["changed"], active


def matcher_current() -> Matcher:
    """This worker's index of the active banks, rebuilt when the banks changed since it was built."""
    global _matcher
    version = banks_version()
    with _lock:
        if _matcher is not None and _matcher.version == version:
            return _matcher
        rows = BankHash.objects.filter(bank__is_active=True).values_list(
            "kind", "value", "label", "bank_id", "bank__slug"
        )
        hashes: list[str] = []
        entries: list[tuple[int, str, str]] = []
        md5: dict[str, list[tuple[int, str, str]]] = {}
        for kind, value, label, bank_id, slug in rows.iterator(chunk_size=20_000):
            if kind == HashKind.PDQ:
                hashes.append(value)
                entries.append((bank_id, slug, label))
            else:
                md5.setdefault(value, []).append((bank_id, slug, label))
        _matcher = Matcher(version, PdqIndex(pdq.hex_to_words(hashes)), entries, md5)
        return _matcher


# --- items ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hashed:
    md5: str
    pdq: str
    quality: int
    # The PDQ hashes of the image's rotations and flips (pdq.DIHEDRAL, the original first); empty when unknown.
    dihedral: tuple[str, ...] = ()


def image_hash(data: bytes, decoded: Decoded) -> Hashed:
    hashes, quality = pdq.pdq_dihedral(decoded.image)
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return Hashed(md5=md5, pdq=hashes[0], quality=quality, dihedral=tuple(hashes))


def media_matches_find(hashed: Hashed, matcher: Matcher) -> list[tuple[int, str, int, str]]:
    """(bank id, kind, distance, label): every bank's closest entry, by MD5 and by PDQ. With
    ``MEDIA_PDQ_DIHEDRAL`` a PDQ entry matches the image or any rotation or flip of it (the closest counts)."""
    found: dict[tuple[int, str], tuple[int, str]] = {}
    for bank_id, _slug, label in matcher.md5.get(hashed.md5, []):
        found.setdefault((bank_id, HashKind.MD5), (0, label))
    if hashed.pdq and hashed.quality >= settings.MEDIA_PDQ_MIN_QUALITY:
        queries = hashed.dihedral if settings.MEDIA_PDQ_DIHEDRAL and hashed.dihedral else (hashed.pdq,)
        for words in pdq.hex_to_words(list(dict.fromkeys(queries))):
            rows, dists = matcher.index.search(words, settings.MEDIA_PDQ_MAX_DISTANCE)
            for row, dist in zip(rows.tolist(), dists.tolist(), strict=True):
                bank_id, _slug, label = matcher.pdq_entries[row]
                known = found.get((bank_id, HashKind.PDQ))
                if known is None or dist < known[0]:
                    found[(bank_id, HashKind.PDQ)] = (dist, label)
    return [(bank, kind, dist, label) for (bank, kind), (dist, label) in found.items()]


def image_record(
    *, item: ReviewItem, position: int, host: str, data: bytes, content_type: str, matcher: Matcher | None = None
) -> MediaAsset:
    """Decode, store, hash and match one image of an item (fetched, or drawn by the demo)."""
    try:
        decoded = image_decode(data)
    except MediaRefused as refusal:
        return _refused(item, position, host, refusal)
    copy_name, preview_name = image_store(decoded)
    hashed = image_hash(data, decoded)
    asset = MediaAsset.objects.create(
        item=item,
        position=position,
        host=host,
        status=MediaStatus.STORED,
        content_type=content_type,
        width=decoded.width,
        height=decoded.height,
        md5=hashed.md5,
        pdq=hashed.pdq,
        pdq_quality=hashed.quality,
        copy_name=copy_name,
        preview_name=preview_name,
    )
    matches = media_matches_find(hashed, matcher or matcher_current())
    MediaMatch.objects.bulk_create(
        [
            MediaMatch(asset=asset, item=item, bank_id=bank, kind=kind, distance=dist, label=label)
            for bank, kind, dist, label in matches
        ],
        ignore_conflicts=True,
    )
    return asset


def media_copy(*, source: ReviewItem, targets: Sequence[ReviewItem]) -> int:
    """Give each target item the source item's media as they were stored: the same stored copies (shared
    storage names), hashes and refusals, so the targets show and score the same images and never fetch their
    addresses. Matches are the source's, plus any the stored hashes make against the banks as they are now (a
    bank added since). Returns how many media rows were copied; call it before the targets are committed."""
    assets = list(MediaAsset.objects.filter(item=source).order_by("position"))
    if not assets or not targets:
        return 0
    matcher = matcher_current()
    found: dict[int, dict[tuple[int, str], tuple[int, str]]] = {}
    for asset in assets:
        mine = found.setdefault(asset.pk, {})
        for match in MediaMatch.objects.filter(asset=asset):
            mine[(match.bank_id, match.kind)] = (match.distance, match.label)
        if asset.status == MediaStatus.STORED:
            hashed = Hashed(md5=asset.md5, pdq=asset.pdq, quality=asset.pdq_quality or 0)
            for bank, kind, dist, label in media_matches_find(hashed, matcher):
                if (bank, kind) not in mine or dist < mine[(bank, kind)][0]:
                    mine[(bank, kind)] = (dist, label)
    copied = 0
    for target in targets:
        for asset in assets:
            twin = MediaAsset.objects.create(
                item=target,
                **{
                    f.attname: getattr(asset, f.attname)
                    for f in MediaAsset._meta.concrete_fields
                    if f.attname not in ("id", "item_id", "created_at")
                },
            )
            MediaMatch.objects.bulk_create(
                [
                    MediaMatch(asset=twin, item=target, bank_id=bank, kind=kind, distance=dist, label=label)
                    for (bank, kind), (dist, label) in found[asset.pk].items()
                ],
                ignore_conflicts=True,
            )
            copied += 1
    return copied


def _refused(item: ReviewItem, position: int, host: str, refusal: MediaRefused) -> MediaAsset:
    return MediaAsset.objects.create(
        item=item, position=position, host=host[:255], status=MediaStatus.REFUSED, refusal=refusal.reason
    )


_resolver: CachingResolver | None = None
_endpoints: tuple[tuple[str, ...], frozenset[tuple[IPAddress, int]]] | None = None
_resolver_lock = threading.Lock()


def media_resolver() -> CachingResolver:
    """This worker process's name lookups: capped, one at a time per name, answers and failures remembered
    (``MEDIA_DNS_*``). Made on first use, so each pool process after the fork has its own."""
    global _resolver
    with _resolver_lock:
        if _resolver is None:
            _resolver = CachingResolver(
                timeout=settings.MEDIA_DNS_TIMEOUT_SECONDS,
                ttl=settings.MEDIA_DNS_CACHE_SECONDS,
                failure_ttl=settings.MEDIA_DNS_FAILURE_CACHE_SECONDS,
            )
        return _resolver


def local_endpoints() -> frozenset[tuple[IPAddress, int]]:
    """``MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS``, parsed (loopback address and port pairs; empty by default, set only
    by bench/e2e.py for the image server it runs). A bad entry stops the fetch loudly."""
    global _endpoints
    values = tuple(settings.MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS)
    if _endpoints is None or _endpoints[0] != values:
        try:
            parsed = local_endpoints_parse(values)
        except ValueError as exc:
            raise ImproperlyConfigured(f"MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS: {exc}") from None
        if parsed:
            logger.warning(
                "media: MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS is set (%d loopback endpoints): benchmarks only", len(parsed)
            )
        _endpoints = (values, parsed)
    return _endpoints[1]


def address_policy() -> AddressPolicy:
    """The addresses the worker may fetch from: public ones only (plus the loopback endpoints a benchmark names
    in ``MEDIA_FETCH_ALLOW_LOCAL_ENDPOINTS``, off by default). Tests that serve images on 127.0.0.1 replace this
    function for their own run."""
    return AddressPolicy(resolver=media_resolver(), allowed_endpoints=local_endpoints())


@dataclass
class _ItemClock:
    """The total time an item's fetches may take, from the start of its first fetch."""

    seconds: float
    deadline: dict[int, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def remaining(self, item_id: int) -> float:
        now = time.monotonic()
        with self.lock:
            return self.deadline.setdefault(item_id, now + self.seconds) - now


def _fetch_one(url: str, item_id: int, limits: FetchLimits, policy: AddressPolicy, clock: _ItemClock) -> Fetched:
    """One address, within its own caps and whatever is left of its item's total time."""
    left = clock.remaining(item_id)
    if left <= 0:
        raise MediaRefused("item_too_slow", f"the item's fetches took over {clock.seconds:g}s")
    return media_fetch(url, limits=replace(limits, max_seconds=min(limits.max_seconds, left)), policy=policy)


def items_media_process(
    items: Sequence[ReviewItem], *, policy: AddressPolicy | None = None, limits: FetchLimits | None = None
) -> int:
    """Fetch and hash the media of items not processed yet; returns how many addresses were tried.

    Runs in the scoring worker, before the classifiers, so rules see the matches. Addresses are fetched by a
    pool of ``MEDIA_FETCH_CONCURRENCY`` threads, each within the per-address caps, and all of one item's
    within ``MEDIA_ITEM_FETCH_SECONDS`` in total; decoding, hashing and the database stay on this thread. An
    address already tried (stored or refused) is not fetched again: running this twice has one effect.
    """
    wanted = [item for item in items if item.media_urls]
    if not wanted or not settings.MEDIA_FETCH_ENABLED:
        return 0
    done = set(MediaAsset.objects.filter(item__in=wanted).values_list("item_id", "position"))
    matcher = matcher_current()
    limits = limits or FetchLimits(
        max_bytes=settings.MEDIA_MAX_BYTES,
        max_seconds=settings.MEDIA_FETCH_SECONDS,
        max_redirects=settings.MEDIA_MAX_REDIRECTS,
    )
    policy = policy or address_policy()
    clock = _ItemClock(settings.MEDIA_ITEM_FETCH_SECONDS)
    jobs = [
        (item, position, url)
        for item in wanted
        for position, url in enumerate(item.media_urls[: settings.MEDIA_MAX_PER_ITEM])
        if (item.pk, position) not in done and isinstance(url, str)
    ]
    if not jobs:
        return 0
    with ThreadPoolExecutor(max_workers=max(1, settings.MEDIA_FETCH_CONCURRENCY), thread_name_prefix="media") as pool:
        futures = {pool.submit(_fetch_one, job[2], job[0].pk, limits, policy, clock): job for job in jobs}
        for future in as_completed(futures):
            item, position, url = futures[future]
            try:
                fetched = future.result()
            except MediaRefused as refusal:
                media_log_refusal(url, refusal)
                _refused(item, position, _host(url), refusal)
                continue
            image_record(
                item=item,
                position=position,
                host=fetched.host,
                data=fetched.data,
                content_type=fetched.content_type,
                matcher=matcher,
            )
    return len(jobs)


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""
