"""Items' full-text vectors move to their own table (``ItemSearchText``), written when an item is stored and when
its text changes, and the GIN index on the items' text goes: every UPDATE that moves an item is non-HOT, so that
index recomputed ``to_tsvector`` and added a GIN entry at triage, claim and decision (docs/performance.md).

PostgreSQL: two triggers keep the table (every writer at once: intake, QA's copies, COPY, the ORM); the vectors of
the items already held are written in batches of ids (each committed; a second pass takes the items stored
meanwhile); the GIN index is built on the filled table, then the old one is dropped CONCURRENTLY. SQLite (the
embedded demo) searches by substring: the table stays empty there and has no GIN index.
"""

import django.contrib.postgres.indexes
import django.contrib.postgres.search
import django.db.models.deletion
from django.db import migrations, models

from ops_platform.core.migration_operations import (
    AddIndexConcurrentlyOnPostgreSQLOnly,
    RemoveIndexConcurrentlyOnPostgreSQLOnly,
)

BATCH = 50_000
FILL = """INSERT INTO queues_itemsearchtext (item_id, vector)
SELECT id, to_tsvector('simple'::regconfig, text) FROM queues_reviewitem
WHERE id > %s AND id <= %s AND text <> '' AND content_purged_at IS NULL
ON CONFLICT (item_id) DO NOTHING"""


# One statement per INSERT (COPY included): the new rows as a transition table, one INSERT … SELECT for them all.
# The text changes only when content is purged or erased (to ''): the vector follows, or goes.
TRIGGERS = """
CREATE FUNCTION queues_item_search_text_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queues_itemsearchtext (item_id, vector)
    SELECT id, to_tsvector('simple'::regconfig, text) FROM new_items WHERE text <> ''
    ON CONFLICT (item_id) DO NOTHING;
    RETURN NULL;
END $$;
CREATE TRIGGER item_search_text_insert AFTER INSERT ON queues_reviewitem
REFERENCING NEW TABLE AS new_items FOR EACH STATEMENT EXECUTE FUNCTION queues_item_search_text_insert();

CREATE FUNCTION queues_item_search_text_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.text <> '' THEN
        INSERT INTO queues_itemsearchtext (item_id, vector)
        VALUES (NEW.id, to_tsvector('simple'::regconfig, NEW.text))
        ON CONFLICT (item_id) DO UPDATE SET vector = EXCLUDED.vector;
    ELSE
        DELETE FROM queues_itemsearchtext WHERE item_id = NEW.id;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER item_search_text_update AFTER UPDATE OF text ON queues_reviewitem
FOR EACH ROW WHEN (OLD.text IS DISTINCT FROM NEW.text) EXECUTE FUNCTION queues_item_search_text_update();
"""
TRIGGERS_DROP = """
DROP TRIGGER IF EXISTS item_search_text_update ON queues_reviewitem;
DROP FUNCTION IF EXISTS queues_item_search_text_update();
DROP TRIGGER IF EXISTS item_search_text_insert ON queues_reviewitem;
DROP FUNCTION IF EXISTS queues_item_search_text_insert();
"""


def triggers_create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGERS)


def triggers_drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TRIGGERS_DROP)


def vectors_fill(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    done = 0
    with schema_editor.connection.cursor() as cursor:
        for _ in range(2):  # the second pass: items stored while the first ran
            cursor.execute("SELECT coalesce(max(id), 0) FROM queues_reviewitem")
            last = cursor.fetchone()[0]
            for start in range(done, last, BATCH):
                cursor.execute(FILL, [start, min(start + BATCH, last)])
            done = last


class Migration(migrations.Migration):
    atomic = False  # batches committed one by one; CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("queues", "0027_item_author_id_and_strike_account_issued_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="ItemSearchText",
            fields=[
                (
                    "item",
                    models.OneToOneField(
                        db_constraint=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="search_text",
                        serialize=False,
                        to="queues.reviewitem",
                    ),
                ),
                ("vector", django.contrib.postgres.search.SearchVectorField()),
            ],
        ),
        migrations.RunPython(triggers_create, triggers_drop, elidable=False),
        migrations.RunPython(vectors_fill, migrations.RunPython.noop, elidable=False),
        AddIndexConcurrentlyOnPostgreSQLOnly(
            model_name="itemsearchtext",
            index=django.contrib.postgres.indexes.GinIndex(fields=["vector"], name="item_search_vector_idx"),
        ),
        RemoveIndexConcurrentlyOnPostgreSQLOnly(model_name="reviewitem", name="item_text_search_idx"),
    ]
