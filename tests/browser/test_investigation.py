"""A QA lead searches items in a real browser from the nav link, opens a result, and follows its author to the
author's other items; hostile content stays text."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from ops_platform.core.models import AuditLog, User
from queues.models import Queue
from tests.browser.conftest import off_machine_requests
from tests.browser.test_scoring_pages import sign_in
from tests.qa.factories import decided, policy_with_action
from tests.queues.factories import item_queued

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = "<img src=x onerror=alert(1)> walrus giveaway, send a card number"


def test_a_qa_lead_searches_opens_a_result_and_follows_its_author(
    page: Page, live_server, qa_lead: User, reviewer: User
):
    outside = off_machine_requests(page, live_server.url)
    general = Queue.objects.create(slug="general", name="General")
    fraud = policy_with_action("fraud", "Fraud")
    found = decided(general, reviewer, text=HOSTILE, policy=fraud, author_ref="acct-9").item
    other = item_queued(general, text="another post by the same author", author_ref="acct-9")
    item_queued(general, text="walrus facts by someone else", author_ref="acct-1")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    sign_in(page, live_server.url, qa_lead.username)
    page.get_by_role("link", name="Search").click()
    page.fill("input[name=q]", "walrus giveaway")
    page.select_option("select[name=decision]", "violation")
    page.get_by_role("button", name="Search").click()

    results = page.get_by_test_id("search-results")
    expect(results.locator("tr[data-item]")).to_have_count(1)
    expect(results).to_contain_text("Fraud")
    expect(results).to_contain_text("<img src=x onerror=alert(1)>")
    results.get_by_role("link", name=str(found.pk), exact=True).click()

    expect(page.get_by_test_id("content")).to_have_text(HOSTILE)
    expect(page.get_by_test_id("item-decisions")).to_contain_text("Fraud")
    page.go_back()
    page.get_by_test_id("account-link").first.click()  # the author's account page, with both of their items
    expect(page).to_have_url(re.compile(r"/accounts/\d+/$"))
    expect(page.locator("main")).to_contain_text(f"{found.pk} · ")
    expect(page.locator("main")).to_contain_text(f"{other.pk} · ")

    assert dialogs == []
    assert outside == []
    searches = AuditLog.objects.filter(action="investigation.search", actor=qa_lead).order_by("id")
    assert next(s.after["filter"] for s in searches) == {"q": "walrus giveaway", "decision": "violation"}
    assert AuditLog.objects.filter(action="investigation.item_open", target_id=str(found.pk)).exists()
