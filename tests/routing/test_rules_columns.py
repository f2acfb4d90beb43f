"""The backtests' PostgreSQL loader reads the columns with raw SQL; it gives rules the text and metadata the
model fields give, U+0000 and U+E000 included (the fields store them escaped)."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any
from unittest import mock

import numpy as np
import pytest
from django.utils import timezone

import routing.rules.sql as rules_sql
from ops_platform.core.models import User
from queues.models import Decision, Queue, ReviewItem
from routing.models import Backend, ClassifierScore
from routing.rules.columns import item_columns
from routing.rules.language import Categorical, Mixed
from tests.queues.factories import item_queued
from tests.routing.rules_setup import scores_write

TEXTS = ["plain", "nul\x00inside", "escape \ue000 itself", "\ue0000 looks escaped", "both\x00\ue000\x00", ""]


def _values(column: Categorical) -> list[str | None]:
    return [column.values[c] if c >= 0 else None for c in column.codes]


@pytest.mark.postgres
@pytest.mark.django_db
def test_text_and_metadata_reach_rules_as_they_were_sent() -> None:
    queue = Queue.objects.create(slug="q", name="Q")
    items = [item_queued(queue, text=t, metadata={"note": t, "n": k}) for k, t in enumerate(TEXTS)]
    now = timezone.now()

    columns = item_columns(start=now - timedelta(hours=1), end=now, names=["text", "metadata.note", "metadata.n"])

    order = np.argsort(columns.ids)
    assert columns.ids[order].tolist() == [i.pk for i in items]
    text = columns.columns["text"]
    note = columns.columns["metadata.note"]
    number = columns.columns["metadata.n"]
    assert isinstance(text, Categorical)
    assert isinstance(note, Mixed)
    assert isinstance(number, Mixed)
    assert [_values(text)[i] for i in order] == TEXTS
    assert [_values(note.strings)[i] for i in order] == TEXTS
    assert [number.numbers[i] for i in order] == list(range(len(TEXTS)))


def _plain(column: Any) -> list[Any]:
    values = column.materialize() if isinstance(column, Categorical | Mixed) else column
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values.tolist()]


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_postgresql_loader_gives_every_column_the_orm_loader_gives(reviewer: User) -> None:
    """Backtests on PostgreSQL (the ones bench/rules.py times) read with raw SQL; every other database with the ORM."""
    queue = Queue.objects.create(slug="q", name="Q")
    kinds = [("content", "app", "post", "en"), ("user_report", "live", "dm", "de"), ("content", "", "", "")]
    metadata: list[dict[str, Any]] = [{"country": "DE", "followers": 10, "verified": True}, {"followers": 2.5}, {}]
    items = []
    for n in range(9):
        kind, source, surface, language = kinds[n % 3]
        items.append(
            item_queued(
                queue,
                text=f"text {n}",
                kind=kind,
                source=source or "app",
                surface=surface,
                language=language,
                author_ref=f"a{n % 2}",
                report_count=n,
                media_urls=["m"] * (n % 2),
                metadata=metadata[n % 3],
            )
        )
    Decision.objects.create(
        item=items[0], reviewer=reviewer, queue=queue, is_violation=True, is_final=True, decided_at=timezone.now()
    )
    ReviewItem.objects.filter(pk=items[0].pk).update(state="decided")
    for n, item in enumerate(items[:6]):
        scores_write(item, hate=n / 10, violence=0.9)
        if n % 2:
            ClassifierScore.objects.create(item=item, backend=Backend.OPENAI_MODERATION, scores={"hate": 0.5})
    item_queued(queue, text="still received", state="received")
    names = {"kind", "source", "surface", "language", "text", "report_count", "media_count", "scored"}
    names |= {"author.prior_violations", "author.prior_reviews", "score.hate", "score.violence"}
    names |= {"metadata.country", "metadata.followers", "metadata.verified"}
    now = timezone.now()

    fast = item_columns(start=now - timedelta(hours=1), end=now, names=names)
    with mock.patch.object(rules_sql, "arrays_supported", return_value=False):
        orm = item_columns(start=now - timedelta(hours=1), end=now, names=names)

    assert len(fast.ids) == 9
    assert (fast.ids.tolist(), fast.received_day.tolist()) == (orm.ids.tolist(), orm.received_day.tolist())
    assert fast.columns.keys() == orm.columns.keys()
    for name in fast.columns:
        assert _plain(fast.columns[name]) == _plain(orm.columns[name]), name
