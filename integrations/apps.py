from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"

    def ready(self) -> None:
        from core import prometheus
        from core.runtime import scheduling
        from integrations.webhooks import prometheus as webhook_metrics
        from integrations.webhooks.delivery import prune

        scheduling.pruning.connect(prune, dispatch_uid="integrations-deliveries")
        prometheus.collecting.connect(webhook_metrics.families, dispatch_uid="integrations")
