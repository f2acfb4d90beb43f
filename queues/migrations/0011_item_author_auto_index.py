"""A partial index on auto-actioned items by (source, author_ref), for author history at triage.

Triage counts the auto-actioned items of each batch's authors; the only indexes it could use read every item of
those authors. On PostgreSQL the index is built CONCURRENTLY so intake and triage are not blocked while it builds.
"""

from django.db import migrations, models

from ops_platform.core.migration_operations import AddIndexConcurrentlyOnPostgreSQL


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
