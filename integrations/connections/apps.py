from django.apps import AppConfig
from django.core.signals import setting_changed


class ConnectionsConfig(AppConfig):
    name = "integrations.connections"
    label = "connections"
    verbose_name = "Integration connections, credentials and sync"

    def ready(self) -> None:
        from integrations.connections import keyring

        # The encrypted fields cache their keys: a change of FERNET_KEYS must reach them.
        setting_changed.connect(keyring.forget_cached_keys, dispatch_uid="fernet_keys_changed")
