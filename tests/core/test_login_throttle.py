"""Sign-in throttling (django-axes): a username+address that failed too often is refused, right password or not."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client, RequestFactory, override_settings
from django.utils import timezone

from ops_platform.core.client_address import client_address
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
        assert client_address(request) == "203.0.113.9"
    with override_settings(BEHIND_TLS_PROXY=False):
        assert client_address(request) == "10.0.0.254"


PROXY = "10.0.0.254"  # our TLS proxy: every request arrives from it


def _through_proxy(client: Client, username: str, password: str, forwarded_for: str):
    return client.post(
        LOGIN, {"username": username, "password": password}, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded_for
    )


@override_settings(BEHIND_TLS_PROXY=True)
def test_behind_the_proxy_rotating_forwarded_for_does_not_dodge_the_lockout(reviewer):
    # The guesser writes a fresh address into X-Forwarded-For every time; the proxy appends the real one.
    for n in range(settings.AXES_FAILURE_LIMIT):
        _through_proxy(Client(), "alice", "wrong", f"198.51.100.{n}, 203.0.113.9")

    response = _through_proxy(Client(), "alice", PASSWORD, "192.0.2.77, 198.51.100.200, 203.0.113.9")

    assert response.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.9"}
    assert _through_proxy(Client(), "alice", PASSWORD, "198.51.100.1, 203.0.113.10").status_code == 302, (
        "alice from another address signs in"
    )


@override_settings(BEHIND_TLS_PROXY=True, TRUSTED_PROXY_COUNT=2)
def test_behind_two_proxies_the_address_is_the_one_the_outer_proxy_saw(reviewer):
    # Load balancer, then the TLS proxy: the balancer appends the client, the TLS proxy appends the balancer.
    for n in range(settings.AXES_FAILURE_LIMIT):
        _through_proxy(Client(), "alice", "wrong", f"198.51.100.{n}, 203.0.113.9, 10.0.0.10")

    assert _through_proxy(Client(), "alice", PASSWORD, "6.6.6.6, 203.0.113.9, 10.0.0.10").status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.9"}


@override_settings(BEHIND_TLS_PROXY=True)
def test_a_forwarded_for_no_proxy_of_ours_wrote_counts_against_the_connection(reviewer):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        assert _through_proxy(Client(), "alice", "wrong", "not-an-address").status_code in (200, 429)

    assert _through_proxy(Client(), "alice", PASSWORD, "neither, is this").status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {PROXY}


@override_settings(BEHIND_TLS_PROXY=False)
def test_without_the_proxy_setting_forwarded_for_is_ignored(reviewer):
    for n in range(settings.AXES_FAILURE_LIMIT):
        _through_proxy(Client(), "alice", "wrong", f"198.51.100.{n}")

    assert _through_proxy(Client(), "alice", PASSWORD, "203.0.113.50").status_code == 429, "same connection"
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {PROXY}
    credentials = {"username": "alice", "password": PASSWORD}
    other = Client().post(LOGIN, credentials, REMOTE_ADDR="10.0.0.9", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert other.status_code == 302, "a header naming the locked address changes nothing"
