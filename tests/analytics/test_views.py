"""Dashboard pages, CSV, the metrics API, the drill-down list and the capacity panels on a hand-worked case."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, time, timedelta
from html import unescape as html_unescape

import pytest
from django.test import Client
from django.utils import timezone

from analytics import capacity, charts, panels
from analytics.charts import UnsafeSvg, check_svg
from analytics.filters import PRESET_DAYS, MetricFilter
from analytics.panels import Panel
from analytics.rollups import backlog_snapshot_take, rollups_refresh
from analytics.selectors import home as home_selectors
from analytics.tables import Column, Kind, Table, items_url
from analytics.tasks import capacity_forecasts_warm_task
from ops_platform.core.csv_export import csv_cell
from ops_platform.core.models import ApiScope, User
from ops_platform.core.services import api_client_create
from queues.models import Decision, ItemEvent, ItemState, Queue, ReviewItem
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

EVIL = "<script>alert(1)</script>"


def signed_in(user: User) -> Client:
    client = Client()
    assert client.login(username=user.get_username(), password=PASSWORD)
    return client


def key_with(scopes: list[str]) -> str:
    source = "m-" + "-".join(s.replace(":", "") for s in scopes)
    _, key = api_client_create(actor="test", name="Metrics reader", source=source, scopes=scopes)
    return key


@pytest.fixture
def test_panel(monkeypatch: pytest.MonkeyPatch) -> Panel:
    """A panel with hostile and formula-like cells, registered for the duration of one test."""

    def table(f: MetricFilter) -> Table:
        return Table(
            title="Test panel",
            columns=[
                Column("queue", "Queue"),
                Column("n", "Items", Kind.INT, drill=True),
                Column("rate", "Rate", Kind.PERCENT),
            ],
            rows=[
                {"queue": EVIL, "n": 3, "rate": 0.25},
                {"queue": '=HYPERLINK("http://x")', "n": -2, "rate": None},
                {"queue": "+1", "n": 0, "rate": 1.0},
                {"queue": "@SUM(A1)", "n": 1, "rate": 0.5},
                {"queue": "-3", "n": 5, "rate": 0.0},
            ],
            drill=lambda row: items_url(f, surface="feed"),
        )

    panel = Panel(
        name="test_panel",
        title="Test panel",
        area="operations",
        table=table,
        chart=lambda t: charts.bar(t, x="queue", y="n"),
    )
    monkeypatch.setitem(panels._PANELS, panel.name, panel)
    return panel


# --- permissions --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/analytics/", "/analytics/capacity/", "/analytics/capacity/capacity_plan/", "/analytics/items"]
)
def test_ops_manager_sees_dashboards_reviewer_does_not_anonymous_signs_in(path, ops_manager, reviewer):
    assert signed_in(ops_manager).get(path).status_code == 200
    assert signed_in(reviewer).get(path).status_code == 403
    anonymous = Client().get(path)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/")


def test_nav_links_to_analytics_only_for_those_who_may_see_it(ops_manager, reviewer):
    assert 'href="/analytics/"' in signed_in(ops_manager).get("/analytics/").content.decode()
    assert 'href="/analytics/"' not in signed_in(reviewer).get("/review/").content.decode()


def test_unknown_area_and_panel_are_404(ops_manager):
    client = signed_in(ops_manager)
    assert client.get("/analytics/nowhere/").status_code == 404
    assert client.get("/analytics/capacity/nothing/").status_code == 404
    assert client.get("/analytics/operations/capacity_plan/").status_code == 404  # panel of another area


def test_api_key_needs_the_metrics_scope(db):
    path = "/api/v1/metrics/capacity_plan"
    ok = Client().get(path, HTTP_AUTHORIZATION=f"Bearer {key_with([ApiScope.METRICS_READ])}")
    assert ok.status_code == 200
    denied = Client().get(path, HTTP_AUTHORIZATION=f"Bearer {key_with([ApiScope.ITEMS_READ])}")
    assert denied.status_code == 403
    assert Client().get(path).status_code == 401


def test_api_by_session_follows_the_dashboard_permission(ops_manager, reviewer):
    assert signed_in(ops_manager).get("/api/v1/metrics/capacity_plan").status_code == 200
    assert signed_in(reviewer).get("/api/v1/metrics/capacity_plan").status_code == 403


def test_an_end_date_in_year_one_is_refused_by_name_not_a_crash(ops_manager):
    """The default start is 30 days before the end: before year 1 there is no date (the OpenAPI fuzzer's case)."""
    response = signed_in(ops_manager).get("/api/v1/metrics/capacity_forecast", {"end": "0001-01-01"})

    assert response.status_code == 400
    assert {"field": "end", "problem": "The date is out of range."} in response.json()["errors"]


# --- tables: HTML, CSV, JSON --------------------------------------------------------------------------


def test_area_page_renders_every_panel_of_the_area_escaped_with_its_chart(ops_manager, test_panel):
    html = signed_in(ops_manager).get("/analytics/operations/").content.decode()
    assert 'data-panel="test_panel"' in html
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<svg" in html
    assert "role-mark" in html
    assert "/analytics/operations/test_panel/?start=" in html
    assert "format=csv" in html


def test_csv_export_guards_formulas_and_keeps_numbers(ops_manager, test_panel):
    response = signed_in(ops_manager).get("/analytics/operations/test_panel/?period=7&format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["Queue", "Items", "Rate"]
    assert rows[1] == [EVIL, "3", "0.25"]
    assert rows[2] == ['\'=HYPERLINK("http://x")', "-2", ""]  # a negative number is a number, not a formula
    assert rows[3][0] == "'+1"
    assert rows[4][0] == "'@SUM(A1)"
    assert rows[5][0] == "'-3"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("=1+1", "'=1+1"), ("\tx", "'\tx"), ("plain", "plain"), (-1.5, "-1.5"), (None, ""), (True, "true")],
)
def test_csv_cell(value, expected):
    assert csv_cell(value) == expected


