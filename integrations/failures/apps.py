from django.apps import AppConfig


class FailuresConfig(AppConfig):
    name = "integrations.failures"
    label = "failures"
    verbose_name = "Integration failures and their retries"

    def ready(self) -> None:
        from core import prometheus
        from core.runtime import scheduling
        from integrations.failures import prometheus as failure_metrics
        from integrations.failures.services import prune

        scheduling.pruning.connect(prune, dispatch_uid="integrations-failures")
        prometheus.collecting.connect(failure_metrics.families, dispatch_uid="failures")
