"""Role x URL: every page and endpoint, for every persona, answers what docs/access.md says.

The URLs come from walking the resolver, so a new URL with no row in the table fails here, and so does a row
for a URL that is gone. Each request runs in a transaction that is rolled back: every cell sees the same world.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin import site
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model
from django.test import Client
from django.urls import reverse

from ops_platform.core.models import User
from tests.access.matrix import METHODS, PERSONAS, Route, outcome, request_undone, routes, table
from tests.access.world import World, world_create

pytestmark = pytest.mark.django_db

PAGES = "## Pages and endpoints"
ADMIN_SITE = "### The admin site's own URLs"
ADMIN_MODELS = "### Each model in the admin"
ADMIN_VIEWS = ["changelist", "add", "change", "delete", "history"]


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


def _signed_in(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def _pages() -> dict[tuple[str, str], dict[str, str]]:
    """(URL name, method) -> persona -> expected outcome, from the table."""
    expected = {}
    for row in table(PAGES):
        pattern, name, method, *cells = row
        assert len(cells) == len(PERSONAS), f"row {row} needs one cell per persona"
        expected[name, method] = {"pattern": pattern, **dict(zip(PERSONAS, cells, strict=True))}
    return expected


def _site_routes() -> list[Route]:
    return [r for r in routes() if not r.pattern.startswith("admin/")]


def _admin_routes() -> list[Route]:
    return [r for r in routes() if r.pattern.startswith("admin/")]


def _admin_models() -> dict[str, Any]:
    return {model._meta.label: model for model in site._registry}


# --- the table covers exactly what is served ------------------------------------------------------------


def test_every_page_and_endpoint_has_a_get_and_a_post_row_and_no_row_is_stale():
    expected = _pages()
    served = _site_routes()
    assert all(r.name for r in served), f"name every URL, the table refers to it: {[r for r in served if not r.name]}"
    wanted = {(r.name, m) for r in served for m in METHODS}
    assert sorted(wanted - expected.keys()) == [], "URLs with no row in docs/access.md"
    assert sorted(expected.keys() - wanted) == [], "rows in docs/access.md for URLs that no longer exist"
    for r in served:
        assert expected[r.name, "GET"]["pattern"] == f"/{r.pattern}", f"{r.name}: the table shows another route"


def test_every_admin_url_is_in_the_admin_tables():
    site_rows = {row[0] for row in table(ADMIN_SITE)}
    models = _admin_models()
    model_rows = {row[0] for row in table(ADMIN_MODELS)}
    assert sorted(model_rows ^ models.keys()) == [], "models registered in the admin vs rows in docs/access.md"
    per_model = {f"admin:{m._meta.app_label}_{m._meta.model_name}_{v}" for m in models.values() for v in ADMIN_VIEWS}
    # Each model also answers <id>/ with a redirect to its change page (Django keeps the old URL alive).
    redirects = {r.pattern for r in _admin_routes() if r.pattern.endswith("/<path:object_id>/") and not r.name}
    named = {r.name or r.pattern for r in _admin_routes()} - per_model - redirects
    assert sorted(named ^ site_rows) == [], "admin URLs that are neither a model's view nor in the site table"


# --- what each persona gets --------------------------------------------------------------------------------


@pytest.mark.parametrize("persona", PERSONAS)
def test_each_persona_gets_what_the_table_says_on_every_page_and_endpoint(world: World, persona: str):
    client = _signed_in(world.people[persona])
    kwargs = world.kwargs()
    expected = _pages()
    wrong = []
    for r in _site_routes():
        url = reverse(r.name, kwargs=kwargs.get(r.name))
        for method in METHODS:
            got = outcome(request_undone(client, method, url))
            want = expected[r.name, method][persona]
            if got != want:
                wrong.append(f"{method} {url} ({r.name}): the table says {want}, the app answers {got}")
    assert wrong == [], f"{persona}:\n" + "\n".join(wrong)


def _admin_url(model: type[Model], view: str, *, any_id: bool = False) -> str | None:
    """The admin URL of a model's view; object views on the model's first object (or id 1 with ``any_id``)."""
    name = f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}"
    if view in ("changelist", "add"):
        return reverse(name)
    obj = model._default_manager.order_by("pk").first()
    if obj is None:
        return reverse(name, args=[1]) if any_id else None
    return reverse(name, args=[obj.pk])


def _admin_site_url(name: str) -> str:
    if name == "admin:app_list":
        return reverse(name, kwargs={"app_label": "core"})
    if name == "admin:auth_user_password_change":
        return reverse(name, args=[User.objects.order_by("pk").first().pk])  # type: ignore[union-attr]
    if name == "admin:view_on_site":
        return reverse(name, args=[ContentType.objects.get_for_model(User).pk, User.objects.first().pk])  # type: ignore[union-attr]
    if name.startswith("admin/"):  # the catch-all, which has no name
        return "/admin/no-such-page/"
    return reverse(name)


def test_the_admin_answers_the_admin_as_the_table_says(world: World, admin_user: User):
    client = _signed_in(admin_user)
    models = _admin_models()
    wrong = []
    for label, *cells in table(ADMIN_MODELS):
        for view, want in zip(ADMIN_VIEWS, cells, strict=True):
            url = _admin_url(models[label], view)
            got = "—" if url is None else outcome(request_undone(client, "GET", url))
            if got != want:
                wrong.append(f"{label} {view}: the table says {want}, the admin answers {got}")
    for name, _anonymous, _others, admin in table(ADMIN_SITE):
        got = outcome(request_undone(client, "GET", _admin_site_url(name)))
        if got != admin:
            wrong.append(f"{name}: the table says {admin}, the admin answers {got}")
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("persona", [p for p in PERSONAS if p != "admin"])
def test_nobody_but_the_admin_gets_past_the_admin_login(world: World, persona: str):
    client = _signed_in(world.people[persona])
    column = 1 if persona == "anonymous" else 2
    site_rows = {row[0]: row[column] for row in table(ADMIN_SITE)}
    wrong = []
    for model in _admin_models().values():
        for view in ADMIN_VIEWS:
            url = _admin_url(model, view, any_id=True)
            assert url is not None
            got = outcome(request_undone(client, "GET", url))
            if got != "admin-login":
                wrong.append(f"{url}: {got}")
    for name, want in site_rows.items():
        got = outcome(request_undone(client, "GET", _admin_site_url(name)))
        if got != want:
            wrong.append(f"{name}: the table says {want}, the admin answers {got}")
    assert wrong == [], f"{persona}:\n" + "\n".join(wrong)
