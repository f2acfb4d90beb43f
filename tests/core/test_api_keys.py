"""API keys: stored only as digests, rotatable with a grace period, revocable, every change audited."""

from __future__ import annotations

import io
import re
import time
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ops_platform.core.models import ApiKey, AuditLog
from ops_platform.core.services import api_client_create, api_key_revoke, api_key_rotate

pytestmark = pytest.mark.django_db


def test_the_raw_key_is_never_stored():
    client, raw = api_client_create(actor="test", name="Svc", source="svc", scopes=["items:write"])

    key = ApiKey.objects.get(client=client)
    assert raw.startswith(f"tsk_{key.lookup}_")
    stored = [str(v) for v in ApiKey.objects.values_list(*[f.attname for f in ApiKey._meta.fields]).get()]
    assert raw not in stored
    assert raw.split("_", 2)[2] not in " ".join(stored)
    assert key.matches(raw)
    assert not key.matches(raw + "x")


def test_rotation_issues_a_new_key_and_gives_old_ones_an_end(admin_user):
    client, old_raw = api_client_create(actor=admin_user, name="Svc", source="svc", scopes=["items:write"])

    new, new_raw = api_key_rotate(actor=admin_user, client=client, grace=timedelta(hours=2))

    old = ApiKey.objects.exclude(pk=new.pk).get()
    assert new_raw != old_raw
    assert old.expires_at is not None
    assert timedelta(hours=1, minutes=59) < old.expires_at - timezone.now() <= timedelta(hours=2)
    assert set(ApiKey.objects.usable()) == {old, new}
    assert AuditLog.objects.filter(action="api_key.rotate", actor=admin_user).exists()


def test_a_revoked_key_is_unusable_and_the_reason_is_audited(admin_user):
    client, _ = api_client_create(actor=admin_user, name="Svc", source="svc", scopes=["items:write"])
    key = client.keys.get()

    api_key_revoke(actor=admin_user, key=key, reason="posted in a public repo")

    assert not ApiKey.objects.usable().exists()
    assert AuditLog.objects.get(action="api_key.revoke").reason == "posted in a public repo"


@pytest.mark.parametrize("raw", ["", "tsk_", "tsk_short_secret", "xyz_0123456789abcdef_s", "tsk_0123456789abcdef_"])
def test_malformed_keys_have_no_lookup(raw: str):
    assert ApiKey.split(raw) is None


# --- rotating in practice: the admin action, the command, and the old key's grace period ----------------


def _status_with(key: str) -> int:
    """401 for a key the API refuses; 404 (an unknown item) for one it accepts."""
    return Client().get("/api/v1/items/999999", HTTP_AUTHORIZATION=f"Bearer {key}").status_code


def _stored_values() -> str:
    return " ".join(
        str(v) for row in ApiKey.objects.values_list(*[f.attname for f in ApiKey._meta.fields]) for v in row
    )


def test_the_old_key_works_through_the_grace_period_and_not_after(admin_user):
    client, old_raw = api_client_create(actor=admin_user, name="Svc", source="svc", scopes=["items:read"])
    _, new_raw = api_key_rotate(actor=admin_user, client=client, grace=timedelta(minutes=30))

    assert _status_with(old_raw) == 404
    assert _status_with(new_raw) == 404
    ApiKey.objects.exclude(lookup=ApiKey.split(new_raw)).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _status_with(old_raw) == 401
    assert _status_with(new_raw) == 404


def test_the_admin_rotates_a_key_shows_it_once_and_stores_only_its_digest(admin_user):
    client, old_raw = api_client_create(actor=admin_user, name="Svc", source="svc", scopes=["items:read"])
    http = Client()
    http.force_login(admin_user, backend="django.contrib.auth.backends.ModelBackend")

    response = http.post(
        reverse("admin:core_apiclient_changelist"),
        {"action": "rotate_api_key", "_selected_action": [client.pk]},
        follow=True,
    )

    shown = [str(m) for m in response.context["messages"]]
    new_raw = re.search(r"tsk_\w{16}_[\w-]+", shown[0]).group(0)  # type: ignore[union-attr]
    assert new_raw != old_raw
    assert _status_with(new_raw) == 404
    assert new_raw.split("_", 2)[2] not in _stored_values()
    assert ApiKey.objects.get(lookup=ApiKey.split(old_raw)).expires_at is not None
    assert AuditLog.objects.filter(action="api_key.rotate", actor=admin_user).count() == 1


def test_the_command_rotates_with_the_grace_it_is_given_and_is_audited(admin_user):
    _, old_raw = api_client_create(actor=admin_user, name="Svc", source="svc", scopes=["items:read"])
    out = io.StringIO()

    call_command("api_key_rotate", "svc", "--grace-hours", "0", stdout=out)

    new_raw = re.search(r"tsk_\w{16}_[\w-]+", out.getvalue()).group(0)  # type: ignore[union-attr]
    assert _status_with(new_raw) == 404
    assert _status_with(old_raw) == 401, "no grace: the old key stops at once"
    assert new_raw.split("_", 2)[2] not in _stored_values()
    assert AuditLog.objects.get(action="api_key.rotate").actor_label.startswith("cli:")
    with pytest.raises(CommandError, match="No API client"):
        call_command("api_key_rotate", "nobody")


