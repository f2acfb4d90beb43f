"""An unreachable database answers 503 with Retry-After (JSON for the API, a plain page for people), never 500;
and a cache outage does not stop intake (the per-client rate limit fails open)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import OperationalError
from django.test import Client, override_settings

from ops_platform.core.models import User
from tests.conftest import PASSWORD, Api, free_port, item


def database_gone(*args: Any, **kwargs: Any) -> Any:
    raise OperationalError("connection to server at 127.0.0.1 failed: Connection refused")


@pytest.mark.django_db
def test_a_page_answers_a_plain_503_with_retry_after_when_the_database_is_down(reviewer: User, monkeypatch):
    browser = Client(raise_request_exception=False)
    browser.login(username=reviewer.username, password=PASSWORD)
    # Loading the session (to find the signed-in user) is the first query a page makes.
    monkeypatch.setattr("django.contrib.sessions.backends.db.SessionStore.load", database_gone)

    response = browser.get("/")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response["Content-Type"].startswith("text/html")
    assert "Temporarily unavailable" in response.content.decode()
    assert "OperationalError" not in response.content.decode()


@pytest.mark.django_db
def test_the_api_answers_503_json_when_the_database_is_down_before_the_view(api: Api, monkeypatch):
    monkeypatch.setattr("ops_platform.core.api_auth.ApiKeyAuthentication.authenticate", database_gone)

    response = api.get("/api/v1/items/1")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json()["error"] == "unavailable"


class SessionSaveFails:
    """Stands for a middleware whose own query fails (outside any view)."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        self.get_response(request)
        database_gone()


@pytest.mark.django_db
def test_a_database_error_raised_outside_a_view_is_still_503(settings: Any):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.core.test_database_unavailable.SessionSaveFails"]
    settings.DEBUG = False

    response = Client(raise_request_exception=False).get("/accounts/login/")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"


@pytest.mark.django_db
def test_other_errors_stay_500(settings: Any, monkeypatch):
    settings.DEBUG = False
    monkeypatch.setattr("django.contrib.sessions.backends.db.SessionStore.load", lambda self: 1 / 0)
    browser = Client(raise_request_exception=False)
    browser.cookies["sessionid"] = "x" * 32

    assert browser.get("/").status_code == 500


@pytest.mark.django_db
def test_intake_keeps_accepting_when_the_rate_limit_cache_is_unreachable(api: Api):
    dead = f"redis://127.0.0.1:{free_port()}/1"
    caches = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": dead,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    with override_settings(CACHES=caches):
        response = api.post("/api/v1/items", item(1))

    assert response.status_code == 201


@pytest.mark.django_db
def test_an_api_500_answers_the_api_json_error_shape(api: Api, settings: Any, monkeypatch):
    """``handler500`` is assigned once (ops_platform/urls.py): a crash under /api/ is JSON, not Django's HTML page."""
    settings.DEBUG = False
    monkeypatch.setattr("ops_platform.core.api_auth.ApiKeyAuthentication.authenticate", lambda *a: 1 / 0)

    response = Client(raise_request_exception=False).get("/api/v1/items/1", **api.headers())

    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "server_error"
    assert "ZeroDivisionError" not in response.content.decode()
