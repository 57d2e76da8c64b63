from django.db import migrations


def leave_room_for_hot_updates(apps, schema_editor):
    # Taking and releasing a lease change no indexed column; with free room on the page
    # PostgreSQL updates the row in place (HOT) instead of touching every index.
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE core_message SET (fillfactor = 70)")


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial")]
    operations = [migrations.RunPython(leave_room_for_hot_updates, migrations.RunPython.noop)]
