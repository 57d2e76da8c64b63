from django.contrib import admin
from django.urls import include, path

from core import api, prometheus
from integrations import api as webhooks
from observability.alerting import api as alerting
from observability.api import (
    LogListView,
    MetricSeriesView,
    OtlpView,
    TraceDetailView,
    TraceListView,
)
from observability.incidents import api as incidents

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/events", api.EventCreateView.as_view(), name="api-events"),
    path("v1/traces", OtlpView.as_view(signal="traces"), name="otlp-traces"),
    path("v1/metrics", OtlpView.as_view(signal="metrics"), name="otlp-metrics"),
    path("v1/logs", OtlpView.as_view(signal="logs"), name="otlp-logs"),
    path("api/traces", TraceListView.as_view(), name="api-traces"),
    path("api/traces/<str:trace_id>", TraceDetailView.as_view(), name="api-trace"),
    path("api/metrics/series", MetricSeriesView.as_view(), name="api-metric-series"),
    path("api/logs", LogListView.as_view(), name="api-logs"),
    path("api/webhooks/subscriptions", webhooks.SubscriptionListView.as_view()),
    path(
        "api/webhooks/subscriptions/<str:subscription_id>",
        webhooks.SubscriptionDetailView.as_view(),
    ),
    path(
        "api/webhooks/subscriptions/<str:subscription_id>/rotate-secret",
        webhooks.RotateSecretView.as_view(),
    ),
    path(
        "api/webhooks/subscriptions/<str:subscription_id>/deliveries",
        webhooks.DeliveryListView.as_view(),
    ),
    path(
        "api/webhooks/subscriptions/<str:subscription_id>/recover",
        webhooks.RecoverView.as_view(),
    ),
    path("api/webhooks/deliveries/<str:delivery_id>/redeliver", webhooks.RedeliverView.as_view()),
    path("api/incidents", incidents.IncidentListView.as_view(), name="api-incidents"),
    path("api/incidents/<str:incident_id>", incidents.IncidentDetailView.as_view()),
    path("api/incidents/<str:incident_id>/acknowledge", incidents.AcknowledgeView.as_view()),
    path("api/incidents/<str:incident_id>/resolve", incidents.ResolveView.as_view()),
    path("api/incidents/<str:incident_id>/comments", incidents.CommentView.as_view()),
    path("api/alerts/rules", alerting.RuleListView.as_view(), name="api-alert-rules"),
    path("api/alerts/rules/preview", alerting.RulePreviewView.as_view()),
    path("api/alerts/rules/<str:rule_id>", alerting.RuleDetailView.as_view()),
    path("api/alerts/rules/<str:rule_id>/revisions", alerting.RevisionListView.as_view()),
    path("api/alerts/instances", alerting.InstanceListView.as_view()),
    path("api/alerts/changes", alerting.ChangeListView.as_view()),
    path("api/alerts/silences", alerting.SilenceListView.as_view()),
    path("api/alerts/silences/preview", alerting.SilencePreviewView.as_view()),
    path("api/alerts/silences/<str:silence_id>", alerting.SilenceDetailView.as_view()),
    path("api/slos", alerting.SloListView.as_view(), name="api-slos"),
    path("api/slos/<str:slo_id>", alerting.SloDetailView.as_view()),
    path("api/slos/<str:slo_id>/status", alerting.SloStatusView.as_view()),
    path("api/integrations/", include("integrations.connections.urls")),
    path("api/integrations/", include("integrations.limits.urls")),
    path("api/integrations/", include("integrations.failures.urls")),
    path("api/integrations/", include("integrations.sync.urls")),
    path("api/integrations/", include("integrations.health.urls")),
    path("api/health/workers", api.WorkerHealthView.as_view(), name="api-health-workers"),
    path("metrics", prometheus.metrics, name="metrics"),
    # The OpenAPI schema of all of the above (core/openapi.py), and its docs page: both open.
    path("api/schema", api.SchemaView.as_view(), name="api-schema"),
    path("api/docs", api.DocsView.as_view(), name="api-docs"),
]

# Django's error pages, in the API's encoding under /api and /v1 (core/middleware.py).
handler400 = "core.middleware.bad_request"
handler500 = "core.middleware.server_error"
