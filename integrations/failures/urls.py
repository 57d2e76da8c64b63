"""The app's API routes, included under /api/integrations/ by core/urls.py."""

from django.urls import URLPattern, path

from integrations.failures import api

urlpatterns: list[URLPattern] = [
    path("failures", api.FailureListView.as_view(), name="api-integration-failures"),
    path("failures/bulk-retry", api.BulkRetryView.as_view()),
    path("failures/<str:failure_id>", api.FailureDetailView.as_view()),
    path("failures/<str:failure_id>/retry", api.RetryView.as_view()),
    path("failures/<str:failure_id>/acknowledge", api.AcknowledgeView.as_view()),
    path("failures/<str:failure_id>/ignore", api.IgnoreView.as_view()),
]
