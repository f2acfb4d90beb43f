"""No migration builds an index on a hot table in a way that blocks writes.

A plain ``CREATE INDEX`` (Django's ``AddIndex``, an indexed ``AddField``/``AlterField``, a unique constraint, a
``RunSQL`` without CONCURRENTLY) holds a lock that stops every INSERT and UPDATE on the table until the build ends:
minutes on a table of tens of millions of rows, during which intake, triage and reviewers stand still. Going
forward, an index on a hot table is built with ``AddIndexConcurrentlyOnPostgreSQL``
(``ops_platform/core/migration_operations.py``) in a migration with ``atomic = False``. This test walks every
migration of the project's apps and fails on any other index-building operation on a hot table, except the
historical ones allow-listed below with the reason they were harmless; docs/deploy.md has the upgrade procedure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models
from django.db.migrations.loader import MigrationLoader

APPS = ("core", "queues", "routing", "qa", "analytics")
# Tables that grow with the items flowing through the platform, written on every intake, triage, claim or decision.
HOT = {
    ("queues", "reviewitem"),
    ("queues", "itemevent"),
    ("queues", "decision"),
    ("queues", "decisionlabellink"),
    ("queues", "groundtruth"),
    ("queues", "itemskip"),
    ("queues", "itemsearchtext"),
    ("routing", "classifierscore"),
    ("routing", "classifiercall"),
    ("routing", "routingdecision"),
    ("routing", "idempotencyrecord"),
    ("routing", "deadletter"),
    ("routing", "mediaasset"),
    ("routing", "mediamatch"),
    ("qa", "qasample"),
    ("qa", "qareview"),
    ("core", "auditlog"),
    ("core", "webhookevent"),
    ("core", "webhookdelivery"),
}
HOT_TABLES = {f"{app}_{model}" for app, model in HOT} | {"core_auditlog", "core_webhookevent", "core_webhookdelivery"}

# Operations that ran before the platform held production data: each table was empty or tiny when they were
# applied (the project had no release yet), so the lock lasted milliseconds. Applied history is not rewritten:
# an installation that already ran them would see a different migration than the one it recorded.
BEFORE_RELEASE = "applied before the first release, on tables then empty (no deployment held data yet)"
# These seven were all written on 2026-11-29, the day before the first concurrent build (queues 0009) made that
# the rule, and before any tagged release; a new installation runs them on empty tables too.
ALLOWED: dict[tuple[str, str, str], str] = {
    ("queues", "0004_item_reserved_for_lease_index", "AddField reserved_for (an index)"): BEFORE_RELEASE,
    ("queues", "0004_item_reserved_for_lease_index", "AddIndex item_lease_idx"): BEFORE_RELEASE,
    ("queues", "0006_claim_order_indexes", "AddIndex item_queue_work_idx"): BEFORE_RELEASE,
    ("queues", "0006_claim_order_indexes", "AddIndex item_queue_due_idx"): BEFORE_RELEASE,
    ("queues", "0006_claim_order_indexes", "AddIndex item_queue_fifo_idx"): BEFORE_RELEASE,
    ("queues", "0007_wellness_and_bulk_decisions", "AddField batch_id (an index)"): BEFORE_RELEASE,
    ("queues", "0007_wellness_and_bulk_decisions", "AddIndex itemevent_actor_at_idx"): BEFORE_RELEASE,
}


def _concurrent_sql(text: str) -> bool:
    return bool(re.search(r"\bCONCURRENTLY\b", text, re.IGNORECASE))


def _walk(operations: list[Any]) -> Iterator[Any]:
    for operation in operations:
        if isinstance(operation, migrations.SeparateDatabaseAndState):
            yield from _walk(operation.database_operations)
        else:
            yield operation


def _indexed(field: Any) -> bool:
    return bool(getattr(field, "db_index", False) or getattr(field, "unique", False))


def blocking_index_builds() -> Iterator[tuple[str, str, str]]:
    """(app, migration, what) of every operation that builds an index on a hot table without CONCURRENTLY."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    for (app, name), migration in sorted(loader.disk_migrations.items()):
        if app not in APPS:
            continue
        # A table made by this very migration is empty while its indexes are built: nothing waits on it.
        created = {op.name.lower() for op in _walk(migration.operations) if isinstance(op, migrations.CreateModel)}
        for operation in _walk(migration.operations):
            model = str(getattr(operation, "model_name", None) or getattr(operation, "name", "")).lower()
            hot = (app, model) in HOT and model not in created
            if isinstance(operation, AddIndexConcurrently):
                assert not migration.atomic, f"{app}.{name}: a concurrent index build needs atomic = False"
                continue
            if isinstance(operation, migrations.AddIndex) and hot:
                yield app, name, f"AddIndex {operation.index.name}"
            elif isinstance(operation, migrations.AddConstraint) and hot:
                if not isinstance(operation.constraint, models.CheckConstraint):  # unique, exclusion: an index
                    yield app, name, f"AddConstraint {operation.constraint.name}"
            elif isinstance(operation, migrations.AddField | migrations.AlterField) and hot:
                if _indexed(operation.field):
                    yield app, name, f"{type(operation).__name__} {operation.name} (an index)"
            elif isinstance(operation, migrations.AlterUniqueTogether | migrations.AlterIndexTogether) and hot:
                yield app, name, f"{type(operation).__name__} {operation.name}"
            elif isinstance(operation, migrations.RunSQL):
                statements = operation.sql if isinstance(operation.sql, list | tuple) else [operation.sql]
                for statement in map(str, statements):
                    built = re.search(r"CREATE\s+(UNIQUE\s+)?INDEX\b.*?\bON\s+\"?(\w+)", statement, re.I | re.S)
                    if built and built.group(2) in HOT_TABLES and not _concurrent_sql(statement):
                        yield app, name, f"RunSQL CREATE INDEX on {built.group(2)}"


def test_no_migration_builds_a_blocking_index_on_a_hot_table() -> None:
    found = list(blocking_index_builds())
    unexpected = [entry for entry in found if entry not in ALLOWED]
    assert not unexpected, (
        "Build indexes on hot tables with AddIndexConcurrentlyOnPostgreSQL in a migration with atomic = False "
        f"(ops_platform/core/migration_operations.py): {unexpected}"
    )
    stale = [entry for entry in ALLOWED if entry not in found]
    assert not stale, f"allow-listed operations that no migration has any more: {stale}"


def test_the_walk_catches_a_plain_add_index_on_a_hot_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """The detector itself: a made-up migration with a plain AddIndex on the items table is found."""
    fake = migrations.Migration("9999_plain_index", "queues")
    fake.operations = [migrations.AddIndex("reviewitem", models.Index(fields=["surface"], name="x_idx"))]
    real = MigrationLoader.load_disk

    def load_disk(self: MigrationLoader) -> None:
        real(self)
        self.disk_migrations["queues", "9999_plain_index"] = fake

    monkeypatch.setattr(MigrationLoader, "load_disk", load_disk)
    assert ("queues", "9999_plain_index", "AddIndex x_idx") in set(blocking_index_builds())
