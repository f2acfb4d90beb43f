"""The ops manager opens every registered dashboard page in a real browser: each chart is drawn, nothing errs."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import ConsoleMessage, Locator, Page

from analytics import panels
from analytics.models import Alert, AlertMetric, AlertRule
from analytics.rollups import backlog_snapshot_take, classifier_rollups_refresh, rollups_refresh
from ops_platform.core.models import Policy, User
from queues.models import Decision, ItemEvent, ItemState, Queue, ReviewItem
from routing.models import ClassifierScore
from tests.browser.conftest import SCREENSHOTS, off_machine_requests
from tests.browser.test_scoring_pages import sign_in

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE_QUEUE = "<script>alert('queue')</script>"


@pytest.fixture
def history(reviewer: User, vendor_reviewer: User) -> None:
    """Three weeks of items entering two queues (one with a hostile name), decided by an in-house and a vendor
    reviewer, scored by a classifier, some still waiting; then the rollups every panel reads are built."""
    hate = Policy.objects.create(slug="hate", name="Hate", guidelines="-", classifier_categories=["hate"])
    queues = [
        Queue.objects.create(slug="chat", name="Live chat", sla=timedelta(minutes=30)),
        Queue.objects.create(slug="hostile", name=HOSTILE_QUEUE, sla=timedelta(hours=24)),
    ]
    today = timezone.localdate()
    for q, base in zip(queues, (40, 12), strict=True):
        for back in range(1, 22):
            day = today - timedelta(days=back)
            at = timezone.make_aware(datetime.combine(day, time(10)))
            count = base + (5 if day.weekday() < 5 else -5) + back % 3
            items = ReviewItem.objects.bulk_create(
                ReviewItem(
                    source="b",
                    external_id=f"{q.slug}-{back}-{n}",
                    received_at=at,
                    queued_at=at,
                    decided_at=at + timedelta(minutes=20),
                    due_at=at + q.sla,
                    state=ItemState.DECIDED,
                    queue=q,
                    text=f"<b>item</b> {n}",
                )
                for n in range(count)
            )
            ItemEvent.objects.bulk_create(
                ItemEvent(item=i, at=at, actor_label="triage", event="queued", to_state="queued", queue=q)
                for i in items
            )
            decided = items[: max(6, count // 2)]
            Decision.objects.bulk_create(
                Decision(
                    item=i,
                    reviewer=reviewer if i.pk % 2 else vendor_reviewer,
                    queue=q,
                    is_violation=bool(i.pk % 3 == 0),
                    policy=hate if i.pk % 3 == 0 else None,
                    claimed_at=at + timedelta(minutes=18),
                    decided_at=at + timedelta(minutes=20),
                    handle_time=timedelta(minutes=2),
                )
                for i in decided
            )
            ClassifierScore.objects.bulk_create(
                ClassifierScore(item=i, backend="local", model_version="v1", scores={"hate": _score(i.pk)})
                for i in decided
            )
            ReviewItem.objects.filter(pk__in=[i.pk for i in items[len(decided) :]]).update(
                state=ItemState.QUEUED, decided_at=None
            )
    rollups_refresh()
    backlog_snapshot_take()
    classifier_rollups_refresh()


def _score(pk: int) -> float:
    """Higher for the violations (every third item), with overlap: a curve worth drawing."""
    return round((pk * 37) % 100 / 200 + (0.5 if pk % 3 == 0 else 0), 2)


def _watch_errors(page: Page) -> list[str]:
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # Chromium asks for /favicon.ico on its own (the app has none); that 404 is not the page's.
        if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
            errors.append(f"{message.text} at {message.location.get('url')}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    return errors


def _check_charts(page: Page | Locator) -> int:
    charts = page.locator("figure.chart svg")
    for i in range(charts.count()):
        svg = charts.nth(i)
        box = svg.bounding_box()
        assert box is not None
        assert box["width"] > 100
        assert box["height"] > 50
        assert (
            svg.locator(".role-mark path, .role-mark rect, .role-mark line, path.mark-line, .mark-rect path").count()
            > 0
        )
    return charts.count()


def test_every_dashboard_page_renders_its_charts(page: Page, live_server, ops_manager, history):
    outside = off_machine_requests(page, live_server.url)
    errors = _watch_errors(page)
    sign_in(page, live_server.url, "olga")

    page.goto(f"{live_server.url}/analytics/")
    assert page.locator("[data-tile]").count() == len(panels.tiles_all())
    for slug, _ in panels.areas_with_panels():
        assert page.locator(f'a[href="/analytics/{slug}/"]').count() >= 1
    # The home is a picture of the day: intake, SLA, automation and the backlog by age drawn, open alerts listed.
    assert _check_charts(page.get_by_test_id("day-charts")) == 4
    assert page.get_by_test_id("open-alerts").count() == 1
    assert page.locator('[data-tile="overdue"]').count() == 1
    page.screenshot(path=str(_shot("dashboard-home")), full_page=True)

    charts_seen = 0
    for slug, title in panels.areas_with_panels():
        response = page.goto(f"{live_server.url}/analytics/{slug}/?period=28")
        assert response is not None
        assert response.status == 200
        assert page.locator("h1").inner_text().startswith(title)
        for panel in panels.panels_for(slug):
            assert page.locator(f'[data-panel="{panel.name}"]').count() == 1
        drawn = _check_charts(page)
        if slug != "alerts":  # alert panels are tables
            assert drawn >= 1, f"no chart drawn on the {slug} page"
        charts_seen += drawn
        page.screenshot(path=str(_shot(f"dashboard-{slug}")), full_page=True)

    # Capacity alone draws the plan bar chart and one forecast chart per queue.
    assert charts_seen >= 3
    page.goto(f"{live_server.url}/analytics/capacity/?period=28")
    # The hostile queue name is text in the table and the SVG, never a script (a dialog would be recorded).
    assert page.get_by_text(HOSTILE_QUEUE).count() >= 1
    assert page.locator("script:not([src])").count() == 0

    # Drill from a history number to the items behind it.
    page.locator('[data-panel="capacity_plan"] td a').first.click()
    page.wait_for_url("**/analytics/items?**")
    assert page.locator("[data-item]").count() > 0
    assert page.locator("td.excerpt b").count() == 0  # markup in content is shown as text
    # A drill-down row opens its item.
    page.locator("[data-item] td a").first.click()
    page.wait_for_url("**/analytics/item/*/")
    assert page.get_by_test_id("item-events").locator("tbody tr").count() >= 1
    assert page.locator("dd.excerpt b").count() == 0

    assert errors == []
    assert outside == []


def _shot(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / f"{name}.png"


def test_an_ops_manager_reads_an_alert_acknowledges_and_resolves_it(page: Page, live_server, ops_manager):
    rule = AlertRule.objects.create(name="False positives", metric=AlertMetric.FALSE_POSITIVE_RATE)
    now = timezone.now()
    cause = {
        "slice": {"surface": HOSTILE_QUEUE, "vendor": "vendor-a"},
        "window_rate": 0.4,
        "baseline_rate": 0.02,
        "window_volume": 20,
        "share_of_change": 0.8,
    }
    alert = Alert.objects.create(
        rule=rule,
        metric=rule.metric,
        opened_at=now,
        evaluated_at=now,
        window_start=now - timedelta(days=1),
        window_end=now,
        value=0.08,
        baseline=0.02,
        peak_value=0.08,
        volume=300,
        causes=[cause],
    )
    outside = off_machine_requests(page, live_server.url)
    errors = _watch_errors(page)
    sign_in(page, live_server.url, "olga")

    page.goto(f"{live_server.url}/analytics/alerts/?period=7")
    page.get_by_role("link", name="details").first.click()
    page.wait_for_url(f"**/analytics/alert/{alert.pk}/")
    assert page.get_by_test_id("causes").get_by_text(HOSTILE_QUEUE, exact=False).count() == 1  # text, not markup
    page.get_by_test_id("acknowledge").click()
    assert page.get_by_test_id("alert-state").inner_text() == "Acknowledged"
    page.get_by_test_id("resolve-form").locator("input[name=reason]").fill("vendor A retrained its team")
    page.get_by_test_id("resolve").click()
    assert page.get_by_test_id("alert-state").inner_text() == "Resolved"
    page.screenshot(path=str(_shot("alert-resolved")), full_page=True)
    alert.refresh_from_db()
    assert alert.state == "resolved"

    page.goto(f"{live_server.url}/analytics/alert-rules/")
    page.get_by_role("link", name="False positives").click()
    page.locator("#id_relative_threshold").fill("0.8")
    page.locator("#id_reason").fill("too noisy at night")
    page.get_by_role("button", name="Save rule").click()
    page.wait_for_url("**/analytics/alert-rules/")
    rule.refresh_from_db()
    assert rule.relative_threshold == 0.8
    assert errors == []
    assert outside == []


def test_an_ops_manager_picks_the_truth_and_the_any_violation_view_and_drills_into_it(
    page: Page, live_server, ops_manager, history
):
    errors = _watch_errors(page)
    sign_in(page, live_server.url, "olga")
    page.goto(f"{live_server.url}/analytics/classifiers/?period=28")
    assert page.locator('select[name="truth"]').input_value() == ""  # the default: final decisions

    page.select_option('select[name="view"]', "any")
    page.get_by_role("button", name="Apply").click()
    page.wait_for_url("**view=any**")

    summary = page.locator('[data-panel="classifier_summary"]')
    assert "any violation vs any category flagged" in summary.inner_text()
    assert summary.get_by_role("cell", name="any", exact=True).count() == 1
    summary.locator("td a").first.click()
    page.wait_for_url("**/analytics/items?**clf_category=any**")
    page.goto(page.url.replace("clf_cell=fp", "clf_cell=tp"))
    assert page.locator("[data-item]").count() > 0
    assert errors == []