def test_json_has_columns_rows_filter_and_drill_links(ops_manager, test_panel, intake_queue):
    body = (
        signed_in(ops_manager)
        .get(f"/api/v1/metrics/test_panel?start=2024-03-01&end=2024-03-07&queue={intake_queue.pk}")
        .json()
    )
    assert body["metric"] == "test_panel"
    assert body["area"] == "operations"
    assert body["filter"] == {"start": "2024-03-01", "end": "2024-03-07", "queue": str(intake_queue.pk)}
    assert body["columns"][1] == {"key": "n", "label": "Items", "kind": "int"}
    assert body["rows"][0] == {"queue": EVIL, "n": 3, "rate": 0.25}
    assert body["rows"][1]["rate"] is None
    assert body["drill"][0].startswith("/analytics/items?start=2024-03-01&end=2024-03-07")


def test_metrics_index_lists_every_registered_panel(ops_manager, test_panel):
    names = {m["name"] for m in signed_in(ops_manager).get("/api/v1/metrics/").json()["metrics"]}
    assert names == {p.name for p in panels.panels_all()}
    assert {"capacity_plan", "capacity_forecast", "test_panel"} <= names


def test_unknown_metric_is_404_json(ops_manager):
    response = signed_in(ops_manager).get("/api/v1/metrics/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


# --- filters ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "start=2024-13-45",
        "start=2024-03-10&end=2024-03-01",
        "start=2023-01-01&end=2024-06-01",
        "period=5",
        "queue=999999",
        "queue=abc",
    ],
)
def test_bad_filters_answer_400_with_a_message_not_500(ops_manager, query):
    client = signed_in(ops_manager)
    page = client.get(f"/analytics/capacity/?{query}")
    assert page.status_code == 400
    assert "The filter is invalid" in page.content.decode()
    assert client.get(f"/analytics/capacity/capacity_plan/?{query}&format=csv").status_code == 400
    api = client.get(f"/api/v1/metrics/capacity_plan?{query}")
    assert api.status_code == 400
    assert api.json()["errors"][0]["field"] in {"start", "end", "period", "queue"}


def test_bad_drill_slice_is_400(ops_manager):
    response = signed_in(ops_manager).get("/analytics/items?state=haunted")
    assert response.status_code == 400
    assert "Unknown state" in response.content.decode()


# --- drill-down ---------------------------------------------------------------------------------------


