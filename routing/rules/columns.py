"""Backtest columns: the stored items of a period as numpy columns, only the fields the rule sets read.

On PostgreSQL :mod:`routing.rules.sql` reads them with raw SQL (one array aggregate per field); elsewhere (SQLite:
the embedded mode) the ORM loads the same columns, here. Both loaders give equal columns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
from django.db.models import F, FloatField, QuerySet
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, TruncDate

from queues.accounts.selectors import account_features
from queues.models import Decision, ItemKind, ItemState, ReviewItem
from routing.rules import sql
from routing.rules.column_types import HISTORY, ItemColumns, Loaded, ScoreRows, Wanted
from routing.rules.features import ITEM_STRINGS, author_history
from routing.rules.language import Categorical, Column, Mixed
from routing.scoring.media.models import MediaMatch
from routing.scoring.media.selectors import items_media_matches
from routing.scoring.models import ClassifierScore
from routing.scoring.selectors import backend_order

__all__ = ["HISTORY", "ItemColumns", "Wanted", "human_outcomes", "item_columns"]


def item_columns(
    *,
    start: datetime,
    end: datetime,
    names: Iterable[str],
    appeals: bool = False,
    chunk: int = 200_000,
    progress: Callable[[int, int], None] | None = None,
) -> ItemColumns:
    """Load items received in [start, end) (not still awaiting triage; appeals or the rest) with the columns
    ``names`` refers to. Scores: every backend's, the preferred one written last; text, metadata and author
    history only when a rule reads them."""
    wanted = Wanted.of(names)
    items = ReviewItem.objects.filter(received_at__gte=start, received_at__lt=end).exclude(state=ItemState.RECEIVED)
    items = items.filter(kind=ItemKind.APPEAL) if appeals else items.exclude(kind=ItemKind.APPEAL)
    keys = list(wanted.scores.values()) if wanted.scores or wanted.scored else None
    if sql.arrays_supported():
        loaded, score_rows = sql.columns_load(items=items, wanted=wanted, keys=keys, progress=progress)
    else:
        loaded = _load_orm(items, wanted, chunk, progress)
        score_rows = _score_rows_orm(loaded.ids, keys, chunk) if keys is not None else []
    columns: dict[str, Column] = {**loaded.strings, "report_count": loaded.report_count}
    if loaded.text is not None:
        columns["text"] = loaded.text
    if loaded.media is not None:
        columns["media_count"] = loaded.media
    for key, column in (loaded.metadata or {}).items():
        columns[f"metadata.{key}"] = column
    if loaded.history is not None:
        columns[HISTORY[0]], columns[HISTORY[1]] = loaded.history
    if keys is not None:
        scores, columns["scored"] = _merge_scores(loaded.ids, len(keys), score_rows)
        columns.update(zip(wanted.scores, scores, strict=True))
    if wanted.media_match:
        columns.update(media_columns(loaded.ids))
    if wanted.account:
        columns.update(account_columns(items, loaded.ids))
    return ItemColumns(loaded.ids, loaded.day, columns)


def account_columns(items: QuerySet[ReviewItem], ids: np.ndarray, *, chunk: int = 5_000) -> dict[str, Column]:
    """author.strikes, author.labels and author.account_age_days over items in id order, as the accounts are now
    (a backtest replays today's account state over past items: strikes have no history of their own)."""
    n = len(ids)
    pairs: dict[int, tuple[str, str]] = {
        pk: (source, ref)
        for pk, source, ref in items.exclude(author_ref="")
        .order_by("pk")
        .values_list("pk", "source", "author_ref")
        .iterator(chunk_size=50_000)
    }
    distinct = sorted(set(pairs.values()))
    features: dict[tuple[str, str], dict[str, Any]] = {}
    for start in range(0, len(distinct), chunk):
        features.update(account_features(distinct[start : start + chunk]))
    strikes, ages, labels = np.zeros(n), np.full(n, np.nan), [""] * n
    for at, pk in enumerate(ids.tolist()):
        found = features.get(pairs.get(pk, ("", "")))
        if found:
            strikes[at], ages[at], labels[at] = (
                found["author.strikes"],
                found["author.account_age_days"],
                found["author.labels"],
            )
    return {
        "author.strikes": strikes,
        "author.account_age_days": ages,
        "author.labels": Categorical.from_values(labels),
    }


def media_columns(ids: np.ndarray) -> dict[str, Column]:
    """media.hash_match, media.bank and media.distance over items in id order; matches are few beside items,
    so one query over the id range (as ``human_outcomes``) and a merge by position."""
    n = len(ids)
    hit = np.zeros(n, dtype=bool)
    distance = np.full(n, np.nan)
    banks = [""] * n
    if n:
        matched = MediaMatch.objects.filter(item_id__gte=int(ids.min()), item_id__lte=int(ids.max()))
        best = items_media_matches(sorted(set(matched.values_list("item_id", flat=True))))
        if best:
            found = np.fromiter(best, dtype=np.int64, count=len(best))
            where = np.searchsorted(ids, found)
            inside = (where < n) & (ids[np.minimum(where, n - 1)] == found)
            for item_id, at in zip(found[inside].tolist(), where[inside].tolist(), strict=True):
                hit[at] = True
                distance[at] = best[item_id].distance
                banks[at] = best[item_id].bank
    return {"media.hash_match": hit, "media.distance": distance, "media.bank": Categorical.from_values(banks)}


def _merge_scores(ids: np.ndarray, width: int, rows: ScoreRows) -> tuple[list[np.ndarray], np.ndarray]:
    """Each item's scores, a later row's value overwriting an earlier one's, a missing value overwriting
    nothing. Scored: some classifier left a row for the item."""
    scores = np.full((width, len(ids)), np.nan)
    scored = np.zeros(len(ids), dtype=bool)
    for item_ids, values in rows:
        where = np.searchsorted(ids, item_ids)
        keep = (where < len(ids)) & (ids[np.minimum(where, len(ids) - 1)] == item_ids)
        scored[where[keep]] = True
        for j in range(width):
            column = values[j][keep]
            present = ~np.isnan(column)
            scores[j, where[keep][present]] = column[present]
    return list(scores), scored


def human_outcomes(ids: np.ndarray) -> dict[int, tuple[bool, str]]:
    """item id -> (is violation, policy slug) of its current final human decision, for items that have one.

    One query over the id range, not a list of a million ids: decisions are few beside items.
    """
    if not len(ids):
        return {}
    rows = (
        Decision.objects.filter(item_id__gte=int(ids.min()), item_id__lte=int(ids.max()), is_final=True)
        .filter(superseded_by__isnull=True)
        .annotate(policy_slug=F("policy__slug"))
        .values_list("item_id", "is_violation", "policy_slug")
    )
    found = {item_id: (violation, policy or "") for item_id, violation, policy in rows}
    if not found:
        return {}
    decided = np.fromiter(found, dtype=np.int64, count=len(found))
    return {int(i): found[int(i)] for i in decided[np.isin(decided, ids)]}


# --- the ORM: any database ---------------------------------------------------------------------------


def _load_orm(items: QuerySet[ReviewItem], wanted: Wanted, chunk: int, progress: Any) -> Loaded:
    total = items.count() if progress else 0
    fields = ["pk", "day", "report_count", *ITEM_STRINGS]
    fields += ["author_ref"] if wanted.history else []
    fields += ["text"] if wanted.text else []
    fields += ["media_urls"] if wanted.media else []
    fields += ["metadata"] if wanted.metadata else []
    dated = items.annotate(day=TruncDate("received_at", tzinfo=UTC)).order_by("pk")
    parts: dict[str, list[Any]] = {name: [] for name in fields}
    last = None
    while True:
        page = dated.filter(pk__gt=last) if last is not None else dated
        rows = list(page.values_list(*fields)[:chunk])
        if not rows:
            break
        for name, values in zip(fields, zip(*rows, strict=True), strict=True):
            parts[name].extend(values)
        last = rows[-1][0]
        if progress:
            progress(len(parts["pk"]), total)
    size = len(parts["pk"])
    loaded = Loaded(
        ids=np.array(parts["pk"], dtype=np.int64),
        day=np.fromiter(map(date.toordinal, parts["day"]), dtype=np.int32, count=size),
        report_count=np.array(parts["report_count"], dtype=float),
        strings={name: Categorical.from_values(parts[name]) for name in ITEM_STRINGS},
    )
    if wanted.text:
        loaded.text = Categorical.from_values(parts["text"])
    if wanted.media:
        loaded.media = np.fromiter((len(m or []) for m in parts["media_urls"]), dtype=float, count=size)
    if wanted.metadata:
        loaded.metadata = {
            key: Mixed.from_values([_scalar((m or {}).get(key)) for m in parts["metadata"]]) for key in wanted.metadata
        }
    if wanted.history:
        pairs = list(zip(parts["source"], parts["author_ref"], strict=True))
        history = author_history(pairs)
        counts = np.array([history.get(p, (0, 0)) for p in pairs], dtype=float).reshape(size, 2)
        loaded.history = counts[:, 0].copy(), counts[:, 1].copy()
    return loaded


def _scalar(value: Any) -> Any:
    return value if isinstance(value, str | bool | int | float) or value is None else None


def _score_rows_orm(ids: np.ndarray, keys: list[str], chunk: int) -> ScoreRows:
    rows: ScoreRows = []
    annotations = {f"s{j}": Cast(KT(f"scores__{key}"), FloatField()) for j, key in enumerate(keys)}
    bounds = ids[::chunk].tolist()
    for i, low in enumerate(bounds):
        high = bounds[i + 1] if i + 1 < len(bounds) else None
        for backend in backend_order():
            query = ClassifierScore.objects.filter(backend=backend, item_id__gte=low)
            if high is not None:
                query = query.filter(item_id__lt=high)
            found = list(query.annotate(**annotations).order_by("created_at").values_list("item_id", *annotations))
            if found:
                array = np.array(found, dtype=float).reshape(len(found), len(keys) + 1)
                rows.append((array[:, 0].astype(np.int64), array[:, 1:].T.copy()))
    return rows
