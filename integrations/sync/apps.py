from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "integrations.sync"
    label = "sync"
    verbose_name = "Incremental sync of vendor records"
