"""The app's API routes, included under /api/integrations/ by core/urls.py."""

from django.urls import URLPattern, path

from integrations.sync import api

urlpatterns: list[URLPattern] = [
    path("connections/<str:connection_id>/sync", api.SyncNowView.as_view()),
    path("connections/<str:connection_id>/runs", api.RunListView.as_view()),
    path("connections/<str:connection_id>/records", api.RecordFeedView.as_view()),
    path("connections/<str:connection_id>/streams", api.StreamListView.as_view()),
    path(
        "connections/<str:connection_id>/streams/<str:stream>/reset",
        api.StreamResetView.as_view(),
    ),
]
