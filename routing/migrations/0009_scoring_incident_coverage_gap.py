# The child-safety coverage incident (issue 18): a new incident kind, and the time a standing incident resolves.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0008_media"),
    ]

    operations = [
        migrations.AddField(
            model_name="scoringincident",
            name="resolved_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="scoringincident",
            name="kind",
            field=models.CharField(
                choices=[
                    ("budget_spent", "Daily budget spent"),
                    ("circuit_open", "Circuit breaker opened"),
                    ("dead_letter", "Task dead-lettered"),
                    ("coverage_gap", "Child-safety guard has no score"),
                ],
                max_length=20,
            ),
        ),
    ]
