"""Access tokens from a stored MSAL token cache, refreshed with its refresh token when needed;
and the client-credentials check of an app's credentials before anyone signs in."""

from __future__ import annotations

from dataclasses import dataclass, field

import jwt
import msal

from lib.entra.errors import EntraRejected, InvalidIdToken, Remedy, error_from_response
from lib.entra.http import application, log_failure, msal_errors
from lib.entra.id_token import validate_id_token
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
    signed_in_as = _identity(cache, account)
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
    if result.get("id_token"):
        _check_refreshed_identity(result["id_token"], signed_in_as, credentials.client_id, tenant)
    return SilentToken(
        access_token=Secret(result["access_token"]),
        token_cache=Secret(cache.serialize()) if cache.has_state_changed else None,
    )


_IDENTITY_CLAIMS = ("oid", "sub", "tid", "iss")


def _identity(cache: msal.SerializableTokenCache, account: dict) -> dict[str, str]:
    """Who the stored tokens were issued to: the claims of the id token MSAL cached with them
    (validated when they were issued)."""
    id_tokens = cache.search(
        msal.TokenCache.CredentialType.ID_TOKEN,
        query={"home_account_id": account["home_account_id"]},
    )
    for entry in id_tokens:
        claims = jwt.decode(entry["secret"], options={"verify_signature": False})
        return {name: str(claims.get(name, "")) for name in _IDENTITY_CLAIMS}
    return {}


def _check_refreshed_identity(
    id_token: str, signed_in_as: dict[str, str], client_id: str, tenant: str
) -> None:
    """A refresh's id token is checked as a sign-in's is (OIDC Core 12.2), and must name the
    same person in the same tenant as the stored one; otherwise nothing of it is kept."""
    try:
        claims = validate_id_token(id_token, client_id=client_id, tenant=tenant)
    except InvalidIdToken as invalid:
        log_failure("refresh", f"refreshed_{invalid.code}", client_id=client_id)
        raise EntraRejected(code="refreshed_id_token_invalid", remedy=Remedy.REAUTHORIZE) from None
    refreshed = {name: str(claims.get(name, "")) for name in _IDENTITY_CLAIMS}
    if not signed_in_as or refreshed != signed_in_as:
        changed = sorted(n for n in _IDENTITY_CLAIMS if refreshed[n] != signed_in_as.get(n))
        log_failure("refresh", "identity_changed", client_id=client_id, claims=",".join(changed))
        raise EntraRejected(code="refreshed_identity_changed", remedy=Remedy.REAUTHORIZE)


def check_app_credentials(credentials: AppCredentials, *, scope: str) -> None:
    """A client-credentials token request for ``scope`` (a ``{resource}/.default``) on the
    credentials' tenant: Entra ID checks the client id, the secret and the resource there,
    without anybody signing in. The token is used for nothing and kept nowhere.

    Returns when Entra ID issued a token; raises what it answered otherwise (``EntraRejected``
    with the AADSTS code, ``EntraUnavailable`` for an outage).
    """
    log_fields = {"client_id": credentials.client_id, "tenant": credentials.tenant}
    msal_app = application(credentials.client_id, credentials.tenant, credentials=credentials)
    with msal_errors("client_credentials", **log_fields):
        result = msal_app.acquire_token_for_client([scope])
    if "error" in result:
        error = error_from_response(result, from_token_endpoint=True)
        log_failure(
            "client_credentials", error.code, correlation_id=error.correlation_id, **log_fields
        )
        raise error
    if not result.get("access_token"):
        log_failure("client_credentials", "no_access_token", **log_fields)
        raise EntraRejected(code="no_access_token")
