"""Injection-looking strings in every filter of every list page and API list: a 4xx with a message or a
normal (possibly empty) result, never a 5xx, never the string echoed unescaped.

The pages come from the URL resolver, so a new page is covered without touching this file; their filter
names come from the page's own GET forms, plus the names the dashboards and lists read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from analytics import panels
from ops_platform.core.models import Role, Team
from ops_platform.core.services import user_create
from queues.models import Queue
from tests.conftest import PASSWORD, Api
from tests.queues.factories import item_queued

pytestmark = [pytest.mark.django_db]

HOSTILE = [
    "' OR 1=1 --",
    "%",
    "_",
    "\\",
    "'; DROP TABLE queues_reviewitem; --",
    "{{ 7*7 }}{% debug %}",
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "../../../../etc/passwd",
    "99999999999999999999999999999",
    "-1",
    "NaN",
    "-Infinity",
    "1e309",
    "2026-02-30",
    "\u202eÜñí漢字\U0001f600",
    "nul\x00byte",
    "a" * 3000,
]
# Values whose unescaped echo would be markup.
MARKUP = [v for v in HOSTILE if "<" in v or '"' in v]

# Filters the dashboards, drill-downs and lists read, whether or not the page shows a form for them.
KNOWN_FILTERS = [
    "queue",
    "vendor",
    "policy",
    "start",
    "end",
    "period",
    "q",
    "state",
    "kind",
    "page",
    "sort",
    "order",
    "status",
    "label",
    "reviewer",
    "team",
    "area",
    "metric",
    "rule",
    "plan",
    "format",
    "level",
    "outcome",
    "origin",
    "week",
    "day",
    "from",
    "to",
    "verdict",
    "golden",
    "language",
    "surface",
    "tag",
]

# Pages that act rather than list (they redirect or change state on GET) or are not HTML lists.
SKIP_NAMES = {"logout", "healthz", "api-schema", "api-docs", "api-redoc", "review-next", "qa-review-next"}


def _walk(patterns: list[Any], prefix: str = "") -> Iterator[tuple[str, URLPattern]]:
    for p in patterns:
        if isinstance(p, URLResolver):
            if str(p.pattern) == "admin/":
                continue  # the admin's changelists are listed from its registry below
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern), p


def list_pages() -> list[str]:
    """Every page the resolver knows that takes no id, with the analytics areas and panels filled in."""
    paths: list[str] = []
    for route, pattern in _walk(get_resolver().url_patterns):
        if pattern.name in SKIP_NAMES or route.startswith("api/v1/items") or route.startswith("api/v1/appeals"):
            continue
        if "<" not in route:
            paths.append("/" + route)
        elif route == "analytics/<slug:area>/":
            paths += [f"/analytics/{area}/" for area, _ in panels.areas_with_panels()]
        elif route == "analytics/<slug:area>/<str:name>/":
            paths += [f"/analytics/{p.area}/{p.name}/" for p in panels.panels_all()]
        elif route == "api/v1/metrics/<str:name>":
            paths += [f"/api/v1/metrics/{p.name}" for p in panels.panels_all()]
    paths += [f"/admin/{m._meta.app_label}/{m._meta.model_name}/" for m in admin.site._registry]
    return sorted(set(paths))


def _is_button(attrs: dict[str, str | None]) -> bool:
    return attrs.get("type") in ("submit", "button")


class _GetFormFields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self._in_get_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._in_get_form = (a.get("method") or "get").lower() == "get"
        elif self._in_get_form and tag in ("input", "select", "textarea") and a.get("name") and not _is_button(a):
            self.names.add(str(a["name"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_get_form = False


def form_filters(html: str) -> set[str]:
    parser = _GetFormFields()
    parser.feed(html)
    return parser.names


@pytest.fixture
def everyone(intake_queue: Queue) -> Client:
    """A person holding every role (and a reviewer profile), so every page answers with its content."""
    team = Team.objects.create(slug="all", name="All")
    user = user_create(actor="test", username="root", password=PASSWORD, roles=list(Role), team=team)
    item_queued(intake_queue, text="<b>an item</b>")
    client = Client()
    client.force_login(user)
    return client


def check(response: Any, value: str, url: str) -> None:
    assert response.status_code < 500, f"{url} answered {response.status_code}"
    if value in MARKUP and response.get("Content-Type", "").startswith("text/html"):
        assert value not in response.content.decode(errors="replace"), f"{url} echoed {value!r} unescaped"


def test_the_resolver_walk_finds_the_filtered_pages() -> None:
    pages = list_pages()
    for expected in ("/analytics/", "/analytics/items", "/qa/adjudication/", "/rules/", "/api/v1/metrics/"):
        assert expected in pages
    assert any(p.startswith("/analytics/") and p.count("/") == 4 for p in pages)  # a panel page
    assert any(p.startswith("/api/v1/metrics/") and p != "/api/v1/metrics/" for p in pages)


def test_hostile_filter_values_never_break_a_list_page(everyone: Client, api: Api) -> None:
    api.client.rate_limit_per_minute = 10**6
    api.client.save(update_fields=["rate_limit_per_minute"])
    pages = list_pages()
    requests = 0
    for path in pages:
        is_api = path.startswith("/api/")
        get = (lambda url: api.get(url)) if is_api else everyone.get
        plain = get(path)
        assert plain.status_code < 500, f"{path} answered {plain.status_code} with no filter"
        names = set(KNOWN_FILTERS)
        if plain.get("Content-Type", "").startswith("text/html"):
            names |= form_filters(plain.content.decode())
        for value in HOSTILE:
            # Every filter at once, then each filter alone (one bad filter must not hide another).
            url = f"{path}?{urlencode(dict.fromkeys(sorted(names), value))}"
            check(get(url), value, url)
            requests += 1
        for name in sorted(names - set(KNOWN_FILTERS)):
            for value in HOSTILE:
                url = f"{path}?{urlencode({name: value})}"
                check(get(url), value, url)
                requests += 1
    assert requests >= len(pages) * len(HOSTILE)


@pytest.mark.parametrize("name", ["queue", "vendor", "policy", "start", "end", "period"])
@pytest.mark.parametrize("value", HOSTILE, ids=range(len(HOSTILE)))
def test_each_dashboard_filter_refuses_a_hostile_value_with_a_named_problem(api: Api, name: str, value: str) -> None:
    api.client.rate_limit_per_minute = 10**6
    api.client.save(update_fields=["rate_limit_per_minute"])
    metric = panels.panels_all()[0].name

    response = api.get(f"/api/v1/metrics/{metric}?{urlencode({name: value})}")

    assert response.status_code == 400, response.content[:300]
    assert any(e["field"] == name for e in response.json()["errors"]), response.json()


@pytest.mark.parametrize("route_id", ["0", "99999999999999999999999999999", "2147483648", "9223372036854775808"])
def test_ids_out_of_any_range_in_every_id_url_are_not_found_not_errors(
    everyone: Client, api: Api, route_id: str
) -> None:
    paths = []
    for route, pattern in _walk(get_resolver().url_patterns):
        if pattern.name in SKIP_NAMES or "<int:" not in route:
            continue
        paths.append("/" + re.sub(r"<int:\w+>", route_id, re.sub(r"<slug:\w+>", "general", route)))
    assert len(paths) > 10
    for path in paths:
        response = api.get(path) if path.startswith("/api/") else everyone.get(path)
        assert response.status_code < 500, f"{path} answered {response.status_code}"
