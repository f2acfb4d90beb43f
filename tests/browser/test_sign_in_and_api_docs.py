"""A person signs in and reads the API reference, in a real browser, with nothing fetched off the machine."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import off_machine_requests
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_reviewer_signs_in_and_sees_their_role(page: Page, live_server, reviewer):
    page.goto(f"{live_server.url}/")

    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")

    expect(page.locator("h1")).to_have_text("Welcome, alice")
    expect(page.locator(".tag")).to_have_text("reviewer")


def test_a_wrong_password_is_refused(page: Page, live_server, reviewer):
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "wrong")
    page.click("button[type=submit]")

    expect(page.locator(".errorlist")).to_contain_text("correct username and password")


def test_the_api_reference_renders_offline(page: Page, live_server):
    outside = off_machine_requests(page, live_server.url)

    page.goto(f"{live_server.url}/api/docs/")

    expect(page.locator(".swagger-ui .title")).to_contain_text("Trust & Safety review operations API")
    expect(page.get_by_text("/api/v1/items", exact=True).first).to_be_visible()
    expect(page.get_by_role("link", name="← Review operations")).to_have_attribute("href", "/")  # a way back

    # ReDoc too: drawn from the bundle without Redocly's CDN logo, its search worker allowed by the CSP.
    page.goto(f"{live_server.url}/api/redoc/")
    expect(page.locator("h1").first).to_contain_text("Trust & Safety review operations API")
    expect(page.get_by_role("link", name="← Review operations")).to_be_visible()
    assert outside == []
