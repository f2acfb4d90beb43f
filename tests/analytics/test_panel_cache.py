"""The operations panels are cached until the rollups change (issue 19: the operations page rebuilt every table per
request): a refresh or a rebuild moves the cursor's generation, so the next read is fresh, through the panel
registry and through the page. The live backlog is counted by the periodic refresh (or the first page when none
did), shared for up to 75 s, and lists its items at its own moment."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from analytics import panels
from analytics.filters import MetricFilter
from analytics.rollups import rollups_rebuild, rollups_refresh
from analytics.selectors.freshness import operations_stamp
from analytics.selectors.operations import backlog, backlog_counts, backlog_counts_shared, items_behind
from analytics.tasks import rollups_refresh_task
from ops_platform.core.models import User, Vendor
from tests.analytics.opsworld import World, items_add, world_create
from tests.conftest import PASSWORD

START = datetime(2025, 3, 3, tzinfo=timezone.get_fixed_timezone(0))
PERIOD = MetricFilter(start=START.date() - timedelta(days=1), end=START.date() + timedelta(days=12))


@pytest.fixture
def world(vendor_a: Vendor, vendor_b: Vendor, settings: Any) -> World:
    settings.TIME_ZONE = "America/New_York"
    w = world_create(vendors=[vendor_a, vendor_b], start=START)
    items_add(w, 120, days=3)
    return w


def decided_total(f: MetricFilter) -> int:
    panel = panels.panel_get("sla_by_queue")
    assert panel is not None
    return sum(row["decided"] for row in panel.table(f).rows)


def test_a_refresh_or_a_rebuild_moves_the_generation_and_the_cached_panel_follows(world: World) -> None:
    rollups_refresh()
    first, _ = operations_stamp()
    before = decided_total(PERIOD)
    assert before == items_behind("decided", PERIOD).count()
    items_add(world, 60, days=3, offset=timedelta(days=4))
    # Not refreshed yet: the panel is the last refresh's answer (as it was before caching).
    assert decided_total(PERIOD) == before
    rollups_refresh()
    assert operations_stamp()[0] == first + 1
    after = decided_total(PERIOD)
    assert after > before
    assert after == items_behind("decided", PERIOD).count()  # the panel equals its drill-down again
    rollups_rebuild(PERIOD.start, PERIOD.end)
    assert operations_stamp()[0] == first + 2


def decided_by_queue(f: MetricFilter) -> list[int]:
    panel = panels.panel_get("sla_by_queue")
    assert panel is not None
    return [row["decided"] for row in panel.table(f).rows]


def test_the_operations_page_shows_a_refresh_at_once(world: World, ops_manager: User) -> None:
    client = Client()
    assert client.login(username=ops_manager.username, password=PASSWORD)
    query = {"start": PERIOD.start.isoformat(), "end": PERIOD.end.isoformat()}
    rollups_refresh()
    before = decided_by_queue(PERIOD)
    page = client.get("/analytics/operations/sla_by_queue/", query)
    assert page.status_code == 200
    assert "as of" in page.content.decode()
    items_add(world, 60, days=3, offset=timedelta(days=4))
    rollups_refresh()
    after = decided_by_queue(PERIOD)
    assert sum(after) > sum(before)
    body = client.get("/analytics/operations/sla_by_queue/", query).content.decode()
    for n in after:  # the page's table is the refreshed one, not the copy cached before
        assert f">{n:,}<" in body


def test_the_shared_backlog_count_lists_its_items_at_its_own_moment(world: World) -> None:
    table = backlog(PERIOD)
    assert table.drill_at is not None
    again = backlog(PERIOD)
    assert again.drill_at == table.drill_at  # shared: one pass over the backlog for the page and the home
    for row in table.rows:
        cell = dict(zip(table.columns, row, strict=True))
        listed = items_behind(
            "backlog", PERIOD, queue_id=cell["queue_id"], age_bucket=cell["age_bucket"], at=table.drill_at
        )
        assert listed.count() == cell["items"]


def test_the_refresh_counts_the_backlog_ahead_and_a_queue_filter_takes_its_rows(world: World) -> None:
    rollups_refresh_task()
    at, rows = backlog_counts_shared()
    assert sorted(rows) == sorted(backlog_counts(now=at))  # the refresh's count, taken after it moved the generation
    assert backlog(PERIOD).drill_at == at  # the page reads it, it does not count again
    queue = rows[0][0]
    mine_at, mine = backlog_counts_shared(queue_id=queue)
    assert mine_at == at
    assert sorted(mine) == sorted(backlog_counts(now=at, queue_id=queue))
    assert mine
    assert all(r[0] == queue for r in mine)
