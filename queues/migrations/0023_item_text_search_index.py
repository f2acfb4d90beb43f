"""A GIN index on the items' text as a ``tsvector`` (``queues.models.TEXT_SEARCH_VECTOR``), for the investigation
search's full-text queries.

PostgreSQL only, built CONCURRENTLY so intake and triage keep writing while it builds (minutes on a large table);
SQLite (the embedded demo) has no such index and searches by substring.
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
from django.db import migrations

from ops_platform.core.migration_operations import AddIndexConcurrentlyOnPostgreSQLOnly


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("queues", "0022_accounts_strikes_labels_actions"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQLOnly(
            model_name="reviewitem",
            index=django.contrib.postgres.indexes.GinIndex(
                django.contrib.postgres.search.SearchVector("text", config="simple"),
                name="item_text_search_idx",
            ),
        ),
    ]
