"""Issue 19: the classifier pages' figures are cached per rewrite of the rollups; the cursor row (one row) counts
the rewrites."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("analytics", "0007_ops_received_daily"),
    ]

    operations = [
        migrations.AddField(
            model_name="classifierrollupcursor",
            name="generation",
            field=models.BigIntegerField(default=0),
        ),
    ]
