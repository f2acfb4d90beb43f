"""Single sign-on in a real browser: the sign-in page's button, the provider's own sign-in form (a real
django-oauth-toolkit provider in its own process), and back on the platform signed in with the mapped role."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from ops_platform.core.models import User
from tests.core.sso_support import PROVIDER_PASSWORD, provider_person
from tests.core.sso_support import oidc_provider as oidc_provider
from tests.core.sso_support import sso_on as sso_on

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_vendor_reviewer_signs_in_with_single_sign_on(page: Page, live_server, sso_on, settings):
    provider_person(sso_on, "val", ["ops-reviewers", "vendor-a-reviewers"])
    settings.LOCAL_PASSWORDS = False  # the sign-in page then offers only the provider

    page.goto(f"{live_server.url}/review/")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/review/")
    expect(page.locator("input[name=password]")).to_have_count(0)
    page.get_by_test_id("sso-sign-in").click()

    expect(page.locator("h1")).to_have_text("Test identity provider")
    page.fill("input[name=username]", "val")
    page.fill("input[name=password]", PROVIDER_PASSWORD)
    page.click("button[type=submit]")

    expect(page).to_have_url(f"{live_server.url}/review/")
    assert User.objects.get(username="val").reviewer_profile.team.slug == "vendor-a-team"


def test_a_person_without_a_mapped_group_sees_why_in_the_browser(page: Page, live_server, sso_on):
    provider_person(sso_on, "wes", ["sales"])

    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_test_id("sso-sign-in").click()
    page.fill("input[name=username]", "wes")
    page.fill("input[name=password]", PROVIDER_PASSWORD)
    page.click("button[type=submit]")

    expect(page.locator("h1")).to_have_text("You are not signed in")
    expect(page.get_by_test_id("sso-refused")).to_contain_text("None of your groups")
    assert not User.objects.filter(username="wes").exists()
