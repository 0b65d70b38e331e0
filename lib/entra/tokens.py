"""Access tokens from a stored MSAL token cache, refreshed with its refresh token when needed."""

from __future__ import annotations

from dataclasses import dataclass, field

import msal

from lib.entra.errors import EntraRejected, Remedy, error_from_response
from lib.entra.http import application, log_failure, msal_errors
from lib.entra.types import AppCredentials
from lib.secret import Secret


@dataclass(frozen=True)
class SilentToken:
    """An access token from a stored cache; ``token_cache`` is the new serialized cache when
    MSAL changed it (a refresh happened), else None: save only when it is set."""

    access_token: Secret
    token_cache: Secret | None = field(default=None, repr=False)


def acquire_token_silently(
    credentials: AppCredentials,
    *,
    token_cache: Secret,
    scopes: tuple[str, ...],
    home_account_id: str = "",
    force_refresh: bool = False,
) -> SilentToken:
    """An access token from the cache, refreshed with the refresh token if needed.

    Raises ``EntraRejected`` with ``Remedy.REAUTHORIZE`` when there is no usable refresh
    token, or whatever Entra ID answered when the refresh or the app credentials no longer work.
    """
    cache = msal.SerializableTokenCache()
    cache.deserialize(token_cache.reveal() or None)
    cached = list(cache.search(msal.TokenCache.CredentialType.ACCOUNT))
    stored = next((a for a in cached if a.get("home_account_id") == home_account_id), None)
    stored = stored or (cached[0] if cached else None)
    if stored is None:
        raise EntraRejected(code="no_cached_account", remedy=Remedy.REAUTHORIZE)
    # MSAL files tokens under the authority that issued them (a signup's came from
    # /organizations): ask that same authority, or every call would refresh.
    tenant = stored.get("realm") or credentials.tenant
    msal_app = application(
        credentials.client_id, tenant, credentials=credentials, token_cache=cache
    )
    account = next(
        (a for a in msal_app.get_accounts() if a["home_account_id"] == stored["home_account_id"]),
        None,
    )
    if account is None:
        raise EntraRejected(code="no_cached_account", remedy=Remedy.REAUTHORIZE)
    log_fields = {"client_id": credentials.client_id}
    with msal_errors("refresh", **log_fields):
        result = msal_app.acquire_token_silent_with_error(
            list(scopes), account=account, force_refresh=force_refresh
        )
    if not result:
        raise EntraRejected(code="no_refresh_token", remedy=Remedy.REAUTHORIZE)
    if "error" in result:
        error = error_from_response(result, from_token_endpoint=True)
        log_failure("refresh", error.code, correlation_id=error.correlation_id, **log_fields)
        raise error
    return SilentToken(
        access_token=Secret(result["access_token"]),
        token_cache=Secret(cache.serialize()) if cache.has_state_changed else None,
    )
