"""CSRF on every form: a POST without the token is refused (403) on every page, the admin's included.

Only the endpoints listed under "## CSRF" in docs/access.md answer otherwise, and the test checks that the list
is exactly those: API-key endpoints (no cookie, nothing for a forged request to ride on) and GET-only readers.
"""

from __future__ import annotations

import pytest
from django.contrib.admin import site
from django.test import Client
from django.urls import reverse

from ops_platform.core.models import User
from tests.access.matrix import request_undone, routes, table
from tests.access.test_matrix import ADMIN_VIEWS, _admin_site_url, _admin_url
from tests.access.world import World, world_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(reviewer, vendor_reviewer, qa_lead, policy_staff, ops_manager, admin_user, in_house_team) -> World:
    return world_create(
        reviewer=reviewer,
        vendor_reviewer=vendor_reviewer,
        qa_lead=qa_lead,
        policy_staff=policy_staff,
        ops_manager=ops_manager,
        admin_user=admin_user,
        in_house_team=in_house_team,
    )


def _strict(user: User | None) -> Client:
    """A browser that has the CSRF cookie (from the sign-in page) but sends no token with its POSTs."""
    client = Client(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    client.get(reverse("login"))
    assert "csrftoken" in client.cookies
    return client


def _exempt() -> set[str]:
    return {row[0] for row in table("## CSRF")}


@pytest.mark.parametrize("persona", ["anonymous", "admin"])
def test_a_post_without_the_token_is_refused_on_every_page(world: World, persona: str):
    client = _strict(world.people[persona])
    kwargs = world.kwargs()
    unprotected = set()
    for r in routes():
        if r.pattern.startswith("admin/"):
            continue
        response = request_undone(client, "POST", reverse(r.name, kwargs=kwargs.get(r.name)))
        if response.status_code != 403 or b"CSRF" not in response.content:
            unprotected.add(r.name)
    assert sorted(unprotected) == sorted(_exempt()), "pages without CSRF vs the exempt list in docs/access.md"


def test_a_post_without_the_token_is_refused_everywhere_in_the_admin(world: World, admin_user: User):
    client = _strict(admin_user)
    urls = [_admin_url(model, view, any_id=True) for model in site._registry for view in ADMIN_VIEWS]
    urls += [_admin_site_url(row[0]) for row in table("### The admin site's own URLs")]
    unprotected = [url for url in urls if request_undone(client, "POST", str(url)).status_code != 403]
    assert unprotected == []


def test_the_same_post_with_the_token_gets_through(world: World, ops_manager: User):
    """The refusals above are the CSRF check, not something else: with the token the form is accepted."""
    client = _strict(ops_manager)
    token = client.cookies["csrftoken"].value
    url = reverse("analytics-alert-acknowledge", kwargs={"pk": world.alert.pk})

    assert request_undone(client, "POST", url).status_code == 403
    assert request_undone(client, "POST", url, data={"csrfmiddlewaretoken": token}).status_code == 302
