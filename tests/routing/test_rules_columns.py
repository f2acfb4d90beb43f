"""The backtests' PostgreSQL loader reads the columns with raw SQL; it gives rules the text and metadata the
model fields give, U+0000 and U+E000 included (the fields store them escaped)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from queues.models import Queue
from routing.rules.columns import item_columns
from routing.rules.language import Categorical, Mixed
from tests.queues.factories import item_queued

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
