"""API keys: stored only as digests, rotatable with a grace period, revocable, every change audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
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
