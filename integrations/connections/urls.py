"""The app's API routes, included under /api/integrations/ by core/urls.py."""

from django.urls import URLPattern, path

from integrations.connections import api

urlpatterns: list[URLPattern] = [
    path("connections", api.ConnectionListView.as_view(), name="api-integration-connections"),
    path("connections/<str:connection_id>", api.ConnectionDetailView.as_view()),
    path("credentials", api.CredentialListView.as_view(), name="api-integration-credentials"),
    # Before credentials/<id>: "rotate" is no credential's id.
    path("credentials/rotate", api.RotateView.as_view(), name="api-integration-rotate"),
    path("credentials/<str:credential_id>", api.CredentialDetailView.as_view()),
    path("credentials/<str:credential_id>/versions", api.VersionListView.as_view()),
    path("credentials/<str:credential_id>/rollback", api.RollbackView.as_view()),
    path("credentials/<str:credential_id>/policy", api.PolicyView.as_view()),
    path("providers", api.ProviderListView.as_view(), name="api-integration-providers"),
]
