from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Platform"

    def ready(self) -> None:
        from core import lookups, telemetry  # noqa: F401 - lookups registers field__one_of
        from core.runtime import registry, scheduling

        registry.load()
        telemetry.configure()
        # Schedules are code: every migrate brings the django-q2 Schedule rows in line.
        post_migrate.connect(scheduling.sync_after_migrate, sender=self)
