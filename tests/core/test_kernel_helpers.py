"""The kernel's shared helpers: the local day, CSV export and the page permission check."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.test import RequestFactory

from ops_platform.core.csv_export import csv_cell, csv_response
from ops_platform.core.localday import day_end, day_start, today_start
from ops_platform.core.models import User
from ops_platform.core.permissions import has_any, permitted


def test_the_local_day_starts_at_midnight_in_the_ops_time_zone(settings: Any):
    settings.TIME_ZONE = "America/New_York"
    late_evening_utc = datetime(2026, 3, 8, 3, 30, tzinfo=UTC)  # 22:30 on the 7th in New York

    start = today_start(late_evening_utc)

    assert start == datetime(2026, 3, 7, 5, 0, tzinfo=UTC)
    # The day of the spring-forward change is 23 hours long: it ends at the next local midnight, not start + 24 h.
    assert day_start(date(2026, 3, 8)) == datetime(2026, 3, 8, 5, tzinfo=UTC)
    assert day_end(date(2026, 3, 8)) == datetime(2026, 3, 9, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1", "'+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("plain", "plain"),
        (-3, "-3"),
        (0.25, "0.25"),
        (True, "true"),
        (None, ""),
    ],
)
def test_a_csv_cell_never_runs_as_a_formula_and_numbers_stay_numbers(value: Any, cell: str):
    assert csv_cell(value) == cell


def test_a_csv_response_streams_every_row_through_the_cell_guard():
    response = csv_response([["id", "external_id"], [1, "=cmd|' /C calc'!A0"]], filename='bad"name/..')

    body = b"".join(response.streaming_content).decode()  # type: ignore[arg-type]
    assert list(csv.reader(io.StringIO(body))) == [["id", "external_id"], ["1", "'=cmd|' /C calc'!A0"]]
    assert response["Content-Disposition"] == 'attachment; filename="badname...csv"'


@pytest.mark.django_db
def test_permitted_lets_in_a_holder_of_any_named_permission_and_refuses_others(reviewer: User, ops_manager: User):
    request = RequestFactory().get("/")
    request.user = reviewer

    assert permitted(request, "core.view_analytics", "core.review_items") == reviewer
    with pytest.raises(PermissionDenied):
        permitted(request, "core.view_analytics")
    assert has_any(ops_manager, "core.view_analytics")
    assert not has_any(object(), "core.view_analytics")
