"""The app's API routes, included under /api/integrations/ by core/urls.py."""

from django.urls import URLPattern, path

from integrations.health import api

urlpatterns: list[URLPattern] = [
    path("health", api.HealthListView.as_view(), name="api-integration-health"),
    path("connections/<str:connection_id>/health", api.ConnectionHealthView.as_view()),
    path("connections/<str:connection_id>/probe", api.ProbeNowView.as_view()),
]
