"""What a rule sees of an item: one row (a dict keyed by rule names) for live routing. ``rules.columns``
builds the same fields as numpy columns over many stored items for a backtest.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db.models import Count, Q

from ops_platform.core.models import ClassifierCategory, Policy
from queues.accounts.selectors import ACCOUNT_FEATURE_DEFAULTS, account_features
from queues.models import Decision, ItemState, ReviewItem
from routing.rules.language import score_key
from routing.scoring.media.selectors import BestMatch, items_media_matches
from routing.scoring.selectors import items_scores

ITEM_STRINGS = ("kind", "source", "surface", "language")
# The item fields a live row reads (``item_rows`` without ``now``): triage loads only these.
ROW_FIELDS = ("pk", *ITEM_STRINGS, "text", "report_count", "media_urls", "metadata", "author_ref")
# What triage loads of an item (``queues.selectors.items_load``): a live row's fields, which hold what the scorers
# read too (text, language), the state it checks, and whether it is a QA golden copy (never auto-actioned).
TRIAGE_FIELDS = (*ROW_FIELDS, "state", "is_golden")
MANY_AUTHORS = 1_000


def raw_score_keys() -> dict[str, str]:
    """Rule name (``score.sexual_minors``) -> the key stored in ClassifierScore.scores (``sexual/minors``)."""
    raw = [*ClassifierCategory.values, *(f"policy:{slug}" for slug in Policy.objects.values_list("slug", flat=True))]
    return {f"score.{score_key(key)}": key for key in raw}


def author_history(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int]]:
    """(source, author_ref) -> (prior violations, prior reviews), counted over final decisions and auto-actions.
    Golden copies carry a real author's reference but QA's content: they count for nobody."""
    pairs = {p for p in pairs if p[1]}
    if not pairs:
        return {}
    refs = {a for _, a in pairs}
    history: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    decided = Decision.objects.filter(is_final=True, superseded_by__isnull=True, item__is_golden=False)
    auto = ReviewItem.objects.filter(state=ItemState.AUTO_ACTIONED, is_golden=False)
    # A backtest asks for the authors of a million items: then every author's counts, kept below, cost less
    # than a query naming them all (which SQLite would refuse).
    # By author only, the source matched below (why: docs/performance.md, "routing/rules/features.py").
    if len(refs) <= MANY_AUTHORS:
        decided = decided.filter(item__author_ref__any=refs)
        auto = auto.filter(author_ref__any=refs)
    for row in decided.values("item__source", "item__author_ref").annotate(
        violations=Count("pk", filter=Q(is_violation=True)), reviews=Count("pk")
    ):
        counts = history[(row["item__source"], row["item__author_ref"])]
        counts[0] += row["violations"]
        counts[1] += row["reviews"]
    for auto_row in auto.values("source", "author_ref").annotate(n=Count("pk")):
        history[(auto_row["source"], auto_row["author_ref"])][0] += auto_row["n"]
    return {key: (v, r) for key, (v, r) in history.items() if key in pairs}


MEDIA_FIELDS = ("media.hash_match", "media.bank", "media.distance")


def media_fields(match: BestMatch | None) -> dict[str, Any]:
    """What rules read of an item's closest bank match; no match: false, '' and a missing distance."""
    if match is None:
        return {"media.hash_match": False, "media.bank": "", "media.distance": math.nan}
    return {"media.hash_match": True, "media.bank": match.bank, "media.distance": float(match.distance)}


def item_rows(
    items: Sequence[ReviewItem], *, now: datetime | None = None, accounts: bool = True
) -> dict[int, dict[str, Any]]:
    """One row per item, keyed the way rules name things. Scores missing for an item are NaN. ``accounts``: read
    the authors' accounts (False: no rule reads them; the row carries the no-account values)."""
    scores, scored = items_scores([i.pk for i in items])
    history = author_history((i.source, i.author_ref) for i in items)
    known = account_features((i.source, i.author_ref) for i in items) if accounts else {}
    matches = items_media_matches([i.pk for i in items if i.media_urls])
    names = raw_score_keys()
    rows: dict[int, dict[str, Any]] = {}
    for item in items:
        item_scores = scores.get(item.pk, {})
        violations, reviews = history.get((item.source, item.author_ref), (0, 0))
        row: dict[str, Any] = {
            "kind": item.kind,
            "source": item.source,
            "surface": item.surface,
            "language": item.language,
            "text": item.text,
            "report_count": float(item.report_count),
            "media_count": float(len(item.media_urls or [])),
            "scored": item.pk in scored,
            "author.prior_violations": float(violations),
            "author.prior_reviews": float(reviews),
            **known.get((item.source, item.author_ref), ACCOUNT_FEATURE_DEFAULTS),
            **media_fields(matches.get(item.pk)),
        }
        for name, raw in names.items():
            value = item_scores.get(raw)
            row[name] = float(value) if isinstance(value, int | float) else math.nan
        for key, value in (item.metadata or {}).items():
            if isinstance(value, str | bool | int | float) or value is None:
                row[f"metadata.{key}"] = value
        if now is not None:
            row["queue"] = item.queue.slug if item.queue else ""
            row["priority"] = float(item.priority)
            overdue = (now - item.due_at).total_seconds() / 60 if item.due_at else 0.0
            row["overdue_minutes"] = max(0.0, overdue)
            row["age_hours"] = (now - item.received_at).total_seconds() / 3600
        rows[item.pk] = row
    return rows
