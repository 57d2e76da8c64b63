from django.contrib import admin
from django.urls import path

from core import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/events", api.EventCreateView.as_view(), name="api-events"),
    path("api/health/workers", api.WorkerHealthView.as_view(), name="api-health-workers"),
]
