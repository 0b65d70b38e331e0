"""Start-up checks for the encryption keys (run by manage.py and by wsgi.py)."""

from django.conf import settings
from django.core import checks

from lib.crypto import validate_keys
from lib.dynamics import ENTITIES


@checks.register(checks.Tags.security)
def check_encryption_keys(app_configs, **kwargs) -> list[checks.CheckMessage]:
    return [
        checks.Error(
            problem,
            hint=(
                "Set FIELD_ENCRYPTION_KEYS to one or more comma-separated Fernet keys, newest "
                'first. Generate one with: python -c "from lib.crypto import generate_key; '
                'print(generate_key())"'
            ),
            id="connections.E001",
        )
        for problem in validate_keys(list(settings.FIELD_ENCRYPTION_KEYS))
    ]


@checks.register()
def check_required_tables(app_configs, **kwargs) -> list[checks.CheckMessage]:
    unknown = sorted(set(settings.DYNAMICS_REQUIRED_TABLES) - set(ENTITIES))
    if not unknown:
        return []
    return [
        checks.Error(
            f"DYNAMICS_REQUIRED_TABLES names tables a connection check cannot read: "
            f"{', '.join(unknown)}.",
            hint=f"Use entity set names among: {', '.join(ENTITIES)}.",
            id="connections.E002",
        )
    ]
