"""Sign-in throttling (django-axes): a username+address that failed too often is refused, right password or not."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone

from ops_platform.core.login_throttle import login_client_ip
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


def _sign_in(client: Client, username: str, password: str, *, ip: str = "10.0.0.1", url: str = LOGIN):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip)


def _fail_until_locked(client: Client, username: str, ip: str = "10.0.0.1") -> None:
    for _ in range(settings.AXES_FAILURE_LIMIT):
        _sign_in(client, username, "wrong", ip=ip)


def test_after_the_limit_the_right_password_is_refused(reviewer):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _sign_in(client, "alice", "wrong").status_code == 200  # the form again, with its error
    assert _sign_in(client, "alice", "wrong").status_code == 429

    response = _sign_in(client, "alice", PASSWORD)

    assert response.status_code == 429
    assert b"Too many failed sign-ins" in response.content
    assert "_auth_user_id" not in client.session


def test_the_lockout_is_per_username_and_address(reviewer, qa_lead):
    _fail_until_locked(Client(), "alice", ip="10.0.0.1")

    assert _sign_in(Client(), "alice", PASSWORD, ip="10.0.0.2").status_code == 302, "alice from elsewhere"
    assert _sign_in(Client(), "quinn", PASSWORD, ip="10.0.0.1").status_code == 302, "a colleague on that network"


def test_the_admin_login_is_throttled_too(admin_user):
    _fail_until_locked(Client(), "ada")

    assert _sign_in(Client(), "ada", PASSWORD, url="/admin/login/").status_code == 429


def test_after_the_cool_off_the_right_password_works_again(reviewer):
    _fail_until_locked(Client(), "alice")
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))

    client = Client()
    assert _sign_in(client, "alice", PASSWORD).status_code == 302
    assert client.session["_auth_user_id"] == str(reviewer.pk)


def test_a_success_resets_the_count(reviewer):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _sign_in(Client(), "alice", "wrong")
    assert _sign_in(Client(), "alice", PASSWORD).status_code == 302

    assert _sign_in(Client(), "alice", "wrong").status_code == 200, "the count started again"


def test_behind_the_proxy_the_address_is_the_one_the_proxy_appended():
    request = RequestFactory().get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9", REMOTE_ADDR="10.0.0.254")

    with override_settings(BEHIND_TLS_PROXY=True):
        assert login_client_ip(request) == "203.0.113.9"
    with override_settings(BEHIND_TLS_PROXY=False):
        assert login_client_ip(request) == "10.0.0.254"
