from django.apps import AppConfig


class AlertingConfig(AppConfig):
    name = "observability.alerting"
    label = "alerting"
    verbose_name = "Alerting"

    def ready(self) -> None:
        from core.runtime import scheduling
        from observability.alerting import services

        scheduling.pruning.connect(services.prune_history, dispatch_uid="alerting-history")
