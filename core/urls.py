from django.contrib import admin
from django.urls import path

from core import api
from observability.api import MetricSeriesView, OtlpView, TraceDetailView, TraceListView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/events", api.EventCreateView.as_view(), name="api-events"),
    path("v1/traces", OtlpView.as_view(signal="traces"), name="otlp-traces"),
    path("v1/metrics", OtlpView.as_view(signal="metrics"), name="otlp-metrics"),
    path("v1/logs", OtlpView.as_view(signal="logs"), name="otlp-logs"),
    path("api/traces", TraceListView.as_view(), name="api-traces"),
    path("api/traces/<str:trace_id>", TraceDetailView.as_view(), name="api-trace"),
    path("api/metrics/series", MetricSeriesView.as_view(), name="api-metric-series"),
    path("api/health/workers", api.WorkerHealthView.as_view(), name="api-health-workers"),
]
