"""Microsoft Entra ID through MSAL: the only module of the product that imports ``msal``.

Two entry points, in the style of Microsoft's ``identity`` package:

* ``start_flow`` builds the authorize URL of an auth-code flow (PKCE, state and nonce by MSAL)
  and keeps MSAL's flow dict in the session under ``FLOWS_SESSION_KEY``, keyed by its state,
  together with the flow's purpose, the already-validated ``next`` URL and a small context
  (which account, which pending signup). Nothing about the flow is ever read back from the
  callback's query string except ``state``, ``code`` and ``error``.
* ``pop_flow`` + ``redeem`` complete it: ``pop_flow`` removes the flow from the session (so a
  replayed callback finds nothing) and checks that the callback URL's ``identityOnly`` flag
  matches the stored purpose; ``redeem`` calls MSAL with the app's secret and validates the id
  token itself, because MSAL 1.39 only decodes it: RS256 signature against the authority's
  JWKS, ``aud``, ``iss``, ``tid``, ``exp``, ``nbf``, ``iat``, ``sub`` and ``oid``.

``acquire_token_silently`` refreshes a Dynamics access token from a stored token cache.

Every failure is raised as an ``EntraError`` subclass carrying a plain-language message that
says what to do next; MSAL's own exception zoo (ValueError, RuntimeError, JSONDecodeError,
IndexError, MsalServiceError, requests errors) never leaves this module. Log records carry the
AADSTS code and correlation id, never a secret, code or token.

MSAL application objects are cached per process, keyed by (client id, secret fingerprint,
authority), and all of them share one ``http_cache``, so discovery documents are fetched once
per process, not per login. Those cached objects keep no tokens (``_NoTokenCache``): flows that
must keep tokens (Dynamics authorization, silent refresh) get a short-lived application object
around that connection's own token cache, which costs no request thanks to the shared cache.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
import msal
import requests
from django.conf import settings
from django.http import HttpRequest

from bizible_site.sensitive import Secret

logger = logging.getLogger("dynamics_connect.auth")

FLOWS_SESSION_KEY = "entra.flows"
# States of flows already taken out, so that a replayed callback is recognised as one.
SPENT_FLOWS_SESSION_KEY = "entra.spent_flows"
MAX_FLOWS_PER_SESSION = 5
CLOCK_SKEW_SECONDS = 120
ORGANIZATIONS = "organizations"
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_AADSTS = re.compile(r"AADSTS(\d+)")
_CORRELATION = re.compile(r"Correlation ID: ([0-9a-fA-F-]{36})")
_CALLBACK_PARAMS = ("state", "code", "error", "error_description", "session_state", "client_info")


class Purpose(StrEnum):
    SIGNUP = "signup"
    SIGN_IN = "sign_in"
    REAUTHORIZE = "reauthorize"

    @property
    def identity_only(self) -> bool:
        return self is Purpose.SIGN_IN


def redirect_uri(*, identity_only: bool) -> str:
    """One of the two redirect URIs a customer registers; built from settings, never the Host."""
    base = f"{settings.PUBLIC_BASE_URL}/OAuth2"
    return f"{base}?identityOnly=true" if identity_only else base


def registered_redirect_uris() -> list[str]:
    return [redirect_uri(identity_only=False), redirect_uri(identity_only=True)]


def dynamics_scope(org_url: str) -> str:
    """The delegated Dynamics scope for an org URL (MSAL's cache works best with this one)."""
    return f"{org_url.rstrip('/')}/user_impersonation"


def is_tenant_id(value: str) -> bool:
    return bool(_GUID.match(value or ""))


# --- Errors ---------------------------------------------------------------------------------


class EntraError(Exception):
    """A failure to show to a person: ``message`` says what happened and what to do next.

    ``code`` is short and loggable (``AADSTS7000215``, ``access_denied``, ``state``,
    ``timeout``...). ``credentials_rejected`` says that the stored app credentials or tokens no
    longer work, so a stored connection needs re-authorization.
    """

    default_message = "Signing in with Microsoft did not work. Please start again."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str = "",
        correlation_id: str = "",
        credentials_rejected: bool = False,
    ) -> None:
        self.message = message or self.default_message
        self.code = code
        self.correlation_id = correlation_id
        self.credentials_rejected = credentials_rejected
        super().__init__(self.message)

    @property
    def lookup_url(self) -> str:
        """Microsoft's own page about an AADSTS code (its wording changes; ours may lag)."""
        return aadsts_lookup_url(self.code)


