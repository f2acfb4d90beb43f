"""A reviewer works a queue in a real browser: start reviewing, decide with the keyboard, the next item
opens; escalation; media stays blurred and unloaded until revealed; hostile content is inert text."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from ops_platform.core.models import DecisionLabel, EnforcementAction, Policy
from queues.models import Decision, ItemState, Queue, ReviewItem
from routing.scoring.media.models import MediaAsset, MediaStatus
from routing.scoring.media.services import image_record
from tests.browser.conftest import SCREENSHOTS, off_machine_requests
from tests.browser.test_scoring_pages import sign_in
from tests.hostile.unicode_samples import as_read
from tests.support.image_server import picture

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = [
    "<script>alert('xss')</script>",
    '<img src=x onerror="alert(1)">',
    "<a href=\"javascript:alert('link')\">click me</a> javascript:alert(2)",
    '<svg onload="alert(3)"><circle r="10"/></svg>',
    '<style>body{display:none}</style><div style="background:url(javascript:alert(4))">css</div>',
    "A" * 3000,
    "\u202eevil.exe\u202c and \u200bzero\u200dwidth\u2060 and שלום عربى",
    "}}{{7*7}}{% now 'Y' %} ${7*7} <!-- comment --> &amp; &lt;b&gt;",
]


def queued(queue: Queue, text: str, *, priority: int, **fields) -> ReviewItem:
    now = timezone.now()
    return ReviewItem.objects.create(
        source="web",
        external_id=f"x{ReviewItem.objects.count()}",
        text=text,
        received_at=now,
        state=ItemState.QUEUED,
        queue=queue,
        queued_at=now,
        due_at=now + timedelta(hours=1),
        priority=priority,
        **fields,
    )


@pytest.fixture
def hate(intake_queue: Queue) -> Policy:
    policy = Policy.objects.create(slug="hate", name="Hate speech", guidelines="No attacks on protected groups.")
    remove = EnforcementAction.objects.create(slug="remove", name="Remove content", strength=4)
    policy.enforcement_actions.add(remove)
    DecisionLabel.objects.create(policy=policy, slug="slur", name="Slur")
    intake_queue.policies.add(policy)
    return policy


def test_a_reviewer_decides_with_the_keyboard_and_hostile_content_stays_text(
    page: Page, live_server, reviewer, intake_queue, hate
):
    items = [queued(intake_queue, text, priority=100 - i) for i, text in enumerate(HOSTILE)]
    outside = off_machine_requests(page, live_server.url)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    sign_in(page, live_server.url, "alice")
    page.click("text=My queues")
    expect(page.get_by_test_id("my-queues")).to_contain_text("General")
    page.get_by_role("button", name="Start reviewing").click()

    for index, item in enumerate(items):
        content = page.get_by_test_id("content")
        expect(content).to_have_text(as_read(item.text))
        expect(page.locator(".review[data-keys=ready]")).to_have_count(1)
        assert content.locator("script, img, svg, a, style, div").count() == 0
        fits = content.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
        assert fits, f"item {index} overflows sideways"
        if index == 0:
            page.screenshot(path=str(SCREENSHOTS / "review-item-hostile.png"), full_page=True)
        page.keyboard.press("1" if index == 1 else "n")
    expect(page.locator("ul.flash")).to_contain_text("is empty for now")

    decisions = {d.item_id: d for d in Decision.objects.filter(reviewer=reviewer)}
    assert set(decisions) == {i.pk for i in items}
    second = decisions[items[1].pk]
    assert (second.is_violation, second.policy, second.action.slug) == (True, hate, "remove")
    assert [label.slug for label in second.labels.all()] == ["slur"]
    assert all(not d.is_violation for pk, d in decisions.items() if pk != items[1].pk)
    assert dialogs == []
    assert outside == []


def test_media_show_only_the_stored_copy_blurred_until_revealed(page: Page, live_server, reviewer, intake_queue, hate):
    third_party = "http://images.example.invalid/attachment.png?sig=private"
    item = queued(intake_queue, "look at this", priority=1, media_urls=[third_party, "javascript:alert(5)"])
    image_record(item=item, position=0, host="images.example.invalid", data=picture(3), content_type="image/png")
    MediaAsset.objects.create(item=item, position=1, status=MediaStatus.REFUSED, refusal="bad_scheme")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))

    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/review/")
    page.get_by_role("button", name="Start reviewing").click()
    media = page.get_by_test_id("media")
    expect(media).to_have_count(1)
    expect(page.get_by_test_id("media-refused")).to_contain_text("bad_scheme")
    expect(page.locator(".review[data-keys=ready]")).to_have_count(1)
    image = media.first.locator("img")
    preview, copy = image.get_attribute("src"), image.get_attribute("data-src")
    assert preview.startswith("/media/copy/")
    assert copy.startswith("/media/copy/")
    assert preview != copy
    assert "blur" in image.evaluate("el => getComputedStyle(el).filter")

    page.keyboard.press("r")
    expect(media.first).to_have_class("media greyscale revealed")
    assert image.get_attribute("src") == copy
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=image.element_handle())
    assert not [url for url in requested if "images.example.invalid" in url]
    assert "images.example.invalid/attachment" not in page.content()
    assert dialogs == []


def test_escalation_moves_the_item_up_and_opens_the_next(page: Page, live_server, reviewer, intake_queue, hate):
    tier_2 = Queue.objects.create(slug="tier-2", name="Tier 2")
    intake_queue.escalation_target = tier_2
    intake_queue.save()
    hard = queued(intake_queue, "is this a threat or a lyric?", priority=9)
    easy = queued(intake_queue, "lovely weather", priority=1)

    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/review/")
    page.locator("tr", has_text="General").get_by_role("button", name="Start reviewing").click()
    expect(page.get_by_test_id("content")).to_have_text(as_read(hard.text))
    expect(page.locator(".review[data-keys=ready]")).to_have_count(1)
    page.keyboard.press("e")
    expect(page.locator("input[data-focus-key=e]")).to_be_focused()
    page.keyboard.type("Could be a drill lyric; needs a specialist")
    page.get_by_role("button", name="Escalate").click()

    expect(page.get_by_test_id("content")).to_have_text(as_read(easy.text))
    hard.refresh_from_db()
    assert (hard.state, hard.queue, hard.assignee) == (ItemState.QUEUED, tier_2, None)
    assert hard.events.get(event="escalated").data["reason"] == "Could be a drill lyric; needs a specialist"


def test_the_read_only_item_page_shows_the_stored_copy_blurred_never_the_third_party_url(
    page: Page, live_server, ops_manager, intake_queue
):
    """An ops manager opening an item behind a number sees its media as reviewers do: the platform's blurred stored
    copy, the full copy only on request, never a request to the host the attachment came from."""
    third_party = "http://images.example.invalid/attachment.png?sig=private"
    item = queued(intake_queue, "look at this", priority=1, media_urls=[third_party, "javascript:alert(5)"])
    image_record(item=item, position=0, host="images.example.invalid", data=picture(3), content_type="image/png")
    MediaAsset.objects.create(item=item, position=1, status=MediaStatus.REFUSED, refusal="bad_scheme")
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))

    sign_in(page, live_server.url, ops_manager.username)
    page.goto(f"{live_server.url}/analytics/item/{item.pk}/")
    media = page.get_by_test_id("media")
    expect(media).to_have_count(1)
    expect(page.get_by_test_id("media-refused")).to_contain_text("bad_scheme")
    image = media.first.locator("img")
    preview, copy = image.get_attribute("src"), image.get_attribute("data-src")
    assert preview.startswith("/media/copy/")
    assert copy.startswith("/media/copy/")
    assert preview != copy
    assert "blur" in image.evaluate("el => getComputedStyle(el).filter")

    media.first.get_by_role("button", name="Reveal").click()
    expect(media.first).to_have_class("media greyscale revealed")
    assert image.get_attribute("src") == copy
    page.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=image.element_handle())
    assert not [url for url in requested if "images.example.invalid" in url]
    assert "images.example.invalid/attachment" not in page.content()
    page.screenshot(path=str(SCREENSHOTS / "analytics-item-media.png"), full_page=True)
