from django.contrib import admin
from django.urls import path

from core import api, prometheus
from integrations import api as webhooks
from observability.api import (
    LogListView,
    MetricSeriesView,
    OtlpView,
    TraceDetailView,
    TraceListView,
)

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
    path("api/health/workers", api.WorkerHealthView.as_view(), name="api-health-workers"),
    path("metrics", prometheus.metrics, name="metrics"),
    # The OpenAPI schema of all of the above (core/openapi.py), and its docs page: both open.
    path("api/schema", api.SchemaView.as_view(), name="api-schema"),
    path("api/docs", api.DocsView.as_view(), name="api-docs"),
]

# Django's error pages, in the API's encoding under /api and /v1 (core/middleware.py).
handler400 = "core.middleware.bad_request"
handler500 = "core.middleware.server_error"
