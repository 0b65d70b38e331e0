"""The plain words for every failure of Entra ID, per reader, and the remedy each code implies.

One table keyed by AADSTS code. Each row has the ``Remedy`` the code implies and the words for
an admin fixing the connection; a row gives words for a person signing in only where they
differ: a member cannot change the app registration or re-authorize, so they are told whom to
ask. Codes not in the table keep the remedy that ``lib/entra`` read from the OAuth answer, and
get the words of that remedy. Placeholders: ``{client_id}``, ``{org_url}``, ``{redirect_uri}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from lib.entra import errors as entra_errors
from lib.entra.errors import EntraError, Remedy
from lib.entra.http import error_lookup_url


class Audience(StrEnum):
    SIGNING_IN = "person signing in"
    ADMIN = "admin fixing the connection"


@dataclass(frozen=True)
class _Row:
    remedy: Remedy
    admin: str
    signing_in: str = ""


_ASK_AN_ADMIN = (
    "Ask an admin of your account to re-authorize the Dynamics connection in Settings > "
    "Connections."
)
_MFA = _Row(
    Remedy.REAUTHORIZE,
    "Your organization requires additional verification. Re-authorize to complete it.",
    "Your organization requires additional verification. Sign in again and complete it at "
    "Microsoft; if it keeps failing, ask your Entra ID admin.",
)
_ADMIN_APPROVAL = _Row(
    Remedy.ASK_ADMIN, "An administrator must approve this app before you can use it."
)

_TABLE: dict[int, _Row] = {
    50011: _Row(
        Remedy.FIX_APP_CREDENTIALS,
        "The redirect URI is not registered on the Azure app. In the Azure portal open App "
        "registrations > your app > Authentication and add exactly {redirect_uri} as a Web "
        "redirect URI.",
        "This account's Azure app is missing a redirect URI, so nobody can sign in yet. Ask an "
        "admin of your account to add {redirect_uri} under Authentication in the Azure portal.",
    ),
    500112: _Row(
        Remedy.START_AGAIN,
        "The sign-in could not be completed (redirect mismatch). Please start again.",
    ),
    7000215: _Row(
        Remedy.FIX_APP_CREDENTIALS,
        "Microsoft rejected the Client Secret. Paste the secret's Value (not its Secret ID) "
        "from Certificates & secrets in the Azure portal.",
    ),
    7000222: _Row(
        Remedy.FIX_APP_CREDENTIALS,
        "The Client Secret has expired. Create a new secret under Certificates & secrets in "
        "the Azure portal and enter its Value here.",
    ),
    7000218: _Row(
        Remedy.FIX_APP_CREDENTIALS,
        "Microsoft received no Client Secret. Enter the secret's Value from Certificates & "
        "secrets.",
    ),
    700016: _Row(
        Remedy.FIX_APP_CREDENTIALS,
        "The application with Client Id {client_id} was not found in your organization's "
        "directory. Check the Client Id (Application (client) ID on the app's Overview page), "
        "or ask an Entra ID admin to consent to the app.",
    ),
    50194: _Row(
        Remedy.FIX_APP_CREDENTIALS,
        "The Azure app is registered for a single tenant. Set 'Supported account types' to "
        "'Accounts in any organizational directory' in the app's Authentication page.",
    ),
    65001: _Row(
        Remedy.ASK_ADMIN,
        "Consent is needed before this app can access Dynamics 365. Start again and accept "
        "the permissions, or ask an Entra ID admin to grant tenant-wide consent for 'Dynamics "
        "CRM user_impersonation'.",
        "Consent is needed before this app can be used. Start again and accept the "
        "permissions, or ask your Entra ID admin to grant consent for the app.",
    ),
    65004: _Row(
        Remedy.START_AGAIN,
        "You declined the permissions, so nothing was changed. The connection cannot work "
        "without them.",
        "You declined the permissions, so you were not signed in. Start again and accept them.",
    ),
    90094: _ADMIN_APPROVAL,
    90095: _ADMIN_APPROVAL,
    50105: _Row(
        Remedy.ASK_ADMIN,
        "Your account is not assigned to this application. Ask your Entra ID admin to assign "
        "you in Enterprise applications > the app > Users and groups.",
    ),
    50020: _Row(
        Remedy.ASK_ADMIN,
        "Your account is not part of this organization's Microsoft tenant. Sign in with a work "
        "account of the company, or ask its admin to invite you.",
    ),
    50034: _Row(
        Remedy.START_AGAIN,
        "Microsoft does not know that account. Check the e-mail address, or sign in with a "
        "work account of the company.",
    ),
    51004: _Row(Remedy.ASK_ADMIN, "Your account is not part of this organization's tenant."),
    500011: _Row(
        Remedy.FIX_APP_CREDENTIALS,
        "Dynamics 365 at {org_url} was not found in your Microsoft tenant. Check the "
        "Application Id URL (your Dynamics org URL, such as https://contoso.crm.dynamics.com) "
        "and that you sign in with an account of the org's tenant.",
    ),
    500014: _Row(
        Remedy.FIX_APP_CREDENTIALS,
        "Dynamics 365 at {org_url} is disabled in your Microsoft tenant (its service principal "
        "is turned off). Ask your Entra ID admin to enable it under Enterprise applications, or "
        "check the Application Id URL.",
    ),
    70011: _Row(
        Remedy.FIX_APP_CREDENTIALS,
        "The Application Id URL {org_url} does not look like a Dynamics 365 org. Check it, "
        "for example https://contoso.crm.dynamics.com.",
    ),
    650057: _Row(
        Remedy.FIX_APP_CREDENTIALS,
        "The Azure app has no permission to Dynamics 365. Under API permissions add Dynamics "
        "CRM > Delegated > user_impersonation and grant consent.",
    ),
    70008: _Row(
        Remedy.REAUTHORIZE,
        "The authorization expired before it was used, or was revoked. Re-authorize the "
        "Dynamics connection.",
        "The sign-in expired before it was used. Please start again.",
    ),
    700082: _Row(
        Remedy.REAUTHORIZE,
        "The Dynamics connection expired after a long time without use. Re-authorize it.",
    ),
    50173: _Row(
        Remedy.REAUTHORIZE,
        "Your Microsoft session was revoked (for example a password change). Re-authorize the "
        "Dynamics connection.",
        "Your Microsoft session was revoked (for example a password change). Sign in again.",
    ),
    50089: _Row(
        Remedy.REAUTHORIZE,
        "Your Microsoft session expired. Re-authorize the Dynamics connection.",
        "Your Microsoft session expired. Sign in again.",
    ),
    70043: _Row(
        Remedy.REAUTHORIZE,
        "Your organization requires signing in again. Re-authorize the Dynamics connection.",
        "Your organization requires signing in again. Please start again.",
    ),
    70000: _Row(Remedy.START_AGAIN, "The authorization was not valid. Please start again."),
    54005: _Row(Remedy.START_AGAIN, "This sign-in link was already used. Please start again."),
    501481: _Row(
        Remedy.START_AGAIN,
        "The sign-in could not be completed (verification failed). Please start again.",
    ),
    700005: _Row(
        Remedy.START_AGAIN,
        "The sign-in could not be completed (tenant mismatch). Please start again.",
    ),
    9002313: _Row(
        Remedy.REAUTHORIZE,
        "The stored authorization is not valid any more. Re-authorize the Dynamics connection.",
        "The sign-in could not be completed. Please start again.",
    ),
    90002: _Row(
        Remedy.ASK_ADMIN,
        "Microsoft does not know this organization's tenant. Check the tenant, or contact support.",
    ),
    50076: _MFA,
    50079: _MFA,
    53003: _Row(
        Remedy.ASK_ADMIN,
        "Your organization's Conditional Access policy blocked this sign-in. Ask your Entra ID "
        "admin.",
    ),
    50058: _Row(Remedy.START_AGAIN, "You are not signed in at Microsoft. Please start again."),
}

# Failures without an AADSTS code, by lib/entra's own code.
_CODES: dict[str, _Row] = {
    "flow_replayed": _Row(
        Remedy.START_AGAIN,
        "This link was already used, so nothing more was done. Please start again.",
    ),
    "scope_not_granted": _Row(
        Remedy.START_AGAIN,
        "Microsoft did not grant access to Dynamics 365. Start again and accept the permissions.",
    ),
    "auth_time": _Row(
        Remedy.START_AGAIN,
        "Changing the connection needs a sign-in at Microsoft from the last five minutes, and "
        "this one was older. Start again and sign in when Microsoft asks.",
    ),
    "refresh_token_not_granted": _Row(
        Remedy.START_AGAIN,
        "Microsoft did not issue a refresh token, so the connection would stop working within "
        "an hour. Start again and accept every permission; if it keeps happening, ask your "
        "Entra ID admin whether a policy withholds offline access from this app.",
    ),
    "refreshed_id_token_invalid": _Row(
        Remedy.REAUTHORIZE,
        "Microsoft's answer to a token refresh could not be verified, so nothing of it was "
        "kept. Re-authorize the Dynamics connection.",
    ),
    "refreshed_identity_changed": _Row(
        Remedy.REAUTHORIZE,
        "A token refresh named another user or tenant than the one this connection was "
        "authorized as, so nothing of it was kept. Re-authorize the Dynamics connection.",
    ),
    "no_cached_account": _Row(
        Remedy.REAUTHORIZE,
        "No stored sign-in was found for this connection. Re-authorize it.",
    ),
    "no_refresh_token": _Row(
        Remedy.REAUTHORIZE,
        "The stored authorization is gone. Re-authorize the Dynamics connection.",
    ),
    "undecryptable_secret": _Row(
        Remedy.FIX_APP_CREDENTIALS,
        "The stored client secret cannot be decrypted with the configured encryption keys. "
        "Re-authorize the connection to store it again.",
        "This account's Microsoft app credentials cannot be used right now. " + _ASK_AN_ADMIN,
    ),
    "undecryptable_token_cache": _Row(
        Remedy.REAUTHORIZE,
        "The stored sign-in of the connection cannot be decrypted with the configured "
        "encryption keys. Re-authorize the connection to store it again.",
    ),
}

# Failures by kind, when neither table names the code.
_KINDS: list[tuple[type[EntraError], _Row]] = [
    (
        entra_errors.SignInCancelled,
        _Row(
            Remedy.START_AGAIN,
            "You cancelled at Microsoft's sign-in page, so nothing was changed. Start again "
            "when you are ready.",
        ),
    ),
    (
        entra_errors.FlowExpired,
        _Row(
            Remedy.START_AGAIN,
            "This sign-in link has expired or was already used. Please start again from the "
            "beginning.",
        ),
    ),
    (
        entra_errors.EntraUnavailable,
        _Row(
            Remedy.RETRY,
            "Microsoft sign-in is temporarily unavailable or did not answer in time. Nothing "
            "was changed; try again in a few seconds.",
        ),
    ),
    (
        entra_errors.WrongTenant,
        _Row(
            Remedy.ASK_ADMIN,
            "You signed in with an account from another organization. Sign in with a work "
            "account of this company's Microsoft tenant, or ask its admin to invite you.",
        ),
    ),
    (
        entra_errors.InvalidIdToken,
        _Row(
            Remedy.START_AGAIN,
            "Microsoft's answer could not be verified, so you were not signed in. Please start "
            "again; if it keeps happening, contact support.",
        ),
    ),
]

_UNKNOWN = (
    "Microsoft refused the request ({code}). Please start again; if it keeps happening, give "
    "this code to your Entra ID admin."
)
_UNKNOWN_CREDENTIALS = {
    Audience.ADMIN: "Microsoft refused this app's credentials ({code}). Check the Client Id and "
    "Client Secret of the Azure app, then re-authorize.",
    Audience.SIGNING_IN: "Microsoft refused this account's app credentials ({code}). "
    + _ASK_AN_ADMIN,
}


@dataclass(frozen=True)
class Explanation:
    """What to tell a reader about a failure: the words, the remedy, and the reference."""

    message: str
    remedy: Remedy
    code: str
    correlation_id: str = ""
    lookup_url: str = ""
    cancelled: bool = False

    @property
    def breaks_the_app_credentials(self) -> bool:
        """The stored credentials or tokens no longer work (the connection needs an admin)."""
        return self.remedy in (Remedy.FIX_APP_CREDENTIALS, Remedy.REAUTHORIZE)


def _row(error: EntraError) -> _Row | None:
    if error.aadsts in _TABLE:
        return _TABLE[error.aadsts]
    if error.code in _CODES:
        return _CODES[error.code]
    return next((row for kind, row in _KINDS if isinstance(error, kind)), None)


def explain(
    error: EntraError,
    audience: Audience,
    *,
    client_id: str = "",
    org_url: str = "",
    redirect_uri: str = "",
) -> Explanation:
    """The words for ``error`` as ``audience`` should read them."""
    row = _row(error)
    remedy = row.remedy if row else error.remedy
    if row is None and remedy is Remedy.FIX_APP_CREDENTIALS:
        template = _UNKNOWN_CREDENTIALS[audience]
    elif row is None:
        template = _UNKNOWN
    elif audience is Audience.SIGNING_IN and row.signing_in:
        template = row.signing_in
    elif audience is Audience.SIGNING_IN and remedy is Remedy.FIX_APP_CREDENTIALS:
        template = f"Microsoft rejected this account's app credentials ({{code}}: {row.admin}) "
        template += _ASK_AN_ADMIN
    elif audience is Audience.SIGNING_IN and remedy is Remedy.REAUTHORIZE:
        template = "Your sign-in could not be completed ({code}). Please start again."
    else:
        template = row.admin
    message = template.format(
        code=error.code, client_id=client_id, org_url=org_url, redirect_uri=redirect_uri
    )
    return Explanation(
        message=message,
        remedy=remedy,
        code=error.code,
        correlation_id=error.correlation_id,
        lookup_url=error_lookup_url(error.aadsts),
        cancelled=isinstance(error, entra_errors.SignInCancelled),
    )
