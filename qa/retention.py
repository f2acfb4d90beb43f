"""QA's step of a content wipe (``ops_platform.core.retention``): golden items made from erased items, and QA's free
text on them. A retention purge leaves golden items alone: QA keeps them on purpose, as curated test content."""

from __future__ import annotations

from django.db.models import Q

from ops_platform.core.retention import ContentWipe
from qa.models import Adjudication, CalibrationRating, GoldenInjection, GoldenItem, QaReview
from queues.models import ReviewItem


def qa_content_wipe(wipe: ContentWipe) -> int:
    if not wipe.erasure:
        return 0
    made_from = Q(origin_item_id__any=wipe.item_ids) if wipe.item_ids else Q(pk__in=[])
    if wipe.account_refs:
        made_from |= Q(source=wipe.source, author_ref__in=list(wipe.account_refs))
    golden = list(GoldenItem.objects.filter(made_from).values_list("pk", flat=True))
    changed = GoldenItem.objects.filter(pk__in=golden).update(
        text="", media_urls=[], metadata={}, report_reasons=[], author_ref="", rationale="", is_active=False
    )
    # Their copies in live queues carry the same content.
    copies = GoldenInjection.objects.filter(golden_id__in=golden).values("item_id")
    changed += ReviewItem.objects.filter(pk__in=copies).update(
        text="", media_urls=[], metadata={}, report_reasons=[], author_ref=""
    )
    if wipe.item_ids:
        changed += (
            QaReview.objects.filter(sample__item_id__any=wipe.item_ids).exclude(rationale="").update(rationale="")
        )
        changed += Adjudication.objects.filter(sample__item_id__any=wipe.item_ids).update(rationale="")
        changed += (
            CalibrationRating.objects.filter(session_item__item_id__any=wipe.item_ids)
            .exclude(rationale="")
            .update(rationale="")
        )
    return changed
