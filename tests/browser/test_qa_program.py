"""The QA loop in a real browser: a decision is sampled, a QA reviewer re-reviews it blind and disagrees, a
second QA person adjudicates, and the original reviewer reads the outcome and the reason on their coaching
page. Hostile content stays inert text and third-party media addresses are never loaded nor shown."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from ops_platform.core.models import Role, Team, User
from ops_platform.core.services import user_create
from qa.models import ErrorType, QaSample, SampleState
from queues.models import Decision, Queue
from tests.browser.conftest import SCREENSHOTS, off_machine_requests
from tests.browser.test_scoring_pages import sign_in
from tests.conftest import PASSWORD
from tests.hostile.unicode_samples import as_read
from tests.qa.factories import decided, policy_with_action, sample_everything

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = (
    "<script>alert('xss')</script><img src=x onerror=\"alert(1)\"> "
    "<a href=\"javascript:alert('link')\">click</a> \u202eevil.exe\u202c {{7*7}} שלום"
)
MEDIA = "http://images.example.invalid/attachment.png"


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()


def test_blind_re_review_then_adjudication_then_coaching(
    page: Page, live_server, reviewer: User, qa_lead: User, intake_queue: Queue, in_house_team: Team
):
    hate = policy_with_action("hate", "Hate speech", severity=3)
    spam = policy_with_action("spam", "Spam", severity=1)
    intake_queue.policies.add(hate, spam)
    decided(
        intake_queue,
        reviewer,
        text=HOSTILE,
        policy=hate,
        action=hate.enforcement_actions.get(),
        rationale="slur aimed at a group",
        media_urls=[MEDIA, "javascript:alert(5)"],
    )
    assert sample_everything(qa_lead) == 1
    user_create(actor="test", username="sam", password=PASSWORD, roles=[Role.SENIOR_REVIEWER], team=in_house_team)
    outside = off_machine_requests(page, live_server.url)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # quinn re-reviews blind: the item is there, the original decision and its maker are not.
    sign_in(page, live_server.url, "quinn")
    page.get_by_role("link", name="QA", exact=True).click()
    expect(page.get_by_test_id("counts")).to_contain_text("Waiting for blind re-review")
    page.get_by_role("button", name="Start blind re-review").click()
    content = page.get_by_test_id("content")
    expect(content).to_have_text(as_read(HOSTILE))
    assert content.locator("script, img, a").count() == 0
    # Never fetched, so nothing to show: the third-party address is neither loaded nor printed.
    expect(page.get_by_test_id("media-pending")).to_contain_text("2 attachments, not fetched")
    assert "images.example.invalid" not in page.content()
    body = page.locator("main").inner_text()
    assert "alice" not in body
    assert "slur aimed at a group" not in body
    page.screenshot(path=str(SCREENSHOTS / "qa-blind-re-review.png"), full_page=True)
    page.get_by_label("Violation", exact=True).check()
    page.get_by_label("Policy").select_option(label="Spam")
    page.get_by_label("Rationale").fill("a copy-pasted advert, not an attack")
    page.get_by_role("button", name="Submit re-review").click()

    # The comparison: now both decisions are shown, and the disagreement goes to adjudication.
    expect(page.get_by_test_id("outcome")).to_contain_text("went to adjudication")
    expect(page.get_by_test_id("original")).to_contain_text("Hate speech")
    expect(page.get_by_test_id("rereview")).to_contain_text("Spam")
    expect(page.get_by_test_id("comparison")).to_contain_text("alice")
    sign_out(page)

    # sam made neither decision, so sam adjudicates: the error type is previewed, then recorded.
    sign_in(page, live_server.url, "sam")
    page.get_by_role("link", name="QA", exact=True).click()
    page.get_by_role("link", name="Adjudication").click()
    page.get_by_role("link", name="Adjudicate").click()
    expect(page.get_by_test_id("content")).to_have_text(as_read(HOSTILE))
    expect(page.get_by_test_id("decisions")).to_contain_text("slur aimed at a group")
    expect(page.get_by_test_id("decisions")).to_contain_text("a copy-pasted advert")
    expect(page.locator("form[data-preview=ready]")).to_have_count(1)
    form = page.get_by_test_id("adjudicate-form")
    form.get_by_label("No violation").check()
    expect(page.get_by_test_id("error-preview")).to_contain_text("False positive")
    expect(form.locator("input[name=severity]")).to_have_value("3")
    form.get_by_label("Rationale").fill("Quoted to condemn it: the post reports abuse, it does not attack anyone.")
    form.get_by_role("button", name="Adjudicate").click()
    expect(page.get_by_test_id("error-type")).to_have_text(ErrorType.FALSE_POSITIVE.label)
    page.screenshot(path=str(SCREENSHOTS / "qa-adjudicated.png"), full_page=True)
    page.get_by_role("button", name="Make golden item").click()
    expect(page.get_by_test_id("golden-list")).to_contain_text("No violation")
    sign_out(page)

    # alice reads what QA found and why.
    sign_in(page, live_server.url, "alice")
    page.get_by_role("link", name="My QA", exact=True).click()
    outcomes = page.get_by_test_id("outcomes")
    expect(outcomes).to_contain_text("False positive")
    expect(outcomes.get_by_test_id("adjudicator-rationale")).to_have_text(
        "Quoted to condemn it: the post reports abuse, it does not attack anyone."
    )
    expect(outcomes).to_contain_text("Spam")  # the QA reviewer's decision
    assert outcomes.locator("script, img").count() == 0

    sample = QaSample.objects.get()
    assert (sample.state, sample.error_type, sample.severity) == (SampleState.CLOSED, ErrorType.FALSE_POSITIVE, 3.0)
    assert Decision.objects.filter(supersedes=sample.decision, is_violation=False).exists()
    assert dialogs == []
    assert outside == []
