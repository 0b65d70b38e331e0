"""Start-up checks for the Entra ID settings (run by manage.py and by wsgi.py)."""

from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core import checks

# Entra ID allows http redirect URIs on these hosts only.
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


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
    base = urlsplit(settings.PUBLIC_BASE_URL)
    if not settings.DEBUG and base.scheme != "https" and base.hostname not in _LOOPBACK:
        messages.append(
            checks.Error(
                "PUBLIC_BASE_URL is not https while DEBUG is off.",
                hint="Entra ID accepts http redirect URIs for localhost only, and session "
                "cookies must not travel in clear: serve the app over https.",
                id="accounts.E003",
            )
        )
    if not settings.DEBUG and not settings.DEFAULT_FROM_EMAIL:
        messages.append(
            checks.Error(
                "DEFAULT_FROM_EMAIL is not set while DEBUG is off.",
                hint="Connection notices to admins need a sender address, e.g. "
                "DEFAULT_FROM_EMAIL=dynamics-connect@yourcompany.example, and EMAIL_URL for the "
                "SMTP server.",
                id="accounts.E004",
            )
        )
    if not settings.DEBUG and not settings.EMAIL_URL:
        messages.append(
            checks.Warning(
                "EMAIL_URL is not set while DEBUG is off: connection notices to admins are "
                "printed to the console instead of being sent.",
                hint="Set EMAIL_URL=smtp://user:password@smtp.example:587/?tls=True.",
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
