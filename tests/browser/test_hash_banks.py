"""Policy staff switch a hash bank off and delete it in a real browser: the delete asks for the slug again,
and both steps land in the audit log."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from ops_platform.core.models import AuditLog
from routing.scoring.media.models import HashBank
from routing.scoring.media.services import banks_import
from tests.browser.conftest import off_machine_requests
from tests.browser.test_scoring_pages import sign_in

pytestmark = pytest.mark.django_db(transaction=True)


def test_policy_staff_switch_a_bank_off_then_delete_it(page: Page, live_server, policy_staff) -> None:
    outside = off_machine_requests(page, live_server.url)
    banks_import(text=f"{'e' * 64},partner-bank,case 1\n{'a' * 32},partner-bank,case 2\n", actor="test")

    sign_in(page, live_server.url, "pat")
    page.goto(f"{live_server.url}/media/banks/")
    row = page.locator("tr", has_text="partner-bank")
    expect(row).to_contain_text("yes")
    page.get_by_test_id("disable-partner-bank").click()
    expect(page.locator("ul.flash")).to_contain_text("partner-bank is now off.")
    expect(page.get_by_test_id("enable-partner-bank")).to_be_visible()
    assert not HashBank.objects.get().is_active

    row = page.locator("tr", has_text="partner-bank")
    row.get_by_label("Type partner-bank to delete it").fill("partner")
    page.get_by_test_id("delete-partner-bank").click()
    expect(page.get_by_text("Type the bank's slug (partner-bank) to delete it.")).to_be_visible()
    page.goto(f"{live_server.url}/media/banks/")
    row = page.locator("tr", has_text="partner-bank")
    row.get_by_label("Type partner-bank to delete it").fill("partner-bank")
    page.get_by_test_id("delete-partner-bank").click()
    expect(page.locator("ul.flash")).to_contain_text("Deleted partner-bank and its 2 hashes.")
    expect(page.get_by_text("No banks yet.")).to_be_visible()
    assert not HashBank.objects.exists()
    assert set(AuditLog.objects.filter(actor=policy_staff).values_list("action", flat=True)) == {
        "user.sign_in",  # the browser signed in through the page: audited like every sign-in
        "hash_bank.disable",
        "hash_bank.delete",
    }
    assert outside == []