def aadsts_lookup_url(code: str) -> str:
    """Microsoft's page about an AADSTS code, on the authority's browser-facing origin."""
    number = code.removeprefix("AADSTS")
    if not (code.startswith("AADSTS") and number.isdigit()):
        return ""
    sign_in_page = _discovery_document(ORGANIZATIONS).get("authorization_endpoint", "")
    parts = urlsplit(str(sign_in_page))
    origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else settings.ENTRA_AUTHORITY_HOST
    return f"{origin}/error?code={number}"


class FlowExpired(EntraError):
    """No usable flow in this session: lost session, replay, forged or stale state.

    ``purpose`` and ``context`` tell, when the session still knows the flow (expired,
    already used, or answered on the wrong redirect URI), which flow it was.
    """

    default_message = (
        "This sign-in link has expired or was already used. Please start again from the beginning."
    )

    def __init__(
        self,
        message: str | None = None,
        *,
        purpose: Purpose | None = None,
        context: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.purpose = purpose
        self.context = dict(context or {})


class SignInCancelled(EntraError):
    default_message = (
        "You cancelled at Microsoft's sign-in page, so nothing was changed. Start again when "
        "you are ready."
    )


class EntraRejected(EntraError):
    """Entra ID answered with an error (an AADSTS code)."""


class EntraUnavailable(EntraError):
    default_message = (
        "Microsoft sign-in is temporarily unavailable or did not answer in time. Nothing was "
        "changed; try again in a few seconds."
    )


class InvalidIdToken(EntraError):
    default_message = (
        "Microsoft's answer could not be verified, so you were not signed in. Please start "
        "again; if it keeps happening, contact support."
    )


class CredentialsUnavailable(EntraError):
    """The account's stored app credentials cannot be used (e.g. no key opens them)."""

    default_message = (
        "This account's Microsoft app credentials cannot be used right now. Ask an admin of "
        "your account to re-authorize the Dynamics connection in Settings > Connections."
    )


class WrongTenant(InvalidIdToken):
    default_message = (
        "You signed in with an account from another organization. Sign in with a work account "
        "of this company's Microsoft tenant, or ask its admin to invite you."
    )


# Plain-language messages per AADSTS code. Placeholders: {client_id}, {redirect_uri},
# {org_url}. ``True`` marks codes that mean the app credentials or stored tokens no longer work.
_AADSTS_MESSAGES: dict[int, tuple[str, bool]] = {
    50011: (
        "The redirect URI is not registered on the Azure app. In the Azure portal open App "
        "registrations > your app > Authentication and add exactly {redirect_uri} as a Web "
        "redirect URI.",
        False,
    ),
    500112: ("The sign-in could not be completed (redirect mismatch). Please start again.", False),
    7000215: (
        "Microsoft rejected the Client Secret. Paste the secret's Value (not its Secret ID) "
        "from Certificates & secrets in the Azure portal.",
        True,
    ),
    7000222: (
        "The Client Secret has expired. Create a new secret under Certificates & secrets in "
        "the Azure portal and enter its Value here.",
        True,
    ),
    7000218: (
        "Microsoft received no Client Secret. Enter the secret's Value from Certificates & "
        "secrets.",
        True,
    ),
    700016: (
        "The application with Client Id {client_id} was not found in your organization's "
        "directory. Check the Client Id (Application (client) ID on the app's Overview page), "
        "or ask an Entra ID admin to consent to the app.",
        True,
    ),
    50194: (
        "The Azure app is registered for a single tenant. Set 'Supported account types' to "
        "'Accounts in any organizational directory' in the app's Authentication page.",
        False,
    ),
    65001: (
        "Consent is needed before this app can access Dynamics 365. Start again and accept "
        "the permissions, or ask an Entra ID admin to grant tenant-wide consent for 'Dynamics "
        "CRM user_impersonation'.",
        True,
    ),
    65004: (
        "You declined the permissions, so nothing was changed. The connection cannot work "
        "without them.",
        False,
    ),
    90094: ("An administrator must approve this app before you can use it.", False),
    90095: ("An administrator must approve this app before you can use it.", False),
    50105: (
        "Your account is not assigned to this application. Ask your Entra ID admin to assign "
        "you in Enterprise applications > the app > Users and groups.",
        False,
    ),
    50020: (
        "Your account is not part of this organization's Microsoft tenant. Sign in with a work "
        "account of the company, or ask its admin to invite you.",
        False,
    ),
    50034: (
        "Microsoft does not know that account. Check the e-mail address, or sign in with a "
        "work account of the company.",
        False,
    ),
    51004: ("Your account is not part of this organization's Microsoft tenant.", False),
    500011: (
        "Dynamics 365 at {org_url} was not found in your Microsoft tenant. Check the "
        "Application Id URL (your Dynamics org URL, such as https://contoso.crm.dynamics.com) "
        "and that you sign in with an account of the org's tenant.",
        False,
    ),
    70011: (
        "The Application Id URL {org_url} does not look like a Dynamics 365 org. Check it, "
        "for example https://contoso.crm.dynamics.com.",
        False,
    ),
    650057: (
        "The Azure app has no permission to Dynamics 365. Under API permissions add Dynamics "
        "CRM > Delegated > user_impersonation and grant consent.",
        True,
    ),
    70008: (
        "The authorization expired before it was used, or was revoked. Re-authorize the "
        "Dynamics connection.",
        True,
    ),
    700082: (
        "The Dynamics connection expired after a long time without use. Re-authorize it.",
        True,
    ),
    50173: (
        "Your Microsoft session was revoked (for example a password change). "
        "Re-authorize the Dynamics connection.",
        True,
    ),
    50089: ("Your Microsoft session expired. Re-authorize the Dynamics connection.", True),
    70043: (
        "Your organization requires signing in again. Re-authorize the Dynamics connection.",
        True,
    ),
    70000: ("The authorization was not valid. Please start again.", False),
    54005: ("This sign-in link was already used. Please start again.", False),
    501481: (
        "The sign-in could not be completed (verification failed). Please start again.",
        False,
    ),
    700005: ("The sign-in could not be completed (tenant mismatch). Please start again.", False),
    9002313: (
        "The stored authorization is not valid any more. Re-authorize the Dynamics connection.",
        True,
    ),
    90002: ("Microsoft does not know this tenant. Check the organization's tenant.", False),
    50076: (
        "Your organization requires additional verification. Re-authorize to complete it.",
        True,
    ),
    50079: (
        "Your organization requires additional verification. Re-authorize to complete it.",
        True,
    ),
    53003: (
        "Your organization's Conditional Access policy blocked this sign-in. Ask your "
        "Entra ID admin.",
        False,
    ),
    50058: ("You are not signed in at Microsoft. Please start again.", False),
}


def error_from_response(
    response: Mapping[str, Any], *, client_id: str = "", org_url: str = "", redirect: str = ""
) -> EntraError:
    """Turn an Entra error (redirect parameters or token-endpoint JSON) into an EntraError."""
    error = str(response.get("error", ""))
    description = str(response.get("error_description", ""))
    codes = response.get("error_codes") or [int(m) for m in _AADSTS.findall(description)[:1]]
    code = int(codes[0]) if codes else None
    correlation = str(response.get("correlation_id", "")) or next(
        iter(_CORRELATION.findall(description)), ""
    )
    if error == "access_denied" and code in (None, 65004):
        return SignInCancelled(code="access_denied", correlation_id=correlation)
    if code in _AADSTS_MESSAGES:
        template, rejected = _AADSTS_MESSAGES[code]
        message = template.format(client_id=client_id, org_url=org_url, redirect_uri=redirect)
        return EntraRejected(
            message,
            code=f"AADSTS{code}",
            correlation_id=correlation,
            credentials_rejected=rejected,
        )
    if error in {"temporarily_unavailable", "server_error"}:
        return EntraUnavailable(code=error, correlation_id=correlation)
    label = f"AADSTS{code}" if code else (error or "unknown_error")
    return EntraRejected(
        f"Microsoft refused the request ({label}). Please start again; if it keeps happening, "
        "give this code to your Entra ID admin.",
        code=label,
        correlation_id=correlation,
        credentials_rejected=error in {"invalid_client", "unauthorized_client", "invalid_grant"},
    )


# --- HTTP and MSAL application objects ------------------------------------------------------


class _EntraHttpClient:
    """The ``http_client`` MSAL uses: applies ENTRA_CA_BUNDLE and a timeout per request.

    Per request, because ``REQUESTS_CA_BUNDLE`` in the environment overrides a Session's own
    ``verify`` (see the facts file, section 2.2). Settings are read at call time.
    """

    def __init__(self) -> None:
        self._session = requests.Session()

    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs["timeout"] = settings.ENTRA_HTTP_TIMEOUT
        kwargs["verify"] = settings.ENTRA_CA_BUNDLE or True
        kwargs["allow_redirects"] = False
        return kwargs

    def get(self, url: str, params=None, headers=None, **kwargs):
        return self._session.get(url, params=params, headers=headers, **self._options(kwargs))

    def post(self, url: str, params=None, data=None, headers=None, **kwargs):
        return self._session.post(
            url, params=params, data=data, headers=headers, **self._options(kwargs)
        )

    def close(self) -> None:
        """Shared by every application object; never closed by one of them."""


class _NoTokenCache(msal.TokenCache):
    """A token cache that keeps nothing: sign-in must not hold tokens, and the cached
    application objects are shared by all users of an app registration."""

    def add(self, event, now=None) -> None:
        return None


_http_client = _EntraHttpClient()
_http_cache: dict = {}
_apps: OrderedDict[tuple[str, str, str], msal.ConfidentialClientApplication] = OrderedDict()
_apps_lock = threading.Lock()
_MAX_CACHED_APPS = 256
_fingerprint_key = secrets.token_bytes(32)
_jwks: dict[str, tuple[float, dict[str, Any]]] = {}
_discovery_documents: dict[str, tuple[float, dict[str, Any]]] = {}
# A kid we have not seen triggers one JWKS refetch (key rollover), at most this often.
_JWKS_MIN_REFETCH_SECONDS = 60


def reset_process_caches() -> None:
    """Forget cached application objects, discovery documents, throttling state and keys."""
    with _apps_lock:
        _apps.clear()
        _http_cache.clear()
        _jwks.clear()
        _discovery_documents.clear()


def authority_url(tenant: str) -> str:
    return f"{settings.ENTRA_AUTHORITY_HOST}/{tenant}"


def _instance_discovery() -> bool:
    """Instance discovery only helps on Microsoft's own hosts; elsewhere it would call out."""
    return settings.ENTRA_AUTHORITY_HOST == "https://login.microsoftonline.com"


def _build_app(
    client_id: str, client_secret: str, tenant: str, token_cache: msal.TokenCache
) -> msal.ConfidentialClientApplication:
    try:
        return msal.ConfidentialClientApplication(
            client_id,
            client_credential=client_secret,
            authority=authority_url(tenant),
            http_client=_http_client,
            http_cache=_http_cache,
            instance_discovery=_instance_discovery(),
            token_cache=token_cache,
        )
    except requests.RequestException as exc:
        _log_failure("discovery", exc.__class__.__name__, client_id=client_id)
        raise EntraUnavailable(code="timeout" if _is_timeout(exc) else "unreachable") from None
    except msal.exceptions.MsalServiceError:
        _log_failure("discovery", "http_5xx", client_id=client_id)
        raise EntraUnavailable(code="http_5xx") from None
    except ValueError:
        _log_failure("discovery", "AADSTS90002", client_id=client_id)
        raise EntraRejected(
            "Microsoft does not know this organization's tenant. Check the tenant, or contact "
            "support.",
            code="AADSTS90002",
        ) from None


def _cached_app(client_id: str, client_secret: str, tenant: str):
    fingerprint = hmac.new(_fingerprint_key, client_secret.encode(), hashlib.sha256).hexdigest()
    key = (client_id, fingerprint, authority_url(tenant))
    with _apps_lock:
        app = _apps.get(key)
        if app is not None:
            _apps.move_to_end(key)
            return app
    app = _build_app(client_id, client_secret, tenant, _NoTokenCache())
    with _apps_lock:
        _apps[key] = app
        while len(_apps) > _MAX_CACHED_APPS:
            _apps.popitem(last=False)
    return app


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, requests.Timeout)