# --- guessing keys: invalid keys are throttled per client address ----------------------------------------


def _status_from(key: str, address: str, **headers: str) -> Any:
    return Client().get("/api/v1/items/999999", HTTP_AUTHORIZATION=f"Bearer {key}", REMOTE_ADDR=address, **headers)


def test_invalid_keys_from_one_address_get_429_before_any_key_lookup(settings, django_assert_num_queries):
    settings.API_KEY_FAILURE_LIMIT = 3
    _, good = api_client_create(actor="test", name="Svc", source="svc", scopes=["items:read"])
    guesses = [f"tsk_{n:016x}_guess" for n in range(4)]
    for guess in guesses[:3]:
        assert _status_from(guess, "198.51.100.7").status_code == 401

    with django_assert_num_queries(0):
        refused = _status_from(guesses[3], "198.51.100.7")

    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= settings.API_KEY_FAILURE_WINDOW_SECONDS
    assert refused.json()["error"] == "throttled"
    assert _status_from(good, "198.51.100.7").status_code == 429, "the address waits, whatever key it sends"
    assert _status_from(guesses[0], "198.51.100.8").status_code == 401, "another address is not affected"
    assert _status_from(good, "198.51.100.8").status_code == 404


def test_malformed_authorization_headers_count_as_invalid_keys(settings):
    settings.API_KEY_FAILURE_LIMIT = 2
    for header in ("Basic dXNlcjpwYXNz", "Bearer "):
        response = Client().get("/api/v1/items/1", HTTP_AUTHORIZATION=header, REMOTE_ADDR="198.51.100.7")
        assert response.status_code == 401

    assert _status_from("tsk_0123456789abcdef_x", "198.51.100.7").status_code == 429


def test_behind_the_proxy_rotating_forwarded_for_does_not_reset_the_count(settings):
    settings.BEHIND_TLS_PROXY = True
    settings.API_KEY_FAILURE_LIMIT = 3
    for n in range(3):
        forwarded = f"192.0.2.{n}, 203.0.113.9"
        assert _status_from("tsk_0123456789abcdef_x", "10.0.0.254", HTTP_X_FORWARDED_FOR=forwarded).status_code == 401

    rotated = _status_from("tsk_0123456789abcdef_x", "10.0.0.254", HTTP_X_FORWARDED_FOR="192.0.2.99, 203.0.113.9")

    assert rotated.status_code == 429
    other = _status_from("tsk_0123456789abcdef_x", "10.0.0.254", HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.10")
    assert other.status_code == 401, "another client behind the same proxy is not affected"


def test_after_the_window_the_address_may_try_again(settings):
    settings.API_KEY_FAILURE_LIMIT = 1
    settings.API_KEY_FAILURE_WINDOW_SECONDS = 1
    assert _status_from("tsk_0123456789abcdef_x", "198.51.100.7").status_code == 401
    assert _status_from("tsk_0123456789abcdef_x", "198.51.100.7").status_code == 429

    time.sleep(1.1)

    assert _status_from("tsk_0123456789abcdef_x", "198.51.100.7").status_code == 401


def test_the_admin_adds_a_client_with_scope_checkboxes_and_shows_its_key_once(admin_user):
    from ops_platform.core.models import ApiClient

    http = Client()
    http.force_login(admin_user, backend="django.contrib.auth.backends.ModelBackend")
    form = http.get(reverse("admin:core_apiclient_add"))
    assert 'type="checkbox" name="scopes" value="items:write"' in form.content.decode()

    response = http.post(
        reverse("admin:core_apiclient_add"),
        {
            "name": "Svc",
            "source": "svc",
            "scopes": ["items:read", "metrics:read"],
            "callback_url": "https://svc.example.org/hook",
            "is_active": "on",
            "keys-TOTAL_FORMS": "0",
            "keys-INITIAL_FORMS": "0",
        },
        follow=True,
    )

    client = ApiClient.objects.get(source="svc")
    assert client.scopes == ["items:read", "metrics:read"]
    shown = " ".join(str(m) for m in response.context["messages"])
    raw = re.search(r"tsk_\w{16}_[\w-]+", shown).group(0)  # type: ignore[union-attr]
    assert _status_with(raw) == 404, "the key shown works"
    assert raw.split("_", 2)[2] not in _stored_values()
    assert client.webhook_secret
    assert client.webhook_secret in shown
    again = http.get(reverse("admin:core_apiclient_change", args=[client.pk])).content.decode()
    assert raw not in again, "shown once, never again"
    assert client.webhook_secret not in again
    assert AuditLog.objects.filter(action="api_key.issue", actor=admin_user).count() == 1

    refused = http.post(
        reverse("admin:core_apiclient_add"),
        {"name": "Bad", "source": "bad", "scopes": ["root"], "keys-TOTAL_FORMS": "0", "keys-INITIAL_FORMS": "0"},
    )
    assert refused.status_code == 200
    assert "not one of the available choices" in refused.content.decode()
    assert not ApiClient.objects.filter(source="bad").exists()
