from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "integrations.health"
    label = "health"
    verbose_name = "Vendor health probes"

    def ready(self) -> None:
        from core import prometheus
        from integrations.health import prometheus as health_metrics

        prometheus.collecting.connect(health_metrics.families, dispatch_uid="health")
