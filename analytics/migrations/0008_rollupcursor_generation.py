# The rollup cursor counts its generations: panels cached from the rollups are keyed by it (issue 19: the
# operations page rebuilt every panel per request), so any refresh or rebuild of the rollups invalidates them.
# A column with a constant default on a one-row table: no table rewrite, no index.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("analytics", "0007_ops_received_daily")]

    operations = [
        migrations.AddField(model_name="rollupcursor", name="generation", field=models.BigIntegerField(default=0)),
    ]
