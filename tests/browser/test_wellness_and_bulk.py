"""Reviewer wellness and bulk decisions in a real browser: an ops manager caps a queue and the reviewer is
sent elsewhere at the cap; a break reminder after the reviewer's own stretch; a senior reviewer closes a
filtered selection as one batch, hostile text staying text."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from ops_platform.core.models import AuditLog, User
from queues.models import Decision, ItemEvent, ItemState, Queue, ReviewItem
from tests.browser.conftest import off_machine_requests
from tests.browser.test_scoring_pages import sign_in
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_ops_manager_caps_a_queue_and_the_reviewer_is_offered_other_work_at_the_cap(
    page: Page, live_server, ops_manager: User, reviewer: User, intake_queue: Queue
):
    gore = Queue.objects.create(slug="gore", name="Gore")  # no allow-list: alice's in-house team may work it
    first, second, third = (item_queued(gore, text=f"gore item {n}", priority=10 - n) for n in range(3))
    item_queued(intake_queue, text="an ordinary post")
    outside = off_machine_requests(page, live_server.url)

    sign_in(page, live_server.url, "olga")
    page.goto(f"{live_server.url}/review/wellness")
    page.get_by_placeholder("New category, e.g. Graphic violence").fill("Graphic violence")
    page.get_by_label("daily cap", exact=True).fill("2")
    page.get_by_role("button", name="Add category").click()
    expect(page.locator("ul.flash")).to_contain_text("Exposure cap saved.")
    page.get_by_label("category of Gore").select_option(label="Graphic violence")
    page.locator("tr", has_text="Gore").get_by_role("button", name="Set").click()
    expect(page.locator("ul.flash")).to_contain_text("Gore: Graphic violence.")
    expect(page.get_by_test_id("caps").locator("tr", has_text="Graphic violence")).to_contain_text("Gore")
    page.get_by_role("button", name="Sign out olga").click()

    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/review/")
    gore_row = page.get_by_test_id("my-queues").locator("tr", has_text="Gore")
    expect(gore_row).to_contain_text("0 / 2 Graphic violence")
    gore_row.get_by_role("button", name="Start reviewing").click()
    for opened, item in enumerate((first, second), start=1):
        expect(page.get_by_test_id("content")).to_have_text(item.text)
        expect(page.get_by_test_id("exposure")).to_have_text(f"Graphic violence: item {opened} of your 2 for today.")
        expect(page.locator(".review[data-keys=ready]")).to_have_count(1)
        page.keyboard.press("n")

    flash = page.locator("ul.flash")
    expect(flash).to_contain_text("You have opened 2 Graphic violence items today, the daily cap of 2.")
    expect(flash).to_contain_text("With work now: General (1 waiting).")
    gore_row = page.get_by_test_id("my-queues").locator("tr", has_text="Gore")
    expect(gore_row.get_by_test_id("capped")).to_have_text("cap reached for today")
    expect(gore_row.get_by_role("button", name="Start reviewing")).to_have_count(0)
    expect(gore_row).to_contain_text("2 / 2 Graphic violence")
    states = dict(ReviewItem.objects.filter(queue=gore).values_list("pk", "state"))
    assert states == {first.pk: ItemState.DECIDED, second.pk: ItemState.DECIDED, third.pk: ItemState.QUEUED}
    assert outside == []


def test_the_break_reminder_shows_after_the_reviewers_own_stretch(
    page: Page, live_server, reviewer: User, intake_queue: Queue
):
    earlier = item_queued(intake_queue, text="decided a moment ago", state=ItemState.DECIDED)
    now = timezone.now()
    for minutes_ago in (6, 4, 2, 1):  # no pause of ten minutes: one stretch of six minutes
        ItemEvent.objects.create(
            item=earlier, at=now - timedelta(minutes=minutes_ago), actor=reviewer, actor_label="alice", event="decided"
        )
    waiting = item_queued(intake_queue, text="the next post")

    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/review/")
    page.get_by_role("link", name="My preferences").click()
    minutes = page.get_by_label("Remind me to take a break")
    minutes.fill("0")
    page.get_by_role("button", name="Save").click()
    expect(minutes).to_have_value("0")  # off stays off: saving the form again must not turn it back on
    minutes.fill("1")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("ul.flash")).to_contain_text("Preferences saved.")
    expect(minutes).to_have_value("1")

    page.goto(f"{live_server.url}/review/")
    page.get_by_role("button", name="Start reviewing").click()
    expect(page.get_by_test_id("content")).to_have_text(waiting.text)
    reminder = page.get_by_test_id("break-reminder")
    expect(reminder).to_be_visible()
    expect(reminder).to_contain_text("You have been reviewing for 6 minutes without a break.")


def test_a_senior_reviewer_bulk_decides_a_filtered_selection_and_hostile_text_stays_text(
    page: Page, live_server, qa_lead: User, intake_queue: Queue
):
    wave = [
        item_queued(intake_queue, text="spam wave <script>alert(1)</script>"),
        item_queued(intake_queue, text="spam wave <img src=x onerror=alert(2)>"),
        item_queued(intake_queue, text="spam wave: cheap pills at http://spam.example"),
    ]
    other = item_queued(intake_queue, text="a holiday photo")
    outside = off_machine_requests(page, live_server.url)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    sign_in(page, live_server.url, "quinn")
    page.goto(f"{live_server.url}/review/queues/general/bulk")
    expect(page.get_by_text("4 waiting items match")).to_be_visible()
    page.get_by_placeholder("text contains").fill("spam wave")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("3 waiting items match")).to_be_visible()
    excerpts = page.locator(".content.excerpt")
    expect(excerpts).to_have_text([item.text for item in wave])  # oldest first; markup shown, not parsed
    assert excerpts.locator("script, img").count() == 0

    page.get_by_label("all", exact=True).check()
    for item in wave:
        expect(page.get_by_label(f"select item {item.pk}")).to_be_checked()
    expect(page.get_by_test_id("bulk-apply")).to_have_text("Preview 3 items")
    page.get_by_label("No violation").check()
    page.get_by_label("Rationale").fill("one spam wave, test posts")
    page.get_by_test_id("bulk-apply").click()

    # The preview: the count and every item of the batch; nothing is decided until the count is typed.
    expect(page.locator("h1")).to_have_text("Decide 3 items in General?")
    expect(page.get_by_test_id("bulk-preview").locator(".content.excerpt")).to_have_text([item.text for item in wave])
    assert not Decision.objects.exists()
    page.get_by_label("Type 3 to confirm").fill("2")
    page.get_by_test_id("bulk-confirm-button").click()
    expect(page.get_by_test_id("bulk-error")).to_contain_text("Type the number of items previewed (3)")
    assert not Decision.objects.exists()
    page.get_by_label("Type 3 to confirm").fill("3")
    page.get_by_test_id("bulk-confirm-button").click()

    expect(page.locator("ul.flash")).to_contain_text("3 decided")
    expect(page.get_by_text("Nothing matches.")).to_be_visible()
    decisions = list(Decision.objects.filter(item__in=wave))
    assert sorted(d.item_id for d in decisions) == sorted(i.pk for i in wave)
    assert all(d.reviewer == qa_lead and not d.is_violation and d.is_final for d in decisions)
    batch_ids = {d.batch_id for d in decisions}
    assert len(batch_ids) == 1
    (batch_id,) = batch_ids
    assert batch_id is not None
    expect(page.locator("ul.flash")).to_contain_text(f"Batch {batch_id}: 3 decided.")
    expect(page.get_by_test_id("bulk-batches")).to_contain_text(str(batch_id))
    entry = AuditLog.objects.get(action="decision.bulk")
    assert (entry.actor, entry.after["batch_id"], entry.reason) == (qa_lead, str(batch_id), "one spam wave, test posts")
    assert sorted(entry.after["items"]) == sorted(i.pk for i in wave)
    assert ReviewItem.objects.get(pk=other.pk).state == ItemState.QUEUED

    # Taken back within the window: the items wait in the queue again.
    page.get_by_label(f"reason to revert batch {batch_id}").fill("they were real posts")
    page.get_by_test_id("bulk-batches").get_by_role("button", name="Revert").click()
    expect(page.locator("ul.flash")).to_contain_text(f"Batch {batch_id} reverted: 3 back in the queue")
    expect(page.get_by_text("3 waiting items match")).to_be_visible()
    expect(page.get_by_test_id("bulk-batches")).to_contain_text("reverted by user:quinn")
    assert set(ReviewItem.objects.filter(pk__in=[i.pk for i in wave]).values_list("state", flat=True)) == {"queued"}
    assert dialogs == []
    assert outside == []
