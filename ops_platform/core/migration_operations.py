"""Migration operations the apps share.

``AddIndexConcurrentlyOnPostgreSQL`` builds an index without blocking writes to a large, busy table: on PostgreSQL
with ``CREATE INDEX CONCURRENTLY`` (the migration must say ``atomic = False``), on SQLite, the embedded demo, as a
plain ``CREATE INDEX``, since SQLite has no concurrent build and Django's ``AddIndexConcurrently`` refuses it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations


class AddIndexConcurrentlyOnPostgreSQL(AddIndexConcurrently):
    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)
