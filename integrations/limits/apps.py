from django.apps import AppConfig


class LimitsConfig(AppConfig):
    name = "integrations.limits"
    label = "limits"
    verbose_name = "Vendor rate limits and circuit breakers"