def _log_failure(step: str, code: str, **fields: Any) -> None:
    logger.warning(
        "Entra ID %s failed",
        step,
        extra={"event": f"entra.{step}", "outcome": "failure", "code": code, **fields},
    )


# --- Starting and completing a flow ---------------------------------------------------------


@dataclass(frozen=True)
class AppRegistration:
    """The Entra ID app a flow runs on. ``client_secret`` stays wrapped until MSAL needs it."""

    client_id: str
    client_secret: Secret
    tenant: str = ORGANIZATIONS


@dataclass(frozen=True)
class StoredFlow:
    """A flow taken out of the session by ``pop_flow``."""

    purpose: Purpose
    client_id: str
    tenant: str
    scopes: list[str]
    next_url: str
    context: dict[str, Any]
    msal_flow: dict[str, Any] = field(repr=False)

    @property
    def org_url(self) -> str:
        return next((s.rsplit("/", 1)[0] for s in self.scopes if "/" in s), "")


@dataclass(frozen=True)
class SignInResult:
    """What a completed flow proved. ``token_cache`` is the serialized MSAL cache (CRM
    purposes only; empty for sign-in) and ``access_token`` the Dynamics token, if any."""

    tenant_id: str
    object_id: str
    username: str
    display_name: str
    email: str
    home_account_id: str
    access_token: Secret | None = None
    token_cache: str = field(default="", repr=False)


