from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "connections"

    def ready(self) -> None:
        from connections import (
            checks,  # noqa: F401 - registers the system checks
            health,  # noqa: F401 - listens to accounts' signals
        )
