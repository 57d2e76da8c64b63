"""The database cache's table (settings.CACHES: `platform_cache`), so that `migrate` is the
whole of a release. Web and clusters share django-q2's cluster stats through it, and the API
answers 500 without it.

`createcachetable` makes each table of a DatabaseCache that does not exist yet, so this is safe
on a database where the table was made by hand (the release step before this migration), and
on a test database (Django's test runner makes it too). Reversing leaves the table: the cache
holds nothing a schema needs, and an older release expects it.
"""

from django.core.management import call_command
from django.db import migrations


def create_cache_tables(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("core", "0005_event_rate")]

    operations = [migrations.RunPython(create_cache_tables, migrations.RunPython.noop)]
