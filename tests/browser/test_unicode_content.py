"""A reviewer reads Unicode-hostile content in a real browser: bidi overrides stay inside the content box,
invisible characters and emoji sequences arrive intact, and NUL shows as a marked placeholder."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from queues.models import Queue
from queues.services import item_claim
from tests.browser.conftest import SCREENSHOTS, off_machine_requests
from tests.browser.test_scoring_pages import sign_in
from tests.hostile.unicode_samples import UNICODE_SAMPLES
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_reviewer_sees_unicode_content_faithfully_and_isolated(
    page: Page, live_server, reviewer, intake_queue: Queue
):
    text = "\n".join(UNICODE_SAMPLES.values()) + "\n<b>not bold</b>"
    reasons = [UNICODE_SAMPLES["rtl_bidi_controls"], "spam\x00"]
    item = item_queued(
        intake_queue, text=text, kind="user_report", report_reasons=reasons, report_count=2,
        metadata={"\u202ekey": UNICODE_SAMPLES["emoji_zwj_and_skin_tones"]}, surface="\u202ecomment",
    )  # fmt: skip
    item_claim(item=item, actor=reviewer)
    outside = off_machine_requests(page, live_server.url)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    sign_in(page, live_server.url, reviewer.username)
    page.goto(f"{live_server.url}/review/items/{item.pk}/")

    content = page.get_by_test_id("content")
    # Every character arrives as sent; each NUL is the visible placeholder, and nothing became markup.
    expect(content).to_have_text(text.replace("\x00", "NUL"), use_inner_text=False)
    assert content.locator("b").count() == 0
    assert content.locator("span.nul").count() == text.count("\x00")
    assert content.get_attribute("dir") == "auto"
    assert content.evaluate("el => getComputedStyle(el).unicodeBidi") == "plaintext"
    # The override inside the content must not flip the page around it: the heading still reads left to right
    # and the surface, report reasons and metadata are isolated.
    assert page.locator("h2 bdi").first.evaluate("el => getComputedStyle(el).unicodeBidi") == "isolate"
    reasons_shown = page.get_by_test_id("report-reason")
    expect(reasons_shown).to_have_count(2)
    assert reasons_shown.nth(1).locator("span.nul").count() == 1
    assert all(reasons_shown.nth(i).get_attribute("dir") == "auto" for i in range(2))
    box = content.bounding_box()
    assert box is not None
    assert content.evaluate("el => el.scrollWidth <= el.clientWidth + 1"), "content overflows sideways"
    page.screenshot(path=str(SCREENSHOTS / "review-item-unicode.png"), full_page=True)
    assert dialogs == []
    assert outside == []
