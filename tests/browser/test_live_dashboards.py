"""Live in the embedded mode: a reviewer decides an item of the demo, and without a restart the ops home, the
reviewer throughput panel and QA's waiting list show it, kept up by the in-process beat (core/periodic.py)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from fixtures.demo import DemoWorld, demo_build
from ops_platform.core.models import PeriodicJobRun, User
from ops_platform.core.periodic import periodic_thread_stop
from qa.models import SamplingPlan
from qa.services import plan_save
from queues.models import Decision
from tests.browser.conftest import SCREENSHOTS

pytestmark = pytest.mark.django_db(transaction=True)

REVIEWER = "reviewer.ana"
# The jobs that keep these pages, run every few seconds here (beat runs them every minute: settings.py); the rest
# of beat's schedule runs as configured, less the two slow ones no page of this test reads.
FAST = ("analytics-refresh-rollups", "qa-sample-decisions", "analytics-evaluate-alerts")
SKIPPED = ("analytics-warm-capacity-forecasts", "database-statistics")
WAIT_SECONDS = 90.0


@pytest.fixture
def live_demo(settings: Any) -> Iterator[DemoWorld]:
    world = demo_build(items=120, days=4, seed=5)
    settings.PERIODIC_IN_PROCESS = True
    settings.PERIODIC_TICK_SECONDS = 1.0
    settings.CELERY_BEAT_SCHEDULE = {
        name: {**entry, "schedule": timedelta(seconds=3)} if name in FAST else entry
        for name, entry in settings.CELERY_BEAT_SCHEDULE.items()
        if name not in SKIPPED
    }
    yield world
    periodic_thread_stop()


def _password(world: DemoWorld, username: str) -> str:
    return next(login.password for login in world.logins if login.username == username)


def _signed_in(browser: Browser, base: str, world: DemoWorld, username: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", _password(world, username))
    page.click("button[type=submit]")
    expect(page.locator("input[name=password]")).to_have_count(0)
    return page


def _eventually(page: Page, url: str, read: Callable[[Page], Any], want: Any) -> None:
    """Reload ``url`` until ``read`` gives ``want`` (the in-process beat runs in the background)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        page.goto(url)
        got = read(page)
        if got == want or time.monotonic() > deadline:
            break
        page.wait_for_timeout(1000)
    assert got == want, f"{url}: {got!r}, expected {want!r}"


def _waiting(page: Page) -> int:
    match = re.search(r"(\d+) samples? waiting", page.locator("body").inner_text())
    assert match, "the QA home says how many samples wait"
    return int(match.group(1))


def _throughput(page: Page) -> int:
    row = page.locator("#panel-reviewer_productivity tbody tr", has_text=REVIEWER)
    return int(row.locator("td").nth(2).inner_text().replace(",", "")) if row.count() else 0


def _backlog(page: Page) -> int:
    return int(page.locator("[data-tile=backlog] .value").inner_text().replace(",", ""))


def test_a_decision_shows_on_the_ops_home_the_throughput_panel_and_the_qa_waiting_list(
    page: Page, browser: Browser, live_server: Any, live_demo: DemoWorld
) -> None:
    ana = User.objects.get(username=REVIEWER)
    lead = User.objects.get(username="qa.lead")
    plan_save(actor=lead, plan=SamplingPlan(name="Every decision of Ana", reviewer=ana, rate=1.0), reason="Test.")
    base = live_server.url
    ops = _signed_in(browser, base, live_demo, "ops.manager")
    qa = _signed_in(browser, base, live_demo, "qa.lead")
    # The first request started the beat: wait for its first round, then read the figures.
    deadline = time.monotonic() + WAIT_SECONDS
    while PeriodicJobRun.objects.filter(name__in=FAST, finished_at__isnull=False).count() < len(FAST):
        assert time.monotonic() < deadline, "the in-process beat ran the jobs the pages read"
        time.sleep(0.5)
    throughput_url = f"{base}/analytics/operations/reviewer_productivity/"
    ops.goto(throughput_url)
    expect(ops.locator("#panel-reviewer_productivity [data-as-of]")).to_contain_text("as of ")
    before = _throughput(ops)
    ops.goto(f"{base}/analytics/")
    expect(ops.locator("[data-tile=backlog] [data-as-of]")).to_contain_text("as of ")
    backlog_before = _backlog(ops)
    qa.goto(f"{base}/qa/")
    waiting_before = _waiting(qa)

    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", REVIEWER)
    page.fill("input[name=password]", _password(live_demo, REVIEWER))
    page.click("button[type=submit]")
    page.click("text=My queues")
    page.locator("button:not(.secondary)", has_text="Start reviewing").first.click()  # a queue with work
    expect(page.locator(".review[data-keys=ready]")).to_have_count(1)
    decided = Decision.objects.filter(reviewer=ana).count()
    page.keyboard.press("n")
    deadline = time.monotonic() + WAIT_SECONDS
    while Decision.objects.filter(reviewer=ana).count() == decided:
        assert time.monotonic() < deadline, "the decision was saved"
        time.sleep(0.2)

    _eventually(ops, f"{base}/analytics/", _backlog, backlog_before - 1)
    _eventually(ops, throughput_url, _throughput, before + 1)
    _eventually(qa, f"{base}/qa/", _waiting, waiting_before + 1)
    ops.screenshot(path=str(SCREENSHOTS / "live-throughput-after-a-decision.png"), full_page=True)
    for other in (ops, qa):
        other.context.close()
