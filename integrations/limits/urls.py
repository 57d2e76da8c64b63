"""The app's API routes, included under /api/integrations/ by core/urls.py."""

from django.urls import URLPattern, path

from integrations.limits import api

urlpatterns: list[URLPattern] = [
    path("circuits", api.CircuitListView.as_view(), name="api-circuits"),
    path("circuits/<str:key>/isolate", api.IsolateCircuitView.as_view()),
    path("circuits/<str:key>/close", api.CloseCircuitView.as_view()),
    path("rate-buckets", api.RateBucketListView.as_view(), name="api-rate-buckets"),
]