def start_flow(
    request: HttpRequest,
    *,
    purpose: Purpose,
    app: AppRegistration,
    scopes: list[str] | None = None,
    context: Mapping[str, Any] | None = None,
    next_url: str = "",
) -> str:
    """Begin an auth-code flow and return the URL to send the browser to.

    ``context`` must be JSON-serializable and hold identifiers only (no secrets): it comes
    back unchanged in ``StoredFlow.context``. ``next_url`` must already be validated.
    """
    scopes = list(scopes or [])
    msal_app = _cached_app(app.client_id, app.client_secret.reveal(), app.tenant)
    flow = msal_app.initiate_auth_code_flow(
        scopes, redirect_uri=redirect_uri(identity_only=purpose.identity_only)
    )
    flows = _live_flows(request)
    flows[flow["state"]] = {
        "purpose": purpose.value,
        "client_id": app.client_id,
        "tenant": app.tenant,
        "scopes": scopes,
        "next": next_url,
        "context": dict(context or {}),
        "started_at": time.time(),
        "flow": flow,
    }
    while len(flows) > MAX_FLOWS_PER_SESSION:
        flows.pop(next(iter(flows)))
    request.session[FLOWS_SESSION_KEY] = flows
    logger.info(
        "Entra ID flow started",
        extra={
            "event": "entra.flow_started",
            "purpose": purpose.value,
            "client_id": app.client_id,
            "tenant": app.tenant,
        },
    )
    return flow["auth_uri"]


