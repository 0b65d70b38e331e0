"""Auth-code flows (PKCE, state, nonce by MSAL): started, kept server-side, redeemed once.

``start`` builds the authorize URL with a public client (no secret is needed for it) and keeps
MSAL's flow dict, with the flow's purpose, the already-validated ``next`` URL and a small
context, as one row of the ``entra_started_flow`` table (created by the accounts app's
migrations; this leaf speaks SQL to it by name, as ``lib/ratelimit.py`` does to its own),
keyed by its state and bound to the browser's session. One row per flow, never a list inside
the session: two tabs starting flows at once on two processes would otherwise each write the
session and one flow would be lost. A start costs one ``INSERT``; ``pop`` claims the row with
one ``DELETE ... RETURNING`` that only one request can win (a replayed callback then finds
nothing), and that statement also sweeps the rows nobody came back for. ``redeem``
exchanges the code with the app's credentials (one token request) and validates the id token.
Nothing about a flow is ever read back from the callback's query string except ``state``,
``code`` and ``error``.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import msal
from django.conf import settings
from django.db import connection
from django.http import HttpRequest

from lib.entra.errors import EntraRejected, FlowExpired, WrongTenant, error_from_response
from lib.entra.http import (
    application,
    authorize_application,
    discovery_document,
    log_failure,
    logger,
    msal_errors,
)
from lib.entra.id_token import validate_id_token
from lib.entra.types import (
    AppCredentials,
    ProvenIdentity,
    Purpose,
    StoredFlow,
    redirect_uri,
)
from lib.secret import Secret

# A random value the browser's session keeps: a flow answers only in the browser that started it.
BINDING_SESSION_KEY = "entra.binding"
_INSERT = (
    "INSERT INTO entra_started_flow (state, binding, entry, expires_at) VALUES (%s, %s, %s, %s)"
)
# This browser's flow (or an admin consent's), and any row kept past its use: one statement,
# one winner.
_CLAIM = (
    "DELETE FROM entra_started_flow WHERE (state = %s AND binding IN (%s, %s)) "
    "OR expires_at < %s RETURNING state, entry"
)
# The last flows this browser took out, so that a replayed callback is recognised as one (two
# tabs writing this at once lose at worst a marker: the replay is then told as a stale link).
SPENT_FLOWS_SESSION_KEY = "entra.spent_flows"
MAX_SPENT_FLOWS = 5
# How recent a sign-in must be for flows that ask for a fresh one (ASVS 7.5.1).
FRESH_SIGN_IN_SECONDS = 300
CALLBACK_PARAMETERS = (
    "state",
    "code",
    "error",
    "error_description",
    "session_state",
    "client_info",
    "admin_consent",
    "tenant",
    "scope",
)
# The binding of an admin-consent flow: the admin may answer it in a browser of their own.
_ANY_BROWSER = "any-browser"


def flow_lifetime() -> timedelta:
    """How long a started flow (and anything waiting on it) stays valid: the one rule."""
    return timedelta(minutes=settings.AUTH_FLOW_TTL_MINUTES)


def _is_live(entry: Mapping[str, Any]) -> bool:
    return entry.get("started_at", 0) >= time.time() - flow_lifetime().total_seconds()


def _binding(request: HttpRequest, *, create: bool) -> str:
    """This browser's binding (a hash of it: the table never holds the session's value);
    "" when the session has none and ``create`` is off."""
    value = request.session.get(BINDING_SESSION_KEY)
    if not value and create:
        value = request.session[BINDING_SESSION_KEY] = secrets.token_urlsafe(32)
    return hashlib.sha256(value.encode()).hexdigest() if value else ""


def _kept_for() -> float:
    """Seconds a row is kept: past the flow's lifetime, so that ``pop`` (not the sweep) tells
    an expired flow apart from a forged one."""
    return flow_lifetime().total_seconds() + 300


def _claim(state: str, binding: str) -> dict[str, Any] | None:
    """Take this browser's flow out of the table (None: not there, or not this browser's)."""
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM, [state, binding or _ANY_BROWSER, _ANY_BROWSER, time.time()])
        rows = cursor.fetchall()
    return next((json.loads(entry) for key, entry in rows if key == state), None)


def _store(state: str, binding: str, **entry: Any) -> None:
    """Keep a started flow: its purpose, app, tenant, scopes, ``next``, context, MSAL flow."""
    entry["started_at"] = time.time()
    with connection.cursor() as cursor:
        row = [state, binding, json.dumps(entry), entry["started_at"] + _kept_for()]
        cursor.execute(_INSERT, row)


def start_admin_consent(
    request: HttpRequest,
    *,
    client_id: str,
    tenant: str,
    scope: str,
    context: Mapping[str, Any] | None = None,
) -> str:
    """The tenant's v2 admin-consent URL for this app and ``scope``, answered at /OAuth2.

    Its flow is kept like any other, by its state, but may be answered in any browser: the
    admin who approves is often not the person who asked. ``StoredFlow.same_browser`` tells
    the asker's browser (which may resume what waited) from the admin's (which may not).
    """
    state = secrets.token_urlsafe(24)
    _store(
        state,
        _ANY_BROWSER,
        purpose=Purpose.ADMIN_CONSENT.value,
        client_id=client_id,
        tenant=tenant,
        scopes=[scope],
        next="",
        context=dict(context or {}),
        flow={},
        started_by=_binding(request, create=True),
    )
    sign_in_page = str(discovery_document(tenant).get("authorization_endpoint", ""))
    origin = sign_in_page.split(f"/{tenant}/", 1)[0] if f"/{tenant}/" in sign_in_page else ""
    query = urlencode(
        {
            "client_id": client_id,
            "scope": scope,
            "redirect_uri": redirect_uri(identity_only=False),
            "state": state,
        }
    )
    logger.info(
        "Entra ID admin consent offered",
        extra={"event": "entra.admin_consent_started", "client_id": client_id, "tenant": tenant},
    )
    return f"{origin or settings.ENTRA_AUTHORITY_HOST}/{tenant}/v2.0/adminconsent?{query}"


def admin_consent_answer(flow: StoredFlow, params: Mapping[str, str]) -> None:
    """Returns when the answer says the tenant's admin approved; raises what it says otherwise
    (``SignInCancelled`` for a refusal, ``EntraRejected`` with its AADSTS code). The answer
    comes through a browser and proves nothing: the authorization it resumes does."""
    if "error" in params:
        shaped = _documented_shape(
            {k: params[k] for k in ("error", "error_description") if k in params}
        )
        error = error_from_response(shaped, from_token_endpoint=False)
        log_failure("admin_consent", error.code, client_id=flow.client_id)
        raise error
    if params.get("admin_consent", "").lower() != "true":
        log_failure("admin_consent", "no_answer", client_id=flow.client_id)
        raise FlowExpired(code="admin_consent_missing", purpose=flow.purpose, context=flow.context)
    if params.get("tenant", "").lower() != flow.tenant.lower():
        log_failure("admin_consent", "tenant_mismatch", client_id=flow.client_id)
        raise WrongTenant(code="admin_consent_tenant_mismatch")
    logger.info(
        "Entra ID admin consent granted",
        extra={
            "event": "entra.admin_consent",
            "outcome": "success",
            "client_id": flow.client_id,
            "tenant": flow.tenant,
        },
    )


def start(
    request: HttpRequest,
    *,
    purpose: Purpose,
    client_id: str,
    tenant: str,
    scopes: tuple[str, ...] = (),
    context: Mapping[str, Any] | None = None,
    next_url: str = "",
    fresh_sign_in_as: str = "",
    claims_challenge: str = "",
) -> str:
    """Begin an auth-code flow and return the URL to send the browser to.

    ``context`` must be JSON-serializable and hold identifiers only: it comes back unchanged in
    ``StoredFlow.context``. ``next_url`` must already be validated. ``fresh_sign_in_as`` (a
    user name) asks Entra ID to show the account picker with that account first and to want a
    sign-in from the last FRESH_SIGN_IN_SECONDS (``max_age``, whose ``auth_time`` MSAL checks).
    """
    options: dict[str, Any] = {}
    if fresh_sign_in_as:
        options = {
            "prompt": "select_account",
            "login_hint": fresh_sign_in_as,
            "max_age": FRESH_SIGN_IN_SECONDS,
        }
    if claims_challenge:  # Conditional Access asked for more: satisfied in this one pass
        options["claims_challenge"] = claims_challenge
    msal_app = authorize_application(client_id, tenant, identity_only=purpose.identity_only)
    flow = msal_app.initiate_auth_code_flow(
        list(scopes), redirect_uri=redirect_uri(identity_only=purpose.identity_only), **options
    )
    _store(
        flow["state"],
        _binding(request, create=True),
        purpose=purpose.value,
        client_id=client_id,
        tenant=tenant,
        scopes=list(scopes),
        next=next_url,
        context=dict(context or {}),
        flow=flow,
    )
    logger.info(
        "Entra ID flow started",
        extra={
            "event": "entra.flow_started",
            "purpose": purpose.value,
            "client_id": client_id,
            "tenant": tenant,
        },
    )
    return flow["auth_uri"]


def pop(request: HttpRequest, *, identity_only: bool) -> StoredFlow:
    """Take the flow that this callback answers out of the store, for this request alone.

    Raises ``FlowExpired`` for a missing, stale, replayed or ambiguous callback, and for a
    callback whose ``identityOnly`` flag does not match the purpose the flow was started for
    (the flow is consumed either way, so it cannot be retried with the flag flipped).
    """
    for name in CALLBACK_PARAMETERS:
        if len(request.GET.getlist(name)) > 1:
            log_failure("callback", "duplicate_parameter", parameter=name)
            raise FlowExpired(code="duplicate_parameter")
    state = request.GET.get("state", "")
    binding = _binding(request, create=False)
    # Another browser's flow (login CSRF) is not this request's to take, nor to spend.
    entry = _claim(state, binding) if state else None
    spent = request.session.get(SPENT_FLOWS_SESSION_KEY) or {}
    if entry is None:
        used = spent.get(state) if state else None
        log_failure("callback", "replayed" if used else "state")
        if used:
            raise FlowExpired(
                code="flow_replayed", purpose=Purpose(used["purpose"]), context=used["context"]
            )
        raise FlowExpired(code="state")
    purpose = Purpose(entry["purpose"])
    spent[state] = {"purpose": purpose.value, "context": entry["context"]}
    request.session[SPENT_FLOWS_SESSION_KEY] = dict(list(spent.items())[-MAX_SPENT_FLOWS:])
    if not _is_live(entry):
        log_failure("callback", "flow_expired")
        raise FlowExpired(code="flow_expired", purpose=purpose, context=entry["context"])
    if "code" in request.GET and "error" in request.GET:
        # MSAL would redeem the code and ignore the error: an answer cannot be both.
        log_failure("callback", "code_and_error", purpose=purpose.value)
        raise FlowExpired(code="code_and_error", purpose=purpose, context=entry["context"])
    if purpose.identity_only != identity_only:
        log_failure("callback", "purpose_mismatch", purpose=purpose.value)
        raise FlowExpired(code="purpose_mismatch", purpose=purpose, context=entry["context"])
    return StoredFlow(
        purpose=purpose,
        client_id=entry["client_id"],
        tenant=entry["tenant"],
        scopes=tuple(entry["scopes"]),
        next_url=entry["next"],
        context=entry["context"],
        msal_flow=entry["flow"],
        same_browser=entry.get("started_by", binding) == binding,
    )


_OAUTH_ERROR = re.compile(r"^[a-z_]{1,64}$")
_MAX_DESCRIPTION = 1000


def _documented_shape(auth_response: dict[str, str]) -> dict[str, str]:
    """An ``error`` from the browser, as RFC 6749 4.1.2.1 shapes it, before MSAL or a log sees
    it: anyone can send one with a valid state (their own sign-in's), and MSAL would echo a
    raw one into the next request's telemetry header."""
    if "error" not in auth_response:
        return auth_response
    error = auth_response["error"]
    description = auth_response.get("error_description", "")
    shaped = {**auth_response, "error": error if _OAUTH_ERROR.match(error) else "invalid_error"}
    if description.isprintable() and len(description) <= _MAX_DESCRIPTION:
        shaped["error_description"] = description
    else:
        shaped.pop("error_description", None)
    return shaped


def redeem(
    flow: StoredFlow, callback_params: Mapping[str, str], *, credentials: AppCredentials
) -> ProvenIdentity:
    """Exchange the callback's code for tokens (one token request); validate the id token.

    For sign-in nothing is kept but the identity; for the other purposes the identity carries
    the serialized MSAL token cache and the access token for the flow's scopes.
    """
    if credentials.client_id != flow.client_id:
        # The app's credentials changed since the flow started (a re-authorization meanwhile).
        log_failure("token", "credentials_changed", client_id=flow.client_id)
        raise FlowExpired(code="credentials_changed", purpose=flow.purpose, context=flow.context)
    keep_tokens = not flow.purpose.identity_only
    token_cache = msal.SerializableTokenCache()
    msal_app = application(
        credentials.client_id,
        flow.tenant,
        credentials=credentials,
        token_cache=token_cache,
        identity_only=not keep_tokens,
    )
    auth_response = _documented_shape(
        {k: v for k, v in callback_params.items() if k in CALLBACK_PARAMETERS}
    )
    log_fields = {"purpose": flow.purpose.value, "client_id": flow.client_id}
    with msal_errors("token", **log_fields):
        result = msal_app.acquire_token_by_auth_code_flow(dict(flow.msal_flow), auth_response)
    if "error" in result:
        # An error in the callback came through the browser, where anyone can write it: only
        # an answer of the token endpoint proves anything about the credentials.
        error = error_from_response(result, from_token_endpoint="error" not in auth_response)
        log_failure("token", error.code, correlation_id=error.correlation_id, **log_fields)
        raise error
    claims = validate_id_token(
        result.get("id_token", ""), client_id=flow.client_id, tenant=flow.tenant
    )
    if keep_tokens:
        granted = set(str(result.get("scope", "")).split())
        if not result.get("access_token") or not set(flow.scopes) <= granted:
            log_failure("token", "scope_not_granted", **log_fields)
            raise EntraRejected(code="scope_not_granted")
        if not result.get("refresh_token"):
            # Without it the connection would die with the access token, an hour from now.
            log_failure("token", "refresh_token_not_granted", **log_fields)
            raise EntraRejected(code="refresh_token_not_granted")
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
    return ProvenIdentity(
        tenant_id=claims["tid"],
        object_id=claims["oid"],
        username=str(claims.get("preferred_username", "")),
        display_name=str(claims.get("name", "")),
        email=str(claims.get("email") or ""),
        home_account_id=accounts[0]["home_account_id"] if accounts else "",
        access_token=Secret(result["access_token"]) if keep_tokens else None,
        token_cache=Secret(token_cache.serialize()) if keep_tokens else None,
    )
