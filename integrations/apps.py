from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"

    def ready(self) -> None:
        from core.runtime import scheduling
        from integrations import services

        scheduling.pruning.connect(services.prune, dispatch_uid="integrations-deliveries")
