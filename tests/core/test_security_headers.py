"""Cookies and headers on real responses, the strict Content-Security-Policy, and the settings per mode."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from tests.access.matrix import PERSONAS, request_undone, routes
from tests.access.world import World, world_create
from tests.conftest import PASSWORD, ROOT

pytestmark = pytest.mark.django_db


def _policy(response) -> dict[str, list[str]]:
    directives = [d.strip().split() for d in response["Content-Security-Policy"].split(";") if d.strip()]
    return {d[0]: d[1:] for d in directives}


def test_pages_carry_the_security_headers():
    response = Client().get("/accounts/login/")

    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response, "never on plain http"


def test_the_content_security_policy_allows_no_inline_script_or_style():
    policy = _policy(Client().get("/accounts/login/"))

    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]


def test_only_the_api_reference_pages_allow_inline_styles_and_never_inline_scripts():
    for url in ("/api/docs/", "/api/redoc/"):
        policy = _policy(Client().get(url))
        assert "'unsafe-inline'" in policy["style-src"], url
        assert policy["script-src"] == ["'self'"], url


def test_https_responses_carry_hsts(reviewer):
    response = Client().get("/accounts/login/", secure=True)

    assert response["Strict-Transport-Security"] == "max-age=31536000"


def test_the_session_and_csrf_cookies_are_secure_httponly_and_same_site(reviewer):
    client = Client()
    page = client.get("/accounts/login/")
    signed_in = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})

    for cookie in (page.cookies["csrftoken"], signed_in.cookies["sessionid"]):
        assert cookie["secure"] is True, cookie.key
        assert cookie["httponly"] is True, cookie.key
        assert cookie["samesite"] == "Lax", cookie.key


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "inline <script>"),
    (re.compile(r"<style\b", re.I), "<style> element"),
    (re.compile(r"\sstyle\s*=", re.I), "style attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "on* event handler"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
]


def test_no_template_of_ours_has_inline_script_style_or_handlers():
    found = []
    for path in ROOT.glob("**/templates/**/*.html"):
        if ".venv" in path.parts:
            continue
        text = path.read_text()
        found += [f"{path.relative_to(ROOT)}: {what}" for pattern, what in INLINE if pattern.search(text)]
    assert found == []


PROBE = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT)"
)
CONFIG = {"SECRET_KEY", "OPS_DEMO", "DEBUG", "SECURE_COOKIES", "BEHIND_TLS_PROXY", "SECURE_HSTS_SECONDS"}


def _settings(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in CONFIG}
    env = {**clean, "DJANGO_SETTINGS_MODULE": "ops_platform.settings", **env}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.split()


def test_production_is_secure_by_default_and_the_demo_keeps_plain_http_working():
    assert _settings(SECRET_KEY="s" * 50) == ["True", "True", "31536000", "False"]
    assert _settings(SECRET_KEY="s" * 50, BEHIND_TLS_PROXY="1") == ["True", "True", "31536000", "True"]
    assert _settings(OPS_DEMO="1") == ["False", "False", "0", "False"]


# --- nothing a signed-in person or an API key gets is cached ----------------------------------------------


@pytest.fixture
def world(reviewer, vendor_reviewer, qa_lead, policy_staff, ops_manager, admin_user, in_house_team) -> World:
    people = {"reviewer": reviewer, "vendor_reviewer": vendor_reviewer, "qa_lead": qa_lead, "admin_user": admin_user}
    return world_create(policy_staff=policy_staff, ops_manager=ops_manager, in_house_team=in_house_team, **people)


def _never_cached(response) -> bool:
    directives = {d.strip() for d in response.get("Cache-Control", "").split(",")}
    return {"no-store", "private"} <= directives


@pytest.mark.parametrize("persona", [p for p in PERSONAS if p != "anonymous"])
def test_every_page_and_answer_a_signed_in_person_gets_is_never_cached(world: World, persona: str):
    client = Client()
    client.force_login(world.people[persona], backend="django.contrib.auth.backends.ModelBackend")  # type: ignore[arg-type]
    kwargs = world.kwargs()
    cached = []
    for route in routes():
        if route.pattern.startswith("admin/") or route.name == "logout":
            continue
        url = reverse(route.name, kwargs=kwargs.get(route.name))
        for method in ("GET", "POST"):
            response = request_undone(client, method, url)
            if not _never_cached(response):
                cached.append(f"{method} {url}: {response.status_code} Cache-Control {response.get('Cache-Control')!r}")
    assert cached == [], "\n".join(cached)


def test_exports_are_never_cached(world: World, qa_lead, ops_manager):
    qa, ops = Client(), Client()
    qa.force_login(qa_lead, backend="django.contrib.auth.backends.ModelBackend")
    ops.force_login(ops_manager, backend="django.contrib.auth.backends.ModelBackend")
    panel = reverse("analytics-panel", kwargs={"area": world.panel_area, "name": world.panel_name})

    ground_truth = qa.get(reverse("qa-ground-truth"))
    panel_csv = ops.get(f"{panel}?format=csv")

    assert ground_truth["Content-Type"].startswith("text/csv")
    assert panel_csv["Content-Type"].startswith("text/csv")
    assert _never_cached(ground_truth)
    assert _never_cached(panel_csv)


def test_what_an_api_key_gets_is_never_cached(api):
    created = api.post("/api/v1/items", {"external_id": "cache-1", "text": "hello"})

    assert created.status_code == 201
    assert _never_cached(created)
    assert _never_cached(api.get(f"/api/v1/items/{created.json()['id']}"))
    assert _never_cached(Client().get("/api/v1/items/1", HTTP_AUTHORIZATION="Bearer tsk_0123456789abcdef_x"))


def test_the_admin_is_never_cached(admin_user):
    client = Client()
    client.force_login(admin_user, backend="django.contrib.auth.backends.ModelBackend")

    assert _never_cached(client.get("/admin/"))
    assert _never_cached(client.get("/admin/core/auditlog/"))


@override_settings(WHITENOISE_USE_FINDERS=True, WHITENOISE_AUTOREFRESH=True)  # serve static files as deployed
def test_anonymous_health_checks_and_static_files_keep_their_caching(reviewer):
    health = Client().get("/healthz")
    signed_in = Client()
    signed_in.force_login(reviewer, backend="django.contrib.auth.backends.ModelBackend")
    static = signed_in.get("/static/core/base.css")

    assert health.status_code == 200
    assert "no-store" not in health.get("Cache-Control", "")
    assert static.status_code == 200
    assert "no-store" not in static.get("Cache-Control", "")
