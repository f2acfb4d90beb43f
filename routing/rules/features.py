"""What a rule sees of an item: one row (a dict keyed by rule names) for live routing, or numpy columns
over many stored items for a backtest. Both are built from the same stored fields and scores.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Count, F, FloatField, Q
from django.db.models.fields.json import KT
from django.db.models.functions import Cast

from ops_platform.core.models import ClassifierCategory, Policy
from queues.models import Decision, ItemKind, ItemState, ReviewItem
from routing.models import Backend, ClassifierScore
from routing.rules.language import Categorical, Column, score_key

ITEM_STRINGS = ("kind", "source", "surface", "language")


def raw_score_keys() -> dict[str, str]:
    """Rule name (``score.sexual_minors``) -> the key stored in ClassifierScore.scores (``sexual/minors``)."""
    raw = [*ClassifierCategory.values, *(f"policy:{slug}" for slug in Policy.objects.values_list("slug", flat=True))]
    return {f"score.{score_key(key)}": key for key in raw}


def _backend_order() -> list[str]:
    """Backends from least to most preferred: later ones overwrite earlier ones when merged."""
    order = {name: i for i, name in enumerate(settings.SCORING_DEFAULT_CHAIN)}
    backends = [b for b in Backend.values if b != Backend.UNSCORED]
    return sorted(backends, key=lambda b: -order.get(b, len(order)))


def items_scores(item_ids: Sequence[int]) -> tuple[dict[int, dict[str, float]], set[int]]:
    """Each item's scores with every backend merged (the default chain's order winning), and the ids
    of the items that some classifier actually scored."""
    rank = {backend: i for i, backend in enumerate(_backend_order())}
    rows = list(
        ClassifierScore.objects.filter(item_id__in=item_ids)
        .exclude(backend=Backend.UNSCORED)
        .values_list("item_id", "backend", "scores", "created_at")
    )
    rows.sort(key=lambda r: (rank.get(r[1], -1), r[3]))
    merged: dict[int, dict[str, float]] = defaultdict(dict)
    for item_id, _, scores, _ in rows:
        merged[item_id].update(scores)
    return dict(merged), set(merged)


def author_history(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int]]:
    """(source, author_ref) -> (prior violations, prior reviews), counted over final decisions and auto-actions."""
    pairs = {p for p in pairs if p[1]}
    if not pairs:
        return {}
    sources = {s for s, _ in pairs}
    refs = {a for _, a in pairs}
    history: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    decided = (
        Decision.objects.filter(is_final=True, superseded_by__isnull=True)
        .filter(item__source__in=sources, item__author_ref__in=refs)
        .values("item__source", "item__author_ref")
        .annotate(violations=Count("pk", filter=Q(is_violation=True)), reviews=Count("pk"))
    )
    for row in decided:
        counts = history[(row["item__source"], row["item__author_ref"])]
        counts[0] += row["violations"]
        counts[1] += row["reviews"]
    auto = (
        ReviewItem.objects.filter(state=ItemState.AUTO_ACTIONED, source__in=sources, author_ref__in=refs)
        .values("source", "author_ref")
        .annotate(n=Count("pk"))
    )
    for row in auto:
        history[(row["source"], row["author_ref"])][0] += row["n"]
    return {key: (v, r) for key, (v, r) in history.items() if key in pairs}


def item_rows(items: Sequence[ReviewItem], *, now: datetime | None = None) -> dict[int, dict[str, Any]]:
    """One row per item, keyed the way rules name things. Scores missing for an item are NaN."""
    scores, scored = items_scores([i.pk for i in items])
    history = author_history((i.source, i.author_ref) for i in items)
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


# --- columns for backtests -------------------------------------------------------------------------


class ItemColumns:
    """Stored items of a period as columns, loaded in id order, only the fields a backtest needs."""

    def __init__(self, ids: np.ndarray, received_day: np.ndarray, columns: dict[str, Column]):
        self.ids = ids
        self.received_day = received_day
        self.columns = columns

    def __len__(self) -> int:
        return len(self.ids)


def item_columns(
    *,
    start: datetime,
    end: datetime,
    names: Iterable[str],
    appeals: bool = False,
    chunk: int = 200_000,
    progress: Callable[[int, int], None] | None = None,
) -> ItemColumns:
    """Load items received in [start, end) with the columns ``names`` refers to.

    Scores come from ClassifierScore (one query per backend and chunk, the preferred backend written
    last), item fields from the item row; text and metadata are read only when a rule uses them.
    """
    names = set(names)
    items = ReviewItem.objects.filter(received_at__gte=start, received_at__lt=end).exclude(state=ItemState.RECEIVED)
    items = items.filter(kind=ItemKind.APPEAL) if appeals else items.exclude(kind=ItemKind.APPEAL)
    total = items.count()
    bounds = list(items.order_by("pk").values_list("pk", flat=True)[::chunk]) if total else []
    raw = raw_score_keys()
    score_names = sorted(n for n in names if n in raw)
    want_text = "text" in names
    want_media = "media_count" in names
    metadata_keys = sorted(n.removeprefix("metadata.") for n in names if n.startswith("metadata."))
    want_history = bool(names & {"author.prior_violations", "author.prior_reviews"})

    parts: dict[str, list[Any]] = defaultdict(list)
    loaded = 0
    for i, low in enumerate(bounds):
        high = bounds[i + 1] if i + 1 < len(bounds) else None
        chunk_items = items.filter(pk__gte=low)
        if high is not None:
            chunk_items = chunk_items.filter(pk__lt=high)
        fields = ["pk", "received_at", "report_count", *ITEM_STRINGS]
        fields += ["author_ref"] if want_history else []
        fields += ["text"] if want_text else []
        fields += ["media_urls"] if want_media else []
        fields += ["metadata"] if metadata_keys else []
        rows = list(chunk_items.order_by("pk").values_list(*fields))
        if not rows:
            continue
        cols = list(zip(*rows, strict=True))
        by_field = dict(zip(fields, cols, strict=True))
        ids = np.fromiter(by_field["pk"], dtype=np.int64, count=len(rows))
        parts["pk"].append(ids)
        parts["day"].append(np.array([d.date().toordinal() for d in by_field["received_at"]], dtype=np.int32))
        parts["report_count"].append(np.fromiter(by_field["report_count"], dtype=float, count=len(rows)))
        for name in ITEM_STRINGS:
            parts[name].extend(by_field[name])
        if want_text:
            parts["text"].extend(by_field["text"])
        if want_media:
            parts["media_count"].append(np.array([len(m or []) for m in by_field["media_urls"]], dtype=float))
        for key in metadata_keys:
            parts[f"metadata.{key}"].extend(_scalar((m or {}).get(key)) for m in by_field["metadata"])
        if want_history:
            parts["_authors"].extend(zip(by_field["source"], by_field["author_ref"], strict=True))
        if score_names:
            scores = np.full((len(score_names), len(rows)), np.nan)
            scored = np.zeros(len(rows), dtype=bool)
            annotations = {
                f"s{j}": Cast(KT(f"scores__{raw[name]}"), FloatField()) for j, name in enumerate(score_names)
            }
            for backend in _backend_order():
                query = ClassifierScore.objects.filter(backend=backend, item_id__gte=low)
                if high is not None:
                    query = query.filter(item_id__lt=high)
                found = list(
                    query.annotate(**annotations)
                    .order_by("created_at")
                    .values_list("item_id", *annotations, named=False)
                )
                if not found:
                    continue
                arr = np.array(found, dtype=float)
                where = np.searchsorted(ids, arr[:, 0].astype(np.int64))
                keep = (where < len(ids)) & (ids[np.minimum(where, len(ids) - 1)] == arr[:, 0])
                scored[where[keep]] = True
                for j in range(len(score_names)):
                    values = arr[keep, j + 1]
                    present = ~np.isnan(values)
                    scores[j, where[keep][present]] = values[present]
            for j, name in enumerate(score_names):
                parts[name].append(scores[j])
            parts["scored"].append(scored)
        loaded += len(rows)
        if progress:
            progress(loaded, total)

    size = loaded
    columns: dict[str, Column] = {}
    for name in ITEM_STRINGS:
        columns[name] = Categorical.from_values(parts[name]) if size else Categorical(np.zeros(0, np.int32), [])
    columns["report_count"] = _join(parts["report_count"], float)
    if want_text:
        columns["text"] = Categorical.from_values(parts["text"]) if size else Categorical(np.zeros(0, np.int32), [])
    if want_media:
        columns["media_count"] = _join(parts["media_count"], float)
    for key in metadata_keys:
        columns[f"metadata.{key}"] = np.array(parts[f"metadata.{key}"], dtype=object)
    for name in score_names:
        columns[name] = _join(parts[name], float)
    if score_names:
        columns["scored"] = _join(parts["scored"], bool)
    elif "scored" in names:
        scored_ids = set(
            ClassifierScore.objects.filter(item__in=items)
            .exclude(backend=Backend.UNSCORED)
            .values_list("item_id", flat=True)
        )
        ids_all = _join(parts["pk"], np.int64)
        columns["scored"] = np.fromiter((int(i) in scored_ids for i in ids_all), dtype=bool, count=size)
    if want_history:
        history = author_history(parts["_authors"])
        pairs = parts["_authors"]
        columns["author.prior_violations"] = np.array([history.get(p, (0, 0))[0] for p in pairs], dtype=float)
        columns["author.prior_reviews"] = np.array([history.get(p, (0, 0))[1] for p in pairs], dtype=float)
    return ItemColumns(_join(parts["pk"], np.int64), _join(parts["day"], np.int32), columns)


def _join(chunks: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=dtype)


def _scalar(value: Any) -> Any:
    return value if isinstance(value, str | bool | int | float) or value is None else None


def human_outcomes(ids: np.ndarray) -> dict[int, tuple[bool, str]]:
    """item id -> (is violation, policy slug) of its current final human decision, for items that have one."""
    found: dict[int, tuple[bool, str]] = {}
    id_list = [int(i) for i in ids]
    for start in range(0, len(id_list), 50_000):
        rows = (
            Decision.objects.filter(item_id__in=id_list[start : start + 50_000], is_final=True)
            .filter(superseded_by__isnull=True)
            .annotate(policy_slug=F("policy__slug"))
            .values_list("item_id", "is_violation", "policy_slug")
        )
        for item_id, violation, policy in rows:
            found[item_id] = (violation, policy or "")
    return found
