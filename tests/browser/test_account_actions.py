"""A reviewer decides an item in a real browser, its author crosses a strike threshold, and the action shows on the
account page and in the webhook log; a senior acts on the account from an item page."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from ops_platform.core.models import ApiScope, WebhookEvent
from ops_platform.core.services import api_client_create
from queues.accounts.models import Account, AccountAction, StrikeThreshold
from queues.models import Decision
from queues.services import decision_record, item_claim
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_review_workspace import hate, queued  # noqa: F401 - a fixture
from tests.browser.test_scoring_pages import sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_decision_crosses_a_threshold_and_the_action_shows_on_the_account_page_and_in_the_webhook_log(
    page: Page,
    live_server,
    reviewer,
    qa_lead,
    admin_user,
    intake_queue,
    hate,  # noqa: F811
):
    api_client_create(
        actor="test",
        name="Web",
        source="web",
        scopes=[ApiScope.ITEMS_WRITE],
        callback_url="http://127.0.0.1:9/hooks",
    )
    StrikeThreshold.objects.create(family="hate", strikes=2, action="restrict")
    earlier = queued(intake_queue, "an earlier post", priority=0, author_ref="troll-7")
    item_claim(item=earlier, actor=qa_lead)
    earlier.refresh_from_db()
    decision_record(item=earlier, actor=qa_lead, is_violation=True, policy=hate)
    queued(intake_queue, "the post that crosses the line", priority=10, author_ref="troll-7")
    account = Account.objects.get(source="web", ref="troll-7")
    assert not AccountAction.objects.exists()

    sign_in(page, live_server.url, "alice")
    page.click("text=My queues")
    page.get_by_role("button", name="Start reviewing").click()
    expect(page.get_by_test_id("account-summary")).to_contain_text("troll-7")
    expect(page.get_by_test_id("account-strikes")).to_have_text("1")
    expect(page.locator(".review[data-keys=ready]")).to_have_count(1)
    page.keyboard.press("1")  # the first quick decision: hate
    expect(page.locator("ul.flash")).to_contain_text("is empty for now")
    assert Decision.objects.filter(reviewer=reviewer, is_violation=True).count() == 1

    page.goto(f"{live_server.url}/accounts/{account.pk}/")
    expect(page.get_by_test_id("account-status")).to_have_text("Restricted")
    expect(page.get_by_test_id("account-strikes")).to_have_text("2")
    expect(page.get_by_test_id("account-action")).to_contain_text("restrict")
    expect(page.get_by_test_id("account-action")).to_contain_text("reached the threshold of 2")
    page.screenshot(path=str(SCREENSHOTS / "account-page.png"), full_page=True)

    page.context.clear_cookies()
    sign_in(page, live_server.url, admin_user.username)
    page.goto(f"{live_server.url}/admin/core/webhookevent/?event_type=account.action")
    expect(page.locator("#result_list")).to_contain_text("An action on an account took effect")
    event = WebhookEvent.objects.get(event_type="account.action")
    assert event.payload["account_ref"] == "troll-7"
    assert event.payload["action"] == "restrict"
    assert len(event.payload["decisions"]) == 2