def _item(queue: Queue, n: int, **fields) -> ReviewItem:
    now = timezone.now()
    defaults = {"received_at": now - timedelta(hours=2), "state": ItemState.QUEUED, "queue": queue, "text": f"item {n}"}
    return ReviewItem.objects.create(source="web", external_id=f"d{n}", **{**defaults, **fields})


def test_drill_down_lists_the_items_behind_the_number_escaped(ops_manager, intake_queue):
    other = Queue.objects.create(slug="other", name="Other")
    now = timezone.now()
    hostile = _item(intake_queue, 1, text=EVIL + ' <a href="javascript:alert(2)">x</a> https://evil.example/')
    missed = _item(intake_queue, 2, state=ItemState.DECIDED, decided_at=now, due_at=now - timedelta(hours=1))
    _item(other, 3)  # another queue
    _item(intake_queue, 4, received_at=now - timedelta(days=40))  # before the period
    _item(intake_queue, 5, is_golden=True)  # QA's probe, not traffic

    client = signed_in(ops_manager)
    html = client.get(f"/analytics/items?period=7&queue={intake_queue.pk}").content.decode()
    assert f'data-item="{hostile.pk}"' in html
    assert f'data-item="{missed.pk}"' in html
    assert html.count("data-item=") == 2
    assert EVIL not in html
    assert "&lt;script&gt;" in html
    assert 'href="javascript' not in html
    assert 'href="https://evil' not in html

    html = client.get(f"/analytics/items?period=7&queue={intake_queue.pk}&sla=missed").content.decode()
    assert html.count("data-item=") == 1
    assert f'data-item="{missed.pk}"' in html
    html = client.get(f"/analytics/items?period=7&queue={intake_queue.pk}&state=open&golden=include").content.decode()
    assert html.count("data-item=") == 2  # the hostile item and the golden one


