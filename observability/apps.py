from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    name = "observability"

    def ready(self) -> None:
        from core import prometheus
        from core.runtime import scheduling
        from observability import prometheus as ingest_metrics
        from observability import retention, services

        scheduling.pruning.connect(services.prune_batches, dispatch_uid="observability-batches")
        scheduling.pruning.connect(retention.prune, dispatch_uid="observability-retention")
        prometheus.collecting.connect(ingest_metrics.families, dispatch_uid="observability")
