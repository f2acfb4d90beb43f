"""Policy staff open the strike settings from the navigation in a real browser, are told which field is wrong,
add a threshold for a time and switch it off again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect

from ops_platform.core.models import AuditLog
from queues.accounts.models import StrikeThreshold
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_review_workspace import hate  # noqa: F401 - a fixture
from tests.browser.test_scoring_pages import sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_policy_staff_add_a_timed_threshold_and_switch_it_off(page: Page, live_server, policy_staff, hate):  # noqa: F811
    sign_in(page, live_server.url, policy_staff.username)
    page.get_by_role("link", name="Strikes").click()
    expect(page.get_by_test_id("policy-terms")).to_contain_text("hate")

    new = page.get_by_test_id("threshold-new")
    new.locator("input[name=family]").fill("hate")
    new.locator("input[name=strikes]").fill("3")
    new.locator("select[name=action]").select_option("warn")
    new.locator("input[name=duration_days]").fill("7")
    new.get_by_role("button", name="Add threshold").click()
    expect(page.get_by_test_id("refusal")).to_contain_text("Only a restriction or a suspension can be for a time.")
    assert not StrikeThreshold.objects.exists()

    new = page.get_by_test_id("threshold-new")
    new.locator("input[name=family]").fill("hate")
    new.locator("input[name=strikes]").fill("3")
    new.locator("select[name=action]").select_option("suspend")
    new.locator("input[name=duration_days]").fill("7")
    new.get_by_role("button", name="Add threshold").click()
    row = page.get_by_test_id("threshold")
    expect(row).to_contain_text("7 days")
    expect(row.get_by_test_id("threshold-active")).to_have_text("yes")
    threshold = StrikeThreshold.objects.get()
    assert (threshold.action, threshold.duration) == ("suspend", timedelta(days=7))

    row.locator("input[name=is_active]").uncheck()
    row.locator("input[name=reason]").fill("too early for this family")
    row.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("threshold-active")).to_have_text("no")
    page.screenshot(path=str(SCREENSHOTS / "strike-settings.png"), full_page=True)
    threshold.refresh_from_db()
    assert threshold.is_active is False
    audit = AuditLog.objects.get(action="strikes.threshold_changed")
    assert (audit.before["is_active"], audit.after["is_active"], audit.reason) == (
        True,
        False,
        "too early for this family",
    )