def _live_flows(request: HttpRequest) -> dict[str, Any]:
    flows = request.session.get(FLOWS_SESSION_KEY) or {}
    oldest = time.time() - settings.AUTH_FLOW_TTL_MINUTES * 60
    return {state: f for state, f in flows.items() if f.get("started_at", 0) >= oldest}


def pop_flow(request: HttpRequest, *, identity_only: bool) -> StoredFlow:
    """Take the flow that this callback answers out of the session.

    Raises ``FlowExpired`` for a missing, stale, replayed or ambiguous callback, and for a
    callback whose ``identityOnly`` flag does not match the purpose the flow was started for
    (the flow is consumed either way, so it cannot be retried with the flag flipped).
    """
    for name in _CALLBACK_PARAMS:
        if len(request.GET.getlist(name)) > 1:
            _log_failure("callback", "duplicate_parameter", parameter=name)
            raise FlowExpired(code="duplicate_parameter")
    state = request.GET.get("state", "")
    stored_flows = request.session.get(FLOWS_SESSION_KEY) or {}
    entry = stored_flows.pop(state, None) if state else None
    if entry is None:
        spent = (request.session.get(SPENT_FLOWS_SESSION_KEY) or {}).get(state) if state else None
        _log_failure("callback", "replayed" if spent else "state")
        if spent:
            raise FlowExpired(
                "This link was already used, so nothing more was done. Please start again.",
                code="flow_replayed",
                purpose=Purpose(spent["purpose"]),
                context=spent["context"],
            )
        raise FlowExpired(code="state")
    request.session[FLOWS_SESSION_KEY] = stored_flows
    purpose = Purpose(entry["purpose"])
    spent_flows = request.session.get(SPENT_FLOWS_SESSION_KEY) or {}
    spent_flows[state] = {"purpose": purpose.value, "context": entry["context"]}
    request.session[SPENT_FLOWS_SESSION_KEY] = dict(
        list(spent_flows.items())[-MAX_FLOWS_PER_SESSION:]
    )
    if entry["started_at"] < time.time() - settings.AUTH_FLOW_TTL_MINUTES * 60:
        _log_failure("callback", "flow_expired")
        raise FlowExpired(code="flow_expired", purpose=purpose, context=entry["context"])
    if purpose.identity_only != identity_only:
        _log_failure("callback", "purpose_mismatch", purpose=purpose.value)
        raise FlowExpired(code="purpose_mismatch", purpose=purpose, context=entry["context"])
    return StoredFlow(
        purpose=purpose,
        client_id=entry["client_id"],
        tenant=entry["tenant"],
        scopes=entry["scopes"],
        next_url=entry["next"],
        context=entry["context"],
        msal_flow=entry["flow"],
    )


