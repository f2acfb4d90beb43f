"""Decisions remember their reviewer's vendor at the time (``Decision.vendor``), so vendor figures and cost stay
with the vendor whose reviewer decided, whatever team the reviewer is in later.

Existing decisions take their reviewer's vendor now, the best that is known about them, in batches of ids that
each commit on their own (``atomic = False``), so a large table is not locked in one long transaction. The
column has no index of its own: analytics read vendors from rollups, and raw reads select by time first.
"""

import django.db.models.deletion
from django.db import migrations, models

BATCH = 50_000
BACKFILL = """
UPDATE queues_decision SET vendor_id = (
    SELECT team.vendor_id FROM core_reviewerprofile AS profile JOIN core_team AS team ON team.id = profile.team_id
    WHERE profile.user_id = queues_decision.reviewer_id
)
WHERE id >= %s AND id < %s AND vendor_id IS NULL
"""


def backfill(apps, schema_editor):  # type: ignore[no-untyped-def]
    Decision = apps.get_model("queues", "Decision")
    bounds = Decision.objects.aggregate(lo=models.Min("id"), hi=models.Max("id"))
    if bounds["lo"] is None:
        return
    with schema_editor.connection.cursor() as cursor:
        for start in range(bounds["lo"], bounds["hi"] + 1, BATCH):
            cursor.execute(BACKFILL, [start, start + BATCH])


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("core", "0005_alert_and_metrics_scopes"),
        ("queues", "0011_item_author_auto_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="decision",
            name="vendor",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="core.vendor",
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]
