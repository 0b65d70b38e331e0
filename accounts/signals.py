"""Signals other apps may listen to (``accounts`` never imports them)."""

from django.dispatch import Signal

# Sent with ``app`` (an EntraApp) and ``error`` (an EntraError) when Entra ID's token endpoint,
# or our own key ring, says that the account's stored app credentials no longer work.
app_credentials_rejected = Signal()
