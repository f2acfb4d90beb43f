# Decision.labels keeps its table; only Django's picture of it changes, to an explicit model whose foreign key
# to the label is PROTECT (a label some decision carries can no longer be deleted from under it).

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('core', '0006_retire_labels_and_actions'),
        ('queues', '0015_item_created_at'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='DecisionLabelLink',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('decision', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='queues.decision')),
                        ('decisionlabel', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='core.decisionlabel')),
                    ],
                    options={
                        'db_table': 'queues_decision_labels',
                        'unique_together': {('decision', 'decisionlabel')},
                    },
                ),
                migrations.AlterField(
                    model_name='decision',
                    name='labels',
                    field=models.ManyToManyField(blank=True, related_name='decisions', through='queues.DecisionLabelLink', to='core.decisionlabel'),
                ),
            ],
            database_operations=[],
        ),
    ]
