"""Skips and reservations that end.

``ItemSkip``: who skipped which item until when, so claim-next gives a skipped item to others first (one probe of
its unique (item, reviewer) index per candidate row). ``ReviewItem.reserved_until``: when an escalation to a named
colleague stops being theirs alone; items reserved before this migration get the configured reservation from now,
so none stays reserved for good.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone


def reservations_bound(apps, schema_editor):  # type: ignore[no-untyped-def]
    ReviewItem = apps.get_model("queues", "ReviewItem")
    ReviewItem.objects.filter(reserved_for__isnull=False, reserved_until__isnull=True).update(
        reserved_until=timezone.now() + settings.ESCALATION_RESERVATION
    )


class Migration(migrations.Migration):
    dependencies = [
        ("queues", "0013_lean_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="reviewitem",
            name="reserved_until",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name="ItemSkip",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("until", models.DateTimeField()),
                (
                    "item",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="queues.reviewitem",
                    ),
                ),
                (
                    "reviewer",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "indexes": [models.Index(fields=["until"], name="itemskip_until_idx")],
                "constraints": [
                    models.UniqueConstraint(fields=("item", "reviewer"), name="itemskip_unique_item_reviewer")
                ],
            },
        ),
        migrations.RunPython(reservations_bound, migrations.RunPython.noop, elidable=True),
    ]
