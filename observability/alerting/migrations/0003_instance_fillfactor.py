"""Every due instance's row is rewritten each tick: on PostgreSQL its table keeps half of each
page free, so an update that changes no indexed column writes the new row beside the old one
(a HOT update) instead of a new entry in each of its five indexes."""

from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def set_fillfactor(value: int | None):
    def apply(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        if schema_editor.connection.vendor != "postgresql":
            return
        table = apps.get_model("alerting", "AlertInstance")._meta.db_table
        if value is None:
            schema_editor.execute(f"ALTER TABLE {table} RESET (fillfactor)")
        else:
            schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {value})")

    return apply


class Migration(migrations.Migration):
    dependencies = [("alerting", "0002_rule_checked_at")]

    operations = [migrations.RunPython(set_fillfactor(50), set_fillfactor(None))]
