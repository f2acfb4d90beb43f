"""Counting a list truthfully without reading it all: exact up to a cap, then "about" (the planner's estimate) or
"more than" the cap; and the drill-down page says which."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from ops_platform.core.counts import Counted, count_capped, planner_rows, two_figures
from queues.models import ItemState, Queue, ReviewItem
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _items(queue: Queue, n: int) -> None:
    now = timezone.now()
    for i in range(n):
        ReviewItem.objects.create(
            source="web",
            external_id=f"c{i}",
            received_at=now - timedelta(minutes=i),
            state=ItemState.QUEUED,
            queue=queue,
            text=f"item {i}",
        )


def test_a_list_within_the_cap_is_counted_exactly(intake_queue: Queue) -> None:
    _items(intake_queue, 5)
    counted = count_capped(ReviewItem.objects.all(), exact_up_to=5)
    assert counted == Counted(5, exact=True)
    assert counted.text == "5"


def test_a_list_past_the_cap_says_about_or_more_than_never_a_bare_number(
    intake_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    _items(intake_queue, 7)
    past = count_capped(ReviewItem.objects.all(), exact_up_to=3)
    assert not past.exact
    assert past.qualifier in ("about", "more than")
    assert past.text.startswith(past.qualifier)
    assert past.n > 3 if past.qualifier == "about" else past.n == 3
    # The planner's estimate, when it says more than was counted, is given to two figures.
    monkeypatch.setattr("ops_platform.core.counts.planner_rows", lambda qs: 1_234_567)
    assert count_capped(ReviewItem.objects.all(), exact_up_to=3) == Counted(1_200_000, exact=False, qualifier="about")
    assert count_capped(ReviewItem.objects.all(), exact_up_to=3).text == "about 1,200,000"
    # An estimate at or under the cap contradicts the count: the page says only what was counted.
    monkeypatch.setattr("ops_platform.core.counts.planner_rows", lambda qs: 2)
    assert count_capped(ReviewItem.objects.all(), exact_up_to=3).text == "more than 3"
    monkeypatch.setattr("ops_platform.core.counts.planner_rows", lambda qs: None)
    assert count_capped(ReviewItem.objects.all(), exact_up_to=3).text == "more than 3"


def test_two_figures_rounds_an_estimate() -> None:
    rounded = [two_figures(n) for n in (7, 99, 123, 1_250, 987_654, 10_000_000)]
    assert rounded == [7, 99, 120, 1_200, 990_000, 10_000_000]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the estimate is PostgreSQL's EXPLAIN")
def test_the_planner_estimate_is_postgresqls(intake_queue: Queue) -> None:
    _items(intake_queue, 4)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE queues_reviewitem")
    assert planner_rows(ReviewItem.objects.all()) == 4


def test_the_drill_down_counts_exactly_or_says_about(
    ops_manager, intake_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    _items(intake_queue, 6)
    client = Client()
    assert client.login(username=ops_manager.username, password=PASSWORD)
    exact = client.get("/analytics/items?period=7&golden=include")
    assert exact.status_code == 200
    assert exact.context["count"] == 6
    assert "6 items" in exact.content.decode()
    monkeypatch.setattr("ops_platform.core.counts.EXACT_UP_TO", 4)
    monkeypatch.setattr("ops_platform.core.counts.planner_rows", lambda qs: 3_456_789)
    about = client.get("/analytics/items?period=7&golden=include")
    assert about.status_code == 200
    assert not about.context["counted"].exact
    assert "about 3,500,000 items" in about.content.decode()
    assert len(about.context["rows"]) == 6  # the page still lists the rows; only the count is estimated
