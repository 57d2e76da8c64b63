from django.db import migrations, models


class Migration(migrations.Migration):
    """PlatformCounter counts each minute too (a ring of 120 slots); existing rows are the
    counts since the start (slot -1)."""

    dependencies = [
        ("core", "0007_platform_counter"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="platformcounter",
            name="platform_counter_once",
        ),
        migrations.AddField(
            model_name="platformcounter",
            name="slot",
            field=models.SmallIntegerField(default=-1),
        ),
        migrations.AddField(
            model_name="platformcounter",
            name="minute",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddConstraint(
            model_name="platformcounter",
            constraint=models.UniqueConstraint(
                fields=("metric", "labels", "slot"), name="platform_counter_slot_once"
            ),
        ),
    ]
