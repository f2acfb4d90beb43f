"""Routing's steps of a content wipe (``ops_platform.core.retention``): what intake and scoring keep of an item."""

from __future__ import annotations

from typing import Any

from ops_platform.core.retention import ContentWipe
from routing.intake.models import DeadLetter, IdempotencyRecord
from routing.scoring.media.models import MediaAsset
from routing.scoring.media.store import media_storage
from routing.scoring.models import ClassifierScore


def score_details_wipe(wipe: ContentWipe) -> int:
    """The LLM's rationale may quote the text; the scores themselves are numbers and stay."""
    return ClassifierScore.objects.filter(item_id__any=wipe.item_ids).exclude(detail={}).update(detail={})


def media_copies_wipe(wipe: ContentWipe) -> int:
    """Delete the stored copy and preview of each image; an erasure also drops the host and the hashes.

    Files go inside the batch's transaction: should it roll back, the next run finds the names and deletes
    nothing twice (a missing file is no error), instead of a committed row pointing at a file left behind."""
    if not wipe.item_ids:
        return 0
    storage = media_storage()
    assets = MediaAsset.objects.filter(item_id__any=wipe.item_ids)
    deleted = 0
    for copy_name, preview_name in assets.exclude(copy_name="", preview_name="").values_list(
        "copy_name", "preview_name"
    ):
        for name in (copy_name, preview_name):
            if name:
                storage.delete(name)
                deleted += 1
    cleared: dict[str, Any] = {"copy_name": "", "preview_name": ""}
    if wipe.erasure:
        cleared |= {"host": "", "md5": "", "pdq": "", "pdq_quality": None, "width": None, "height": None}
    assets.update(**cleared)
    return deleted


def _mentions(value: Any, ids: set[int]) -> bool:
    """Whether a stored JSON value names one of ``ids``: as an ``id``/``item_id`` key, or an id in a list."""
    if isinstance(value, dict):
        return any(
            (k in ("id", "item_id") and isinstance(v, int) and v in ids) or _mentions(v, ids)
            for k, v in value.items()
            if k != "index"
        )
    if isinstance(value, list):
        return any((isinstance(v, int) and v in ids) or _mentions(v, ids) for v in value)
    return False


def idempotency_records_wipe(wipe: ContentWipe) -> int:
    """An erasure drops the client's stored responses that name an erased item (they expire within a day anyway)."""
    if not wipe.erasure or not wipe.item_ids:
        return 0
    ids = set(wipe.item_ids)
    records = IdempotencyRecord.objects.filter(client__source=wipe.source).only("pk", "response_body")
    doomed = [r.pk for r in records.iterator(chunk_size=2000) if _mentions(r.response_body, ids)]
    deleted, _ = IdempotencyRecord.objects.filter(pk__any=doomed).delete()
    return deleted


def dead_letters_wipe(wipe: ContentWipe) -> int:
    """Dead letters hold a task's ids and its error; an erasure empties the error of those naming an erased item
    (the ids stay, so the letter can still be re-driven)."""
    if not wipe.erasure or not wipe.item_ids:
        return 0
    ids = set(wipe.item_ids)
    letters = DeadLetter.objects.exclude(error="").only("pk", "args")
    doomed = [letter.pk for letter in letters.iterator(chunk_size=2000) if _mentions(letter.args, ids)]
    return DeadLetter.objects.filter(pk__any=doomed).update(error="")
