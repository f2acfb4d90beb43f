"""A partial index on auto-actioned items by (source, author_ref), for author history at triage.

Triage counts the auto-actioned items of each batch's authors; the only indexes it could use read every item of
those authors. On PostgreSQL the index is built CONCURRENTLY so intake and triage are not blocked while it builds.
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
        ("queues", "0010_reviewitem_nul_safe_content"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="reviewitem",
            index=models.Index(
                condition=models.Q(("state", "auto_actioned")),
                fields=["source", "author_ref"],
                name="item_author_auto_idx",
            ),
        ),
    ]