def redeem(
    flow: StoredFlow, callback_params: Mapping[str, str], *, client_secret: Secret
) -> SignInResult:
    """Exchange the callback's code for tokens (one token request) and validate the id token.

    For sign-in nothing is kept but the identity; for CRM purposes the result carries the
    serialized MSAL token cache and the Dynamics access token.
    """
    secret = client_secret.reveal()
    keep_tokens = not flow.purpose.identity_only
    if keep_tokens:
        token_cache: msal.TokenCache = msal.SerializableTokenCache()
        msal_app = _build_app(flow.client_id, secret, flow.tenant, token_cache)
    else:
        msal_app = _cached_app(flow.client_id, secret, flow.tenant)
    auth_response = {k: v for k, v in callback_params.items() if k in _CALLBACK_PARAMS}
    log_fields = {"purpose": flow.purpose.value, "client_id": flow.client_id}
    try:
        result = msal_app.acquire_token_by_auth_code_flow(dict(flow.msal_flow), auth_response)
    except json.JSONDecodeError:
        _log_failure("token", "invalid_json", **log_fields)
        raise EntraUnavailable(code="invalid_json") from None
    except ValueError:
        _log_failure("token", "state", **log_fields)
        raise FlowExpired(code="state") from None
    except RuntimeError:
        _log_failure("token", "nonce", **log_fields)
        raise InvalidIdToken(code="nonce") from None
    except requests.RequestException as exc:
        code = "timeout" if _is_timeout(exc) else "unreachable"
        _log_failure("token", code, **log_fields)
        raise EntraUnavailable(code=code) from None
    except msal.exceptions.MsalServiceError:
        _log_failure("token", "http_5xx", **log_fields)
        raise EntraUnavailable(code="http_5xx") from None
    except (IndexError, KeyError, TypeError, binascii.Error):
        _log_failure("token", "malformed_response", **log_fields)
        raise InvalidIdToken(code="malformed_response") from None

    if "error" in result:
        error = error_from_response(
            result,
            client_id=flow.client_id,
            org_url=flow.org_url,
            redirect=redirect_uri(identity_only=flow.purpose.identity_only),
        )
        if "error" in auth_response:
            # It came through the browser, where anyone can write it: it proves nothing about
            # the stored credentials (only the token endpoint can say those are wrong).
            error.credentials_rejected = False
        _log_failure("token", error.code, correlation_id=error.correlation_id, **log_fields)
        raise error

    claims = validate_id_token(
        result.get("id_token", ""), client_id=flow.client_id, tenant=flow.tenant
    )
    if keep_tokens:
        granted = set(str(result.get("scope", "")).split())
        if not result.get("access_token") or not set(flow.scopes) <= granted:
            _log_failure("token", "scope_not_granted", **log_fields)
            raise EntraRejected(
                "Microsoft did not grant access to Dynamics 365. Start again and accept the "
                "permissions.",
                code="scope_not_granted",
            )
    accounts = msal_app.get_accounts() if keep_tokens else []
    logger.info(
        "Entra ID flow completed",
        extra={
            "event": "entra.flow_completed",
            "outcome": "success",
            "tenant": claims["tid"],
            "oid": claims["oid"],
            **log_fields,
        },
    )
    return SignInResult(
        tenant_id=claims["tid"],
        object_id=claims["oid"],
        username=str(claims.get("preferred_username", "")),
        display_name=str(claims.get("name", "")),
        email=str(claims.get("email") or ""),
        home_account_id=accounts[0]["home_account_id"] if accounts else "",
        access_token=Secret(result["access_token"]) if keep_tokens else None,
        token_cache=token_cache.serialize() if keep_tokens else "",
    )


