"""An instance's state as JSON text (a tick rewrites it for every due instance: PostgreSQL's
parsing it into jsonb and printing it back was a third of the UPDATE, for no query inside it),
and no index on its rule alone (alert_instance_once, on rule and key, serves those lookups)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("alerting", "0003_instance_fillfactor")]

    operations = [
        migrations.AlterField(
            model_name="alertinstance",
            name="rule",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="instances",
                to="alerting.alertrule",
            ),
        ),
        migrations.AlterField(
            model_name="alertinstance",
            name="state",
            field=models.TextField(
                help_text="The evaluator's InstanceState, as encode_state gives it."
            ),
        ),
    ]