def test_drill_down_pages_by_keyset_cover_every_item_once(ops_manager, intake_queue):
    now = timezone.now()
    # Ties on received_at across the page boundary: the id breaks them, so no row is shown twice or skipped.
    made = [_item(intake_queue, n, received_at=now - timedelta(minutes=n // 4)) for n in range(55)]
    client = signed_in(ops_manager)
    first = client.get("/analytics/items?period=7").content.decode()
    assert first.count("data-item=") == 50
    assert "55 items" in first
    older = re.search(r'href="\?([^"]*after=[^"]*)" rel="next"', first)
    assert older is not None
    second = client.get("/analytics/items?" + html_unescape(older.group(1))).content.decode()
    assert second.count("data-item=") == 5
    assert 'rel="next"' not in second
    shown = {int(pk) for pk in re.findall(r'data-item="(\d+)"', first + second)}
    assert shown == {item.pk for item in made}


def test_drill_down_refuses_a_cursor_that_is_not_a_position(ops_manager, intake_queue):
    response = signed_in(ops_manager).get("/analytics/items?period=7&after=%5B%22yesterday%22%2C1%5D")
    assert response.status_code == 400
    assert 'data-field="after"' in response.content.decode()


# --- charts -------------------------------------------------------------------------------------------


def test_chart_labels_from_user_names_are_escaped_in_the_svg():
    table = Table(
        "t",
        [Column("queue", "Queue"), Column("n", "N", Kind.INT)],
        [{"queue": EVIL, "n": 1}, {"queue": '"><img src=x onerror=alert(1)>', "n": 2}],
    )
    svg = charts.bar(table, x="queue", y="n", title=EVIL).svg()
    assert "<script" not in svg
    assert "<img" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    check_svg(svg)


@pytest.mark.parametrize(
    "svg",
    [
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><g onload="alert(1)"></g></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink">'
        '<a x:href="javascript:1"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><foreignObject/></svg>',
    ],
)
def test_svg_check_refuses_active_content(svg):
    with pytest.raises(UnsafeSvg):
        check_svg(svg)


def test_every_chart_kind_renders():
    points = Table(
        "curve",
        [
            Column("recall", "Recall", Kind.FLOAT),
            Column("precision", "Precision", Kind.FLOAT),
            Column("model", "Model"),
        ],
        [{"recall": r / 10, "precision": 1 - r / 20, "model": m} for m in ("a", "b") for r in range(11)],
    )
    calib = Table(
        "calibration",
        [Column("predicted", "Predicted", Kind.FLOAT), Column("observed", "Observed", Kind.FLOAT)],
        [{"predicted": p / 10, "observed": p / 12} for p in range(11)],
    )
    series = Table(
        "series",
        [Column("day", "Day", Kind.DATE), Column("n", "N", Kind.INT), Column("src", "Source")],
        [{"day": f"2024-03-0{d}", "n": d * k, "src": s} for d in range(1, 8) for k, s in ((1, "api"), (2, "report"))],
    )
    built = [
        charts.pr_curve(points, color="model"),
        charts.calibration(calib),
        charts.line(series, x="day", y="n", color="src"),
        charts.stacked_bar(series, x="day", y="n", color="src"),
        charts.bar(series, x="day", y="n"),
    ]
    for chart in built:
        svg = chart.svg()
        assert svg.startswith("<svg")
        assert "role-mark" in svg


# --- capacity on a hand-worked case -------------------------------------------------------------------


def _entering(queue: Queue, day, count: int, *, handle: timedelta | None, reviewer: User) -> None:
    at = timezone.make_aware(datetime.combine(day, time(12)))
    items = ReviewItem.objects.bulk_create(
        ReviewItem(
            source="cap",
            external_id=f"{queue.slug}-{day}-{n}",
            received_at=at,
            queued_at=at,
            decided_at=at + timedelta(minutes=10),
            state=ItemState.DECIDED,
            queue=queue,
            due_at=at + queue.sla,
        )
        for n in range(count)
    )
    ItemEvent.objects.bulk_create(
        ItemEvent(item=i, at=at, actor_label="triage", event="queued", to_state="queued", queue=queue) for i in items
    )
    if handle is not None:
        Decision.objects.bulk_create(
            Decision(item=i, reviewer=reviewer, queue=queue, is_violation=False, decided_at=at, handle_time=handle)
            for i in items[:4]
        )


def test_capacity_plan_matches_the_capacity_functions_on_a_hand_worked_case(
    ops_manager, reviewer, vendor_reviewer, settings
):
    settings.ANALYTICS_SHRINKAGE, settings.ANALYTICS_OCCUPANCY, settings.ANALYTICS_SHIFT_HOURS = 0.3, 0.85, 8
    settings.ANALYTICS_SERVICE_LEVEL, settings.ANALYTICS_HOURS_OPEN = 0.9, 24
    chat = Queue.objects.create(slug="chat", name="Live chat", sla=timedelta(minutes=30))
    appeals = Queue.objects.create(slug="appeals", name="Appeals", sla=timedelta(hours=24))
    today = timezone.localdate()
    for back in range(1, 8):  # seven whole days before today: one week, so "last week repeated"
        day = today - timedelta(days=back)
        _entering(chat, day, 48, handle=timedelta(seconds=300), reviewer=reviewer)
        _entering(appeals, day, 10, handle=timedelta(seconds=600), reviewer=reviewer)
    for n in range(30):  # today's backlog in the appeals queue
        _item(appeals, 1000 + n, text="waiting")
    rollups_refresh()  # what the periodic task does: the plan reads volumes and handle times from the rollups

    response = signed_in(ops_manager).get(f"/api/v1/metrics/capacity_plan?start={today - timedelta(days=7)}")
    body = response.json()
    assert response.status_code == 200, body
    rows = {r["queue"]: r for r in body["rows"]}

    # Live chat, Erlang C by hand: 48 a day over 24 h is 1 item per 30-minute interval; A = 1 * 300 / 1800 = 1/6
    # Erlang. One reviewer: C = A = 1/6, SL = 1 - (1/6) * exp(-(1 - 1/6) * 1800 / 300) = 0.9989 >= 0.9, occupancy
    # 1/6 <= 0.85. Three 8-hour shifts cover the day: 1 * 3 / (1 - 0.3) = 4.29 -> 5 rostered reviewers.
    chat_row = rows["Live chat"]
    assert chat_row["model"] == "Erlang C"
    assert chat_row["method"] == "seasonal_naive"
    assert chat_row["entered"] == 7 * 48
    assert chat_row["handle_seconds"] == 300
    assert chat_row["forecast_mean"] == pytest.approx(48)
    expected = capacity.reviewers_required_realtime(
        volume_per_day=48,
        hours_open_per_day=24,
        handle_seconds=300,
        sla_seconds=1800,
        target_service_level=0.9,
        shrinkage=0.3,
        shift_hours=8,
        max_occupancy=0.85,
    )
    assert expected.reviewers == 5
    assert chat_row["peak_required"] == 5
    # alice (in-house) may work both queues; the vendor reviewer may not (empty allow-lists mean in-house only).
    assert chat_row["current_staff"] == 1
    assert chat_row["gap"] == 4

    # Appeals, workload model: 10 a day at 600 s is 1.67 h; today also carries the backlog of 30 (SLA 24 h, so
    # all of it today): 40 * 600 / 3600 = 6.67 h / (8 * 0.85 * 0.7) = 1.40 -> 2 reviewers; later days 0.35 -> 1.
    appeals_row = rows["Appeals"]
    assert appeals_row["model"] == "workload"
    assert appeals_row["backlog"] == 30
    first_day = capacity.reviewers_required_backlog(
        volume_per_day=10, handle_seconds=600, shift_hours=8, occupancy=0.85, shrinkage=0.3, sla_hours=24, backlog=30
    )
    assert first_day.reviewers == 2
    assert appeals_row["peak_required"] == 2

    forecast = signed_in(ops_manager).get(f"/api/v1/metrics/capacity_forecast?start={today - timedelta(days=7)}").json()
    appeals_days = [r for r in forecast["rows"] if r["queue"] == "Appeals" and r["series"] == "forecast"]
    assert len(appeals_days) == 14
    assert appeals_days[0]["day"] == today.isoformat()
    assert [r["required"] for r in appeals_days] == [2] + [1] * 13
    history = [r for r in forecast["rows"] if r["queue"] == "Appeals" and r["series"] == "history"]
    assert [r["volume"] for r in history] == [10.0] * 7


def test_capacity_page_drills_to_the_items_that_entered_the_queue(ops_manager, reviewer):
    chat = Queue.objects.create(slug="chat", name="Live chat", sla=timedelta(minutes=30))
    yesterday = timezone.localdate() - timedelta(days=1)
    _entering(chat, yesterday, 3, handle=timedelta(seconds=60), reviewer=reviewer)
    rollups_refresh()
    client = signed_in(ops_manager)
    page = client.get("/analytics/capacity/?period=7")
    html = page.content.decode()
    assert page.status_code == 200
    assert html.count("<svg") >= 2
    url = items_url(MetricFilter.last_days(7), queue=chat.pk, on="queued", golden="include", day=yesterday)
    assert url.replace("&", "&amp;") in html
    assert client.get(url).content.decode().count("data-item=") == 3


def test_home_shows_the_headline_tiles_and_links_every_area(ops_manager, intake_queue):
    now = timezone.now()
    _item(intake_queue, 1, received_at=now)
    _item(intake_queue, 2, received_at=now, state=ItemState.AUTO_ACTIONED)
    _item(
        intake_queue,
        3,
        received_at=now - timedelta(days=2),
        state=ItemState.DECIDED,
        decided_at=now,
        due_at=now + timedelta(hours=1),
    )
    _item(
        intake_queue,
        4,
        received_at=now - timedelta(days=3),
        state=ItemState.DECIDED,
        decided_at=now,
        due_at=now - timedelta(hours=1),
    )
    decided = {"state": ItemState.DECIDED, "decided_at": now, "due_at": now}
    _item(intake_queue, 5, received_at=now - timedelta(days=10), **decided)  # before the 7 days
    _item(intake_queue, 6, received_at=now - timedelta(days=1), is_golden=True, **decided)
    # The periodic jobs: the rollup refresh (the SLA tile) and the backlog snapshot (the backlog tiles).
    rollups_refresh()
    backlog_snapshot_take()
    html = signed_in(ops_manager).get("/analytics/").content.decode()
    for name in ("intake_today", "backlog", "sla_7d", "automation_today"):
        assert f'data-tile="{name}"' in html
    for slug, _ in panels.areas_with_panels():
        assert f'href="/analytics/{slug}/"' in html
    tiles = dict(re.findall(r'data-tile="(\w+)">\s*<div class="value">(?:<a href="[^"]*">)?([^<]*)<', html))
    assert tiles["sla_7d"] == "50.0%"  # items 3 (on time) and 4 (late); 5 received too long ago, 6 golden
    assert tiles["backlog"] == "1"  # item 1
    assert tiles["intake_today"] == "2"
    assert tiles["automation_today"] == "100.0%"


def test_home_tiles_read_from_rollups_equal_the_raw_rows(ops_manager, intake_queue):
    """The SLA and backlog tiles read the rollup and the snapshot: the same numbers as the raw rows they stand for."""
    now = timezone.now()
    for n in range(12):
        decided = n % 3 != 0
        _item(
            intake_queue,
            n,
            received_at=now - timedelta(days=n % 9, minutes=n),
            state=ItemState.DECIDED if decided else ItemState.QUEUED,
            decided_at=now if decided else None,
            due_at=now + timedelta(hours=1) if n % 2 else now - timedelta(hours=1),
        )
    rollups_refresh()
    backlog_snapshot_take()
    f = MetricFilter.last_days(7)
    raw = ReviewItem.objects.filter(
        is_golden=False, received_at__gte=f.start_at, received_at__lt=f.end_at, decided_at__isnull=False
    )
    met = sum(1 for i in raw if i.decided_at <= i.due_at)
    assert home_selectors.sla_attainment_7d() == f"{met / raw.count() * 100:.1f}%"
    waiting = ReviewItem.objects.filter(is_golden=False, state__in=[ItemState.QUEUED, ItemState.CLAIMED]).count()
    assert home_selectors.backlog() == f"{waiting:,}"


def test_capacity_forecasts_are_fitted_ahead_by_the_warm_task_and_read_from_the_cache(
    ops_manager, reviewer, monkeypatch
):
    chat = Queue.objects.create(slug="chat", name="Live chat", sla=timedelta(minutes=30))
    for back in range(1, 20):
        _entering(chat, timezone.localdate() - timedelta(days=back), 5 + back % 7, handle=None, reviewer=reviewer)
    rollups_refresh()
    assert capacity_forecasts_warm_task() == len(PRESET_DAYS)  # one queue, every preset period

    def no_fitting(*args: object, **kwargs: object) -> None:
        raise AssertionError("the page fitted a forecast the warm task had fitted")

    monkeypatch.setattr(capacity, "forecast_daily", no_fitting)
    for days in PRESET_DAYS:
        body = signed_in(ops_manager).get(f"/api/v1/metrics/capacity_plan?period={days}").json()
        assert body["rows"][0]["forecast_mean"] is not None
    # A new day of history is a new series: fitted afresh, never an old fit.
    item = ReviewItem.objects.filter(queue=chat).first()
    at = timezone.make_aware(datetime.combine(timezone.localdate() - timedelta(days=1), time(15)))
    ItemEvent.objects.bulk_create(
        ItemEvent(item=item, at=at, actor_label="r", event="escalated", queue=chat) for _ in range(40)
    )
    rollups_refresh()
    with pytest.raises(AssertionError, match="warm task"):
        signed_in(ops_manager).get("/api/v1/metrics/capacity_plan?period=7")


@pytest.mark.parametrize("color", [None, "backend"])
def test_bars_of_too_few_to_judge_are_drawn_apart_with_a_legend(color):
    """A bar whose rate rests on too few items is faded, grey or dashed and named in the legend; judged bars are
    drawn plainly, and a chart without any too-few bar is the plain bar chart."""
    precision = Column("precision", "Precision", Kind.PERCENT, interval=("lo", "hi"), items="n")
    rows = [
        {"category": "hate", "precision": 0.9, "n": 400, "backend": "local"},
        {"category": "spam", "precision": 1.0, "n": 3, "backend": "local"},
    ]
    table = Table("by category", [Column("category", "Category"), precision, Column("backend", "Backend")], rows)
    chart = charts.bar(table, x="category", y="precision", color=color)
    values = chart.spec["data"]["values"]
    assert [v["_figure"] for v in values] == ["judged", "too few to judge"]
    assert chart.spec["encoding"]["opacity"]["scale"]["range"] == [1.0, 0.3]
    assert "too few to judge (faded, dashed)" in chart.svg()

    rows[1]["n"] = 300
    plain = charts.bar(table, x="category", y="precision", color=color)
    assert "opacity" not in plain.spec["encoding"]
    assert "too few" not in plain.svg()