# --- id token validation --------------------------------------------------------------------


def validate_id_token(id_token: str, *, client_id: str, tenant: str) -> dict[str, Any]:
    """Check an id token as OpenID Connect Core 3.1.3.7 asks; return its claims.

    ``tenant`` is the flow's tenant: a GUID pins ``tid`` to it; ``organizations`` accepts any
    work tenant. The issuer must be exactly ``{ENTRA_AUTHORITY_HOST}/{tid}/v2.0``.
    """
    if not id_token:
        _log_failure("id_token", "missing", client_id=client_id)
        raise InvalidIdToken(code="id_token_missing")
    try:
        header = jwt.get_unverified_header(id_token)
        unverified = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        _log_failure("id_token", "malformed", client_id=client_id)
        raise InvalidIdToken(code="id_token_malformed") from None
    tid = str(unverified.get("tid", ""))
    if not is_tenant_id(tid):
        _log_failure("id_token", "tid", client_id=client_id)
        raise InvalidIdToken(code="id_token_tid")
    if header.get("alg") != "RS256":
        _log_failure("id_token", "alg", client_id=client_id)
        raise InvalidIdToken(code="id_token_alg")
    key = _signing_key(tenant, str(header.get("kid", "")))
    expected_issuer = f"{settings.ENTRA_AUTHORITY_HOST}/{tid}/v2.0"
    try:
        claims = jwt.decode(
            id_token,
            key=key,
            algorithms=["RS256"],
            audience=client_id,
            issuer=expected_issuer,
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["aud", "iss", "exp", "iat", "sub"]},
        )
    except jwt.InvalidAudienceError:
        return _reject_claim("aud", client_id)
    except jwt.InvalidIssuerError:
        return _reject_claim("iss", client_id)
    except jwt.ExpiredSignatureError:
        return _reject_claim("exp", client_id)
    except jwt.ImmatureSignatureError as exc:
        return _reject_claim("iat" if "(iat)" in str(exc) else "nbf", client_id)
    except jwt.InvalidSignatureError:
        return _reject_claim("signature", client_id)
    except jwt.PyJWTError:
        return _reject_claim("claims", client_id)
    if claims["aud"] != client_id or claims.get("azp", client_id) != client_id:
        return _reject_claim("aud", client_id)
    if not claims.get("oid"):
        return _reject_claim("oid", client_id)
    if is_tenant_id(tenant) and tid != tenant:
        _log_failure("id_token", "tenant_mismatch", client_id=client_id, tenant=tid)
        raise WrongTenant(code="tenant_mismatch")
    return claims


def _reject_claim(claim: str, client_id: str) -> dict[str, Any]:
    _log_failure("id_token", claim, client_id=client_id)
    raise InvalidIdToken(code=f"id_token_{claim}")


def _signing_key(tenant: str, kid: str) -> jwt.PyJWK:
    """The JWKS key with this ``kid``; refetches the key set once if the kid is new (rotation)."""
    jwks_uri = f"{authority_url(tenant)}/discovery/v2.0/keys"
    fetched_at, keys = _jwks.get(jwks_uri, (0.0, {}))
    if kid not in keys and time.time() - fetched_at > _JWKS_MIN_REFETCH_SECONDS:
        keys = _fetch_jwks(jwks_uri)
        _jwks[jwks_uri] = (time.time(), keys)
    if kid not in keys:
        _log_failure("id_token", "unknown_kid")
        raise InvalidIdToken(code="id_token_kid")
    return keys[kid]


def _fetch_jwks(jwks_uri: str) -> dict[str, jwt.PyJWK]:
    try:
        response = _http_client.get(jwks_uri)
        response.raise_for_status()
        key_set = jwt.PyJWKSet.from_dict(response.json())
    except requests.RequestException as exc:
        _log_failure("jwks", "timeout" if _is_timeout(exc) else "unreachable")
        raise EntraUnavailable(code="jwks_unreachable") from None
    except (ValueError, jwt.PyJWTError):
        _log_failure("jwks", "invalid_jwks")
        raise EntraUnavailable(code="jwks_invalid") from None
    return {key.key_id: key for key in key_set.keys if key.key_id}


# --- Silent token acquisition ---------------------------------------------------------------


@dataclass(frozen=True)
class SilentToken:
    """A Dynamics access token from a stored cache; ``token_cache`` is the new serialized
    cache when MSAL changed it (a refresh happened), else empty: save only when non-empty."""

    access_token: Secret
    token_cache: str = field(default="", repr=False)


