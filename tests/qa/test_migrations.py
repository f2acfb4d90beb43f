"""QA data migrations on rows that exist when they run."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

# queues back before its retention columns too: rows written at this state have no value for them
BEFORE = [("qa", "0001_qa_program"), ("queues", "0024_item_decided_op_index")]
AFTER = [("qa", "0002_golden_item_context")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("latest_schema_after")
def test_existing_golden_items_take_their_origin_items_context() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    Item, Queue = apps.get_model("queues", "ReviewItem"), apps.get_model("queues", "Queue")
    Golden, User = apps.get_model("qa", "GoldenItem"), apps.get_model("core", "User")
    lead, queue = User.objects.create(username="lead"), Queue.objects.create(slug="general", name="General")
    origin = Item.objects.create(
        source="social-app",
        external_id="p-1",
        kind="user_report",
        author_ref="author-7",
        metadata={"channel": "deals"},
        report_reasons=["spam"],
        received_at=timezone.now(),
    )
    made = {"queue": queue, "expected_is_violation": False, "created_by": lead}
    from_item = Golden.objects.create(text="x", origin_item=origin, report_reasons=["spam"], **made).pk
    written_report = Golden.objects.create(text="\ue000 y", report_reasons=["abuse"], **made).pk
    written = Golden.objects.create(text="z", **made).pk

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)

    Golden = executor.loader.project_state(AFTER).apps.get_model("qa", "GoldenItem")
    rows = {g.pk: (g.kind, g.source, g.author_ref, g.metadata) for g in Golden.objects.all()}
    assert rows == {
        from_item: ("user_report", "social-app", "author-7", {"channel": "deals"}),
        written_report: ("user_report", "", "", {}),
        written: ("content", "", "", {}),
    }
    assert Golden.objects.get(pk=written_report).text == "\ue000 y"  # the stored escape character survives
