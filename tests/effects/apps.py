from django.apps import AppConfig


class EffectsConfig(AppConfig):
    name = "tests.effects"
    label = "effects"
