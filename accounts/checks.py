"""Start-up checks for the Entra ID settings (run by manage.py and by wsgi.py)."""

from pathlib import Path

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security)
def check_entra_settings(app_configs, **kwargs) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    if not settings.ENTRA_AUTHORITY_HOST.startswith("https://"):
        messages.append(
            checks.Error(
                "ENTRA_AUTHORITY_HOST must be an https URL.",
                hint="MSAL refuses plain-http authorities; use https://login.microsoftonline.com.",
                id="accounts.E001",
            )
        )
    bundle = settings.ENTRA_CA_BUNDLE
    if bundle and not Path(bundle).is_file():
        messages.append(
            checks.Error(
                f"ENTRA_CA_BUNDLE points at {bundle}, which is not a readable file.",
                hint="Unset it to trust the system's CAs, or point it at a PEM file.",
                id="accounts.E002",
            )
        )
    if not settings.DEBUG and not settings.PUBLIC_BASE_URL.startswith("https://"):
        messages.append(
            checks.Warning(
                "PUBLIC_BASE_URL is not https while DEBUG is off.",
                hint="Entra ID only accepts http redirect URIs for localhost.",
                id="accounts.W001",
            )
        )
    if settings.DEBUG and not settings.ENTRA_AUTHORITY_HOST.startswith(
        "https://login.microsoftonline.com"
    ):
        messages.append(
            checks.Info(
                f"Using the Entra ID authority at {settings.ENTRA_AUTHORITY_HOST}.",
                id="accounts.I001",
            )
        )
    return messages
