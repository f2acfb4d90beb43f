"""Fewer indexes on the tables intake and triage write for every item (bench/e2e.py: PostgreSQL's share of the CPU).

Dropped, since a wider index leads with the same column: reviewitem.source (the unique (source, external_id)),
reviewitem.queue (item_queue_work_idx), itemevent.item and .actor ((item, at) and (actor, at)).
reviewitem.author_ref's two indexes become one on (author_ref, source), which is how it is looked up (its LIKE index
served no query), and the partial index of auto-actioned items by author (0011) now leads with author_ref too:
triage asks for ``author_ref IN (a batch's authors)``, which PostgreSQL before 17 applies as a filter when it is not
the leading column, reading every item of the source for each batch. The item's assignee, reserved_for and
appeal_of, empty on most rows, are indexed only where set. The new indexes are built first, CONCURRENTLY, then the
old ones dropped CONCURRENTLY, so neither intake nor triage waits and no query goes without its index.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from ops_platform.core.migration_operations import (
    AddIndexConcurrentlyOnPostgreSQL,
    DropIndexesConcurrentlyOnPostgreSQL,
    RemoveIndexConcurrentlyOnPostgreSQL,
)


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("queues", "0012_decision_vendor"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="reviewitem",
            index=models.Index(fields=["author_ref", "source"], name="item_author_idx"),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="reviewitem",
            index=models.Index(
                condition=models.Q(("state", "auto_actioned")),
                fields=["author_ref", "source"],
                name="item_auto_by_author_idx",
            ),
        ),
        RemoveIndexConcurrentlyOnPostgreSQL(model_name="reviewitem", name="item_author_auto_idx"),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="reviewitem",
            index=models.Index(
                condition=models.Q(("appeal_of__isnull", False)), fields=["appeal_of"], name="item_appeal_of_idx"
            ),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="reviewitem",
            index=models.Index(
                condition=models.Q(("assignee__isnull", False)), fields=["assignee"], name="item_assignee_idx"
            ),
        ),
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="reviewitem",
            index=models.Index(
                condition=models.Q(("reserved_for__isnull", False)),
                fields=["reserved_for"],
                name="item_reserved_for_idx",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="itemevent",
                    name="actor",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="itemevent",
                    name="item",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="queues.reviewitem",
                    ),
                ),
                migrations.AlterField(
                    model_name="reviewitem",
                    name="appeal_of",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="appeals",
                        to="queues.reviewitem",
                    ),
                ),
                migrations.AlterField(
                    model_name="reviewitem",
                    name="assignee",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="claimed_items",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="reviewitem",
                    name="author_ref",
                    field=models.CharField(blank=True, max_length=200),
                ),
                migrations.AlterField(
                    model_name="reviewitem",
                    name="queue",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="items",
                        to="queues.queue",
                    ),
                ),
                migrations.AlterField(
                    model_name="reviewitem",
                    name="reserved_for",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="reserved_items",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                migrations.AlterField(
                    model_name="reviewitem",
                    name="source",
                    field=models.SlugField(db_index=False, max_length=100),
                ),
            ],
            database_operations=[
                DropIndexesConcurrentlyOnPostgreSQL(
                    {
                        "queues_itemevent_actor_id_ee71747c": ("queues_itemevent", "actor_id", ""),
                        "queues_itemevent_item_id_6ae3bf5b": ("queues_itemevent", "item_id", ""),
                        "queues_reviewitem_appeal_of_id_d5f85277": ("queues_reviewitem", "appeal_of_id", ""),
                        "queues_reviewitem_assignee_id_2f69da9d": ("queues_reviewitem", "assignee_id", ""),
                        "queues_reviewitem_author_ref_2b562363": ("queues_reviewitem", "author_ref", ""),
                        "queues_reviewitem_author_ref_2b562363_like": (
                            "queues_reviewitem",
                            "author_ref",
                            "varchar_pattern_ops",
                        ),
                        "queues_reviewitem_queue_id_8406d323": ("queues_reviewitem", "queue_id", ""),
                        "queues_reviewitem_reserved_for_id_eeb8d088": ("queues_reviewitem", "reserved_for_id", ""),
                        "queues_reviewitem_source_1494b6ca": ("queues_reviewitem", "source", ""),
                        "queues_reviewitem_source_1494b6ca_like": (
                            "queues_reviewitem",
                            "source",
                            "varchar_pattern_ops",
                        ),
                    }
                )
            ],
        ),
    ]
