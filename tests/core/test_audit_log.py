"""The audit log is append-only: no update or delete path, admin and raw SQL included."""

from __future__ import annotations

import pytest
from django.contrib.admin.sites import site
from django.db import DatabaseError, connection, transaction
from django.test import Client, RequestFactory
from django.urls import reverse

from ops_platform.core.models import AuditLog, AuditLogIsAppendOnly
from ops_platform.core.services import api_client_create, audit_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def entry(db) -> AuditLog:
    return audit_record(actor="test", action="thing.do", target=("thing", 1), before={"a": 1}, after={"a": 2})


def test_services_write_an_entry_with_who_what_and_before_after(admin_user):
    client, _ = api_client_create(actor=admin_user, name="Svc", source="svc", scopes=["items:write"])

    entry = AuditLog.objects.get(action="api_client.create")
    assert entry.actor == admin_user
    assert entry.actor_label == "user:ada"
    assert (entry.target_type, entry.target_id) == ("core.apiclient", str(client.pk))
    assert entry.after["scopes"] == ["items:write"]
    assert entry.after["key"].startswith("tsk_")
    assert entry.after["key"].endswith("_…"), "only the key's lookup is logged"


def test_an_entry_cannot_be_saved_again_or_deleted(entry: AuditLog):
    entry.reason = "tampered"
    with pytest.raises(AuditLogIsAppendOnly):
        entry.save()
    with pytest.raises(AuditLogIsAppendOnly):
        entry.delete()
    with pytest.raises(AuditLogIsAppendOnly):
        AuditLog.objects.filter(pk=entry.pk).update(reason="tampered")
    with pytest.raises(AuditLogIsAppendOnly):
        AuditLog.objects.all().delete()
    assert AuditLog.objects.get(pk=entry.pk).reason == ""


@pytest.mark.postgres
@pytest.mark.parametrize("sql", ["UPDATE core_auditlog SET reason = 'x'", "DELETE FROM core_auditlog"])
def test_postgresql_refuses_raw_updates_and_deletes(entry: AuditLog, sql: str):
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)
    assert AuditLog.objects.filter(pk=entry.pk, reason="").exists()


def test_the_admin_offers_no_way_to_add_change_or_delete_even_to_a_superuser(admin_user, entry: AuditLog):
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    model_admin = site._registry[AuditLog]

    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, entry)
    assert not model_admin.has_delete_permission(request, entry)
    assert model_admin.has_view_permission(request, entry)


# --- through the admin's own screens, as the admin ---------------------------------------------------------


def _admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user, backend="django.contrib.auth.backends.ModelBackend")
    return client


def test_the_admin_screens_refuse_to_change_or_delete_an_entry(admin_user, entry: AuditLog):
    http = _admin_client(admin_user)
    change = reverse("admin:core_auditlog_change", args=[entry.pk])

    page = http.get(change)
    assert page.status_code == 200, "the entry can be read"
    assert b'name="reason"' not in page.content, "no editable field"
    assert http.post(change, {"reason": "tampered", "action": "x"}).status_code == 403
    assert http.get(reverse("admin:core_auditlog_delete", args=[entry.pk])).status_code == 403
    assert http.post(reverse("admin:core_auditlog_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert http.get(reverse("admin:core_auditlog_add")).status_code == 403
    assert http.post(reverse("admin:core_auditlog_add"), {"action": "forged"}).status_code == 403
    assert AuditLog.objects.get(pk=entry.pk).reason == ""


def test_the_admin_list_offers_no_delete_action_and_refuses_a_forged_one(admin_user, entry: AuditLog):
    http = _admin_client(admin_user)
    changelist = reverse("admin:core_auditlog_changelist")

    page = http.get(changelist)
    assert page.status_code == 200
    assert b"delete_selected" not in page.content
    http.post(changelist, {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"})
    assert AuditLog.objects.filter(pk=entry.pk).exists()


@pytest.mark.postgres
def test_postgresql_holds_the_append_only_trigger_enabled_for_updates_and_deletes(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.tgenabled, t.tgtype FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.relname = 'core_auditlog' AND t.tgname = 'core_auditlog_append_only'"
        )
        rows = cursor.fetchall()
    assert len(rows) == 1
    enabled, tgtype = rows[0]
    # 'O': fires in the normal ("origin") replication role. tgtype bits: 1 row, 2 before, 8 delete, 16 update.
    assert enabled == "O"
    assert tgtype & (1 | 2 | 8 | 16) == 1 | 2 | 8 | 16