def acquire_token_silently(
    app: AppRegistration,
    *,
    token_cache: str,
    scopes: list[str],
    home_account_id: str = "",
    force_refresh: bool = False,
) -> SilentToken:
    """Get an access token from the cache, refreshing it with the refresh token if needed.

    Raises ``EntraRejected`` with ``credentials_rejected`` when the refresh token or the app
    credentials no longer work (the connection needs re-authorization).
    """
    cache = msal.SerializableTokenCache()
    cache.deserialize(token_cache or None)
    cached = list(cache.search(msal.TokenCache.CredentialType.ACCOUNT))
    stored = next((a for a in cached if a.get("home_account_id") == home_account_id), None)
    stored = stored or (cached[0] if cached else None)
    if stored is None:
        raise EntraRejected(
            "No stored sign-in was found for this connection. Re-authorize it.",
            code="no_cached_account",
            credentials_rejected=True,
        )
    # MSAL files tokens under the authority that issued them (a signup's came from
    # /organizations): ask that same authority, or every call would refresh.
    tenant = stored.get("realm") or app.tenant
    msal_app = _build_app(app.client_id, app.client_secret.reveal(), tenant, cache)
    account = next(
        (a for a in msal_app.get_accounts() if a["home_account_id"] == stored["home_account_id"]),
        None,
    )
    if account is None:
        raise EntraRejected(
            "The stored sign-in does not match this connection's Microsoft tenant. "
            "Re-authorize it.",
            code="no_cached_account",
            credentials_rejected=True,
        )
    log_fields = {"client_id": app.client_id}
    try:
        result = msal_app.acquire_token_silent_with_error(
            scopes, account=account, force_refresh=force_refresh
        )
    except requests.RequestException as exc:
        code = "timeout" if _is_timeout(exc) else "unreachable"
        _log_failure("refresh", code, **log_fields)
        raise EntraUnavailable(code=code) from None
    except msal.exceptions.MsalServiceError:
        _log_failure("refresh", "http_5xx", **log_fields)
        raise EntraUnavailable(code="http_5xx") from None
    except ValueError:
        _log_failure("refresh", "invalid_json", **log_fields)
        raise EntraUnavailable(code="invalid_json") from None
    except (IndexError, KeyError, TypeError, binascii.Error):
        _log_failure("refresh", "malformed_response", **log_fields)
        raise EntraUnavailable(code="malformed_response") from None
    if not result:
        raise EntraRejected(
            "The stored authorization is gone. Re-authorize the Dynamics connection.",
            code="no_refresh_token",
            credentials_rejected=True,
        )
    if "error" in result:
        error = error_from_response(result, client_id=app.client_id)
        if result.get("error") == "invalid_grant":
            error.credentials_rejected = True
        _log_failure("refresh", error.code, correlation_id=error.correlation_id, **log_fields)
        raise error
    return SilentToken(
        access_token=Secret(result["access_token"]),
        token_cache=cache.serialize() if cache.has_state_changed else "",
    )


def sign_out_url(tenant: str, post_logout_redirect_uri: str) -> str:
    """Entra ID's end-session URL for this tenant, from its discovery document."""
    endpoint = _discovery_document(tenant).get("end_session_endpoint") or (
        f"{authority_url(tenant)}/oauth2/v2.0/logout"  # right for Entra ID itself
    )
    query = urlencode({"post_logout_redirect_uri": post_logout_redirect_uri})
    return f"{endpoint}?{query}"


def _discovery_document(tenant: str) -> dict[str, Any]:
    """The authority's OpenID configuration, fetched once per process (MSAL keeps its own copy
    for the flows; this one serves the browser-facing links). ``{}`` when unreachable, and
    then not asked again for a minute, so pages that only link to Entra ID stay fast."""
    authority = authority_url(tenant)
    fetched_at, document = _discovery_documents.get(authority, (0.0, None))
    if document is None or (not document and time.time() - fetched_at > 60):
        try:
            response = _http_client.get(f"{authority}/v2.0/.well-known/openid-configuration")
            response.raise_for_status()
            document = dict(response.json())
        except (requests.RequestException, ValueError, TypeError):
            _log_failure("discovery", "openid_configuration")
            document = {}
        _discovery_documents[authority] = (time.time(), document)
    return document
