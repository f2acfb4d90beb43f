"""An index on ItemEvent.at for the analytics rollups, which recompute a day at a time.

The events table is the largest in the schema; on PostgreSQL the index is built CONCURRENTLY so writes to it
(every claim and decision) are not blocked while it builds. SQLite (the embedded demo) builds it plainly.
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgreSQL(AddIndexConcurrently):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("queues", "0008_item_is_golden"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="itemevent",
            index=models.Index(fields=["at"], name="itemevent_at_idx"),
        ),
    ]
