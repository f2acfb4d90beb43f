"""A reviewer reads Unicode-hostile content in a real browser: bidi controls and invisible characters show as
named markers (so a right-to-left override cannot disguise a file name), emoji sequences arrive intact, NUL
shows as a marked placeholder, and nothing leaks out of the content box."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from ops_platform.core.templatetags.content import reveal
from qa.services import sample_claim_next
from queues.models import Queue
from queues.services import item_claim
from tests.browser.conftest import SCREENSHOTS, off_machine_requests
from tests.browser.test_scoring_pages import sign_in
from tests.hostile.unicode_samples import UNICODE_SAMPLES, as_read
from tests.qa.factories import decided, sample_of
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_reviewer_sees_unicode_content_faithfully_and_isolated(
    page: Page, live_server, reviewer, intake_queue: Queue
):
    text = "\n".join(UNICODE_SAMPLES.values()) + "\n<b>not bold</b>"
    reasons = [UNICODE_SAMPLES["rtl_bidi_controls"], "spam\x00"]
    item = item_queued(
        intake_queue,
        text=text,
        kind="user_report",
        report_reasons=reasons,
        report_count=2,
        metadata={"\u202ekey": UNICODE_SAMPLES["emoji_zwj_and_skin_tones"]},
        surface="\u202ecomment",
    )
    item_claim(item=item, actor=reviewer)
    outside = off_machine_requests(page, live_server.url)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    sign_in(page, live_server.url, reviewer.username)
    page.goto(f"{live_server.url}/review/items/{item.pk}/")

    content = page.get_by_test_id("content")
    # Every character arrives as sent but those a reader cannot see: each NUL, bidi control and zero-width
    # character is its visible placeholder (joiners inside emoji stay), and nothing became markup.
    expect(content).to_have_text(as_read(text), use_inner_text=False)
    assert content.locator("b").count() == 0
    assert content.locator("span.nul").count() == text.count("\x00")
    assert content.locator("span.invisible-char").count() == reveal(text).count('class="invisible-char"') > 10
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


# The characters of ``word`` (as sent) in the order they sit on screen, left to right: what a reader's eye takes
# in, whatever the order in the DOM.
VISUAL_ORDER = """(el, word) => {
  const start = el.textContent.indexOf(word);
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  const placed = [];
  let offset = 0;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.data.length; i++, offset++) {
      if (offset < start || offset >= start + word.length) continue;
      const range = document.createRange();
      range.setStart(node, i);
      range.setEnd(node, i + 1);
      const box = range.getBoundingClientRect();
      if (box.width > 0) placed.push([box.top, box.left, node.data[i]]);
    }
  }
  placed.sort((a, b) => Math.round(a[0]) - Math.round(b[0]) || a[1] - b[1]);
  return placed.map(p => p[2]).join("");
}"""


def test_a_right_to_left_override_cannot_disguise_a_file_name(
    page: Page, live_server, reviewer, qa_lead, intake_queue: Queue
):
    lure = "Pay here \u202egnp.exe"
    fields = {"kind": "user_report", "report_reasons": [lure], "report_count": 1, "metadata": {"attachment": lure}}
    item = item_queued(intake_queue, text=lure, **fields)
    item_claim(item=item, actor=reviewer)
    # The same text decided elsewhere and sampled: QA's blind re-review shows it too.
    elsewhere = Queue.objects.create(slug="elsewhere", name="Elsewhere")
    sample = sample_of(decided(elsewhere, reviewer, text=lure))
    assert sample_claim_next(actor=qa_lead) == sample

    sign_in(page, live_server.url, reviewer.username)
    page.goto(f"{live_server.url}/review/items/{item.pk}/")

    content = page.get_by_test_id("content")
    marker = content.locator("span.invisible-char")
    expect(marker).to_have_count(1)
    expect(marker).to_have_text("RLO")
    assert marker.get_attribute("title") == "RIGHT-TO-LEFT OVERRIDE (U+202E)"
    assert marker.is_visible()
    box = marker.bounding_box()
    assert box is not None
    assert box["width"] > 5, "the marker takes visible room on the line"
    # On screen the letters read left to right as sent: "gnp.exe", never "exe.png".
    assert content.evaluate(VISUAL_ORDER, "gnp.exe") == "gnp.exe"
    expect(content).not_to_contain_text("exe.png")
    expect(page.get_by_test_id("report-reason").locator("span.invisible-char")).to_have_text("RLO")
    expect(page.get_by_test_id("metadata").locator("span.invisible-char")).to_have_text("RLO")
    page.screenshot(path=str(SCREENSHOTS / "review-item-rlo-marker.png"), full_page=True)

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, live_server.url, qa_lead.username)
    page.goto(f"{live_server.url}/qa/samples/{sample.pk}/review")
    qa_content = page.get_by_test_id("content")
    expect(qa_content.locator("span.invisible-char")).to_have_text("RLO")
    assert qa_content.evaluate(VISUAL_ORDER, "gnp.exe") == "gnp.exe"
