from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "observability.incidents"
    label = "incidents"
    verbose_name = "Incidents"
