from django.db import migrations, models


class Migration(migrations.Migration):
    """The console finds events by traceId and sourceId exactly, on indexes."""

    dependencies = [
        ("core", "0008_platform_counter_minutes"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["trace_id"], name="event_trace_id"),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["source_id"], name="event_source_id"),
        ),
    ]
