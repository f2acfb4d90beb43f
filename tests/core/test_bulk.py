"""``ops_platform.core.bulk``: the one-statement inserts of the hot paths store what Django's save would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ops_platform.core.bulk import insert_ignoring_conflicts
from queues.models import ItemState, ReviewItem

pytestmark = pytest.mark.django_db


def test_a_bulk_insert_stores_empty_and_set_datetimes_as_a_save_would() -> None:
    received = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)
    rows = [
        {"source": "s", "external_id": "a", "text": "t", "received_at": received},
        {
            "source": "s",
            "external_id": "b",
            "text": "t",
            "received_at": received,
            "created_at": received - timedelta(hours=1),
        },
    ]

    inserted = insert_ignoring_conflicts(ReviewItem, rows, conflict="source, external_id", returning="external_id")

    assert sorted(r[0] for r in inserted) == ["a", "b"]
    a, b = ReviewItem.objects.filter(source="s").order_by("external_id")
    assert a.received_at == b.received_at == received  # microseconds kept
    assert (a.created_at, a.due_at, a.decided_at, a.reserved_until) == (None, None, None, None)
    assert b.created_at == received - timedelta(hours=1)
    assert a.state == b.state == ItemState.RECEIVED  # defaults as the constructor gives them


def test_a_naive_datetime_is_made_aware_as_a_save_would() -> None:
    naive = datetime(2026, 12, 1, 9, 30)

    with pytest.warns(RuntimeWarning, match="naive datetime"):
        insert_ignoring_conflicts(ReviewItem, [{"source": "s", "external_id": "n", "text": "t", "received_at": naive}])

    stored = ReviewItem.objects.get(external_id="n").received_at
    assert stored.tzinfo is not None
    assert stored.replace(tzinfo=None) == naive
