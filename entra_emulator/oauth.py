"""Entra v2.0 endpoints other than /authorize: discovery, JWKS, token, logout, error info."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from . import pages
from .assertions import JWT_BEARER, authenticate_assertion
from .errors import CATALOGUE, AadstsError, entra_timestamp, error_body
from .seed import DYNAMICS_PERMISSION, App, Directory, Tenant, User, normalize_origin, origin_of
from .state import EmulatorState, Fault
from .tokens import (
    GRAPH_APP_ID,
    GRAPH_SCOPE,
    access_token_claims,
    b64url,
    client_info,
    id_token_claims,
    with_overrides,
)
from .web import Request, Response, html_response, json_response

SESSION_COOKIE = "ESTSAUTH"
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
BEARER = "Bearer"  # the token type of every access token issued here
_RESOURCE_SCOPE = re.compile(r"^(?P<resource>https?://[^/]+)/(?:user_impersonation|\.default)$")
_NO_STORE = [("Cache-Control", "no-store, no-cache"), ("Pragma", "no-cache")]


# --- Shared by /authorize and /token ------------------------------------------------------------


@dataclass(frozen=True)
class Scopes:
    """A parsed `scope` parameter: OIDC scopes plus at most one Dynamics resource."""

    requested: tuple[str, ...]
    resource: str | None  # an org origin; None means only OIDC scopes (a Graph token)

    @property
    def granted(self) -> str:
        """The `scope` of the token response (Entra answers `.default` with the real scope)."""
        return f"{self.resource}/user_impersonation" if self.resource else GRAPH_SCOPE

    @property
    def permissions(self) -> frozenset[str]:
        """What the user consents to."""
        oidc = OIDC_SCOPES.intersection(self.requested)
        return oidc | {self.granted} if self.resource else oidc


def parse_scopes(value: str) -> Scopes:
    requested = tuple(value.split())
    if not requested:
        raise AadstsError(900144, parameter="scope")
    resources = set()
    for scope in requested:
        if scope in OIDC_SCOPES:
            continue
        match = _RESOURCE_SCOPE.match(scope)
        origin = normalize_origin(match["resource"]) if match else None
        if origin is None:
            raise AadstsError(70011, scope=scope)
        resources.add(origin)
    if len(resources) > 1:
        raise AadstsError(70011, scope=value)
    return Scopes(requested, resources.pop() if resources else None)


def find_client(
    directory: Directory, client_id: str | None, tenant: Tenant | None, segment: str
) -> App:
    """The app registration, as visible from the tenant in the URL (AADSTS900144/700016)."""
    if not client_id:
        raise AadstsError(900144, parameter="client_id")
    app = directory.apps.get(client_id.lower())
    if app is None or (tenant and not app.multi_tenant and app.tenant_id != tenant.id):
        raise AadstsError(700016, client_id=client_id, tenant=tenant.id if tenant else segment)
    return app


def check_resource(directory: Directory, app: App, user: User, scopes: Scopes) -> None:
    """The Dynamics org must exist in the user's tenant and be in the app's API permissions."""
    if scopes.resource is None:
        return
    org = directory.orgs.get(scopes.resource)
    if org is None or org.tenant_id != user.tenant_id:
        raise AadstsError(
            500011, resource=scopes.resource, tenant_name=directory.tenants[user.tenant_id].name
        )
    if DYNAMICS_PERMISSION not in app.api_permissions:
        raise AadstsError(
            650057,
            client_id=app.client_id,
            app_name=app.name,
            resource=scopes.resource,
            permissions=", ".join(app.api_permissions) or "none",
        )


def fault_error(fault: Fault, req: Request) -> AadstsError:
    return AadstsError(
        fault.value,
        error=fault.error,
        client_id=req.client_id or "",
        tenant=req.route.get("tenant", ""),
    )


def error_page(req: Request, err: AadstsError) -> Response:
    page = pages.error(
        description=err.description,
        request_id=req.trace_id,
        correlation_id=req.correlation_id,
        timestamp=entra_timestamp(),
    )
    return html_response(400, page, outcome=f"AADSTS{err.code}")


def json_error(emu: EmulatorState, req: Request, err: AadstsError) -> Response:
    body = error_body(
        err, trace_id=req.trace_id, correlation_id=req.correlation_id, error_uri_base=emu.origin
    )
    return json_response(err.status, body, outcome=f"AADSTS{err.code}", headers=_NO_STORE)


def session_cookie(value: str, *, max_age: int | None = None) -> tuple[str, str]:
    # Not Secure: the browser pages are plain HTTP, and both listeners share the cookie.
    expiry = f"; Max-Age={max_age}" if max_age is not None else ""
    return ("Set-Cookie", f"{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax{expiry}")


# --- Discovery and keys -------------------------------------------------------------------------


def discovery(emu: EmulatorState, req: Request) -> Response:
    segment = req.route["tenant"]
    try:
        if req.fault and req.fault.action == "aadsts":
            raise fault_error(req.fault, req)
        tenant = emu.directory.resolve_tenant(segment)
    except AadstsError as err:
        return json_error(emu, req, err)
    path = tenant.id if tenant else segment.lower()
    api = f"{emu.origin}/{path}"
    browser = f"{emu.browser_origin}/{path}"
    return json_response(
        200,
        {
            "token_endpoint": f"{api}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "jwks_uri": f"{api}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{emu.origin}/{tenant.id if tenant else '{tenantid}'}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{browser}/oauth2/v2.0/authorize",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{browser}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nbf",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "oid",
                "ver",
                "sid",
            ],
            "tenant_region_scope": "NA" if tenant else None,
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        },
    )


def jwks(emu: EmulatorState, req: Request) -> Response:
    try:
        emu.directory.resolve_tenant(req.route["tenant"])
    except AadstsError as err:
        return json_error(emu, req, err)
    return json_response(200, emu.signer.jwks())


def error_info(emu: EmulatorState, req: Request) -> Response:
    """What `error_uri` points at: the catalogue entry for `?code=`."""
    code = req.params.get("code", "")
    entry = CATALOGUE.get(int(code)) if code.isdigit() else None
    if entry is None:
        return html_response(
            404, pages.error_code(0, "unknown", "No such AADSTS code here."), outcome="not_found"
        )
    message = AadstsError(int(code)).message
    return html_response(200, pages.error_code(int(code), entry.error, message))


# --- Token --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grant:
    user: User
    scopes: Scopes
    sid: str
    nonce: str | None
    auth_time: int | None = None


def token(emu: EmulatorState, req: Request) -> Response:
    try:
        return _token(emu, req)
    except AadstsError as err:
        return json_error(emu, req, err)


def _token(emu: EmulatorState, req: Request) -> Response:
    if req.fault and req.fault.action == "aadsts":
        raise fault_error(req.fault, req)
    if req.fault and req.fault.action == "claims_challenge":
        # Conditional Access wants more (MFA, a compliant device): Entra's 50076 with claims.
        raise AadstsError(
            50076, error="interaction_required", claims=req.fault.value, resource="Dynamics 365"
        )
    params = req.params
    segment = req.route["tenant"]
    tenant = emu.directory.resolve_tenant(segment)
    basic = req.basic_credentials()
    app = find_client(emu.directory, req.client_id, tenant, segment)
    if params.get("client_assertion_type") == JWT_BEARER:
        authenticate_assertion(
            app,
            params.get("client_assertion", ""),
            token_endpoint=f"{emu.origin}/{segment}/oauth2/v2.0/token",
        )
    else:
        _authenticate(app, params.get("client_secret") or (basic[1] if basic else ""))
    grant_type = params.get("grant_type")
    if grant_type == "authorization_code":
        grant = _redeem_code(emu, req, app, tenant)
    elif grant_type == "refresh_token":
        grant = _redeem_refresh_token(emu, req, app)
    elif grant_type == "client_credentials":
        return _issue_app_only(emu, req, app, tenant)
    elif not grant_type:
        raise AadstsError(900144, parameter="grant_type")
    else:
        raise AadstsError(70003, grant_type=grant_type)
    return _issue(emu, req, app, grant)


def _authenticate(app: App, secret: str) -> None:
    if not secret:
        raise AadstsError(7000218)
    matching = [s for s in app.secrets if hmac.compare_digest(s.value.encode(), secret.encode())]
    if not matching:
        raise AadstsError(7000215, client_id=app.client_id)
    now = datetime.now(UTC)
    if all(s.expires <= now for s in matching):
        raise AadstsError(7000222, client_id=app.client_id)


def _redeem_code(emu: EmulatorState, req: Request, app: App, tenant: Tenant | None) -> _Grant:
    params = req.params
    value = params.get("code")
    if not value:
        raise AadstsError(900144, parameter="code")
    code = emu.codes.get(value)
    if code is None:
        raise AadstsError(70000, parameter="code")
    if code.redeemed:
        raise AadstsError(54005)
    code.redeemed = True  # single use, even when a check below fails
    if time.time() > code.issued_at + emu.settings.code_lifetime:
        raise AadstsError(70008)
    if code.client_id != app.client_id:
        raise AadstsError(70000, parameter="code")
    if params.get("redirect_uri", "") != code.redirect_uri:
        raise AadstsError(
            500112,
            redirect_uri=params.get("redirect_uri", ""),
            expected_redirect_uri=code.redirect_uri,
        )
    if code.code_challenge is not None:
        verifier = params.get("code_verifier", "")
        if code.code_challenge_method == "plain":
            computed = verifier
        else:
            computed = b64url(hashlib.sha256(verifier.encode()).digest())
        if not verifier or not hmac.compare_digest(computed, code.code_challenge):
            raise AadstsError(501481)
    if tenant is not None and tenant.id != code.user.tenant_id:
        raise AadstsError(700005)
    return _Grant(
        code.user, parse_scopes(" ".join(code.scopes)), code.sid, code.nonce, code.auth_time
    )


def _redeem_refresh_token(emu: EmulatorState, req: Request, app: App) -> _Grant:
    params = req.params
    value = params.get("refresh_token")
    if not value:
        raise AadstsError(900144, parameter="refresh_token")
    token = emu.refresh_tokens.get(value)
    if token is None:
        raise AadstsError(9002313)
    if token.client_id != app.client_id:
        raise AadstsError(70000, parameter="refresh_token")
    issued = entra_timestamp(datetime.fromtimestamp(token.issued_at, UTC))
    now = time.time()
    if now > token.expires_at:
        days = int((now - token.issued_at) // 86400)
        raise AadstsError(700082, issued=issued, inactive=f"{days}.00:00:00")
    if token.revoked_at is not None:
        valid_from = entra_timestamp(datetime.fromtimestamp(token.revoked_at, UTC))
        raise AadstsError(50173, issued=issued, valid_from=valid_from)
    scopes = parse_scopes(params.get("scope") or " ".join(token.scopes))
    check_resource(emu.directory, app, token.user, scopes)
    if not emu.has_consent(token.user, app.client_id, scopes.permissions):
        raise AadstsError(65001, client_id=app.client_id, app_name=app.name)
    return _Grant(token.user, scopes, token.sid, None)


def _issue(emu: EmulatorState, req: Request, app: App, grant: _Grant) -> Response:
    user, scopes = grant.user, grant.scopes
    now = int(time.time())
    lifetime = emu.settings.access_token_lifetime or app.access_token_lifetime
    fault = req.fault
    access_token = access_token_claims(
        audience=scopes.resource or GRAPH_APP_ID,
        scp="user_impersonation" if scopes.resource else GRAPH_SCOPE,
        client_id=app.client_id,
        oid=user.oid,
        tid=user.tenant_id,
        upn=user.upn,
        name=user.name,
        now=now,
        lifetime=lifetime,
    )
    body: dict[str, object] = {
        "token_type": BEARER,
        "scope": scopes.granted,
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": emu.signer.sign(
            with_overrides(access_token, _claim_overrides(fault, "access_token_claims"))
        ),
    }
    if "offline_access" in scopes.requested:
        body["refresh_token"] = emu.issue_refresh_token(
            client_id=app.client_id, user=user, scopes=scopes.requested, sid=grant.sid
        )
    if "openid" in scopes.requested:
        id_token = id_token_claims(
            issuer=f"{emu.origin}/{user.tenant_id}/v2.0",
            client_id=app.client_id,
            oid=user.oid,
            tid=user.tenant_id,
            upn=user.upn,
            name=user.name,
            sid=grant.sid,
            nonce=grant.nonce,
            now=now,
            auth_time=grant.auth_time,
        )
        id_token = with_overrides(id_token, _claim_overrides(fault, "claims"))
        body["id_token"] = emu.signer.sign(id_token)
    if req.params.get("client_info") == "1":
        body["client_info"] = client_info(user.oid, user.tenant_id)
    # Entra leaves out what was not granted (a refresh token without offline_access, a scope).
    body = with_overrides(body, _claim_overrides(fault, "response"))
    return json_response(200, body, headers=_NO_STORE)


def _issue_app_only(emu: EmulatorState, req: Request, app: App, tenant: Tenant | None) -> Response:
    """The client-credentials grant: an app-only token for ``{org}/.default``. Dataverse
    issues it without any API permission (only an application user in the org lets it read
    anything). The app needs a service principal in the tenant: its home tenant, or one where
    somebody consented to it (AADSTS700016 otherwise)."""
    if tenant is None:
        raise AadstsError(50059)
    if app.tenant_id != tenant.id and not emu.has_service_principal(app.client_id, tenant.id):
        raise AadstsError(700016, client_id=app.client_id, tenant=tenant.id)
    scope = req.params.get("scope", "")
    match = _RESOURCE_SCOPE.match(scope)
    if not match or not scope.endswith("/.default"):
        raise AadstsError(1002012, scope=scope or "(none)")
    resource = normalize_origin(match["resource"])
    org = emu.directory.orgs.get(resource) if resource else None
    if org is None or org.tenant_id != tenant.id:
        raise AadstsError(500011, resource=match["resource"], tenant_name=tenant.name)
    now = int(time.time())
    lifetime = emu.settings.access_token_lifetime or app.access_token_lifetime
    claims = {
        "aud": org.url,
        "iss": f"https://sts.windows.net/{tenant.id}/",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "appid": app.client_id,
        "idtyp": "app",
        "oid": emu.service_principal_id(app.client_id, tenant.id),
        "tid": tenant.id,
        "ver": "1.0",
    }
    body = {
        "token_type": BEARER,
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": emu.signer.sign(claims),
    }
    return json_response(200, body, headers=_NO_STORE)


def _claim_overrides(fault: Fault | None, action: str) -> dict[str, object] | None:
    return fault.value if fault is not None and fault.action == action else None


# --- Sign-out -----------------------------------------------------------------------------------


def logout(emu: EmulatorState, req: Request) -> Response:
    try:
        emu.directory.resolve_tenant(req.route["tenant"])
    except AadstsError as err:
        return error_page(req, err)
    emu.sessions.pop(req.cookies.get(SESSION_COOKIE, ""), None)
    target = req.params.get("post_logout_redirect_uri", "")
    app_origins = {
        origin_of(uri) for app in emu.directory.apps.values() for uri in app.redirect_uris
    }
    return_url = target if target and origin_of(target) in app_origins else None
    response = html_response(200, pages.signed_out(return_url))
    response.headers.append(session_cookie("", max_age=0))
    return response
