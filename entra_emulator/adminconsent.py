"""`/{tenant}/v2.0/adminconsent`: an administrator grants an app's permissions for the whole
tenant, after which no user of it sees the consent page for them.

As Entra does: the app and its redirect URI must be registered (else Entra's error page); the
person signs in (an admin already signed in goes straight to the consent page); a non-admin
is sent back with AADSTS90094, a cancel with AADSTS65004, an account of another tenant with
AADSTS50020. On Accept the answer is `{redirect_uri}?admin_consent=True&tenant={tid}&scope=
{scope}&state={state}`.
"""

from __future__ import annotations

from . import pages
from .authorize import CONTROL_FIELDS, UNKNOWN_USER, Reply
from .errors import AadstsError
from .oauth import (
    OIDC_SCOPES,
    SESSION_COOKIE,
    check_resource,
    error_page,
    fault_error,
    find_client,
    parse_scopes,
    session_cookie,
)
from .web import Request, Response, html_response


def admin_consent(emu, req: Request) -> Response:
    params = req.params
    segment = req.route["tenant"]
    try:
        tenant = emu.directory.resolve_tenant(segment)
        app = find_client(emu.directory, params.get("client_id"), tenant, segment)
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:
            raise AadstsError(50011, redirect_uri=redirect_uri, client_id=app.client_id)
    except AadstsError as err:
        return error_page(req, err)
    reply = Reply(redirect_uri, params.get("state"), "query")
    fields = {k: v for k, v in params.items() if k not in CONTROL_FIELDS}
    action = params.get("action") if req.method == "POST" else None
    session = emu.sessions.get(req.cookies.get(SESSION_COOKIE, ""))
    new_cookie = None
    try:
        if req.fault and req.fault.action == "aadsts":
            raise fault_error(req.fault, req)
        if action == "signin":
            user = emu.directory.user(params.get("login", "").strip())
            if user is None:
                return _sign_in(req, fields, app.name, params.get("login", ""), unknown=True)
            new_cookie, session = emu.start_session(user)
        elif session is None or action == "other" or (action is None and not session.user.admin):
            return _sign_in(req, fields, app.name, params.get("login_hint", ""))
        user = session.user
        if tenant is not None and user.tenant_id != tenant.id:
            raise AadstsError(
                50020,
                upn=user.upn,
                idp=f"https://sts.windows.net/{user.tenant_id}/",
                tenant_name=tenant.name,
                client_id=app.client_id,
                app_name=app.name,
            )
        if not user.admin:
            raise AadstsError(90094)
        scopes = parse_scopes(params.get("scope", ""))
        check_resource(emu.directory, app, user, scopes)
        if action == "cancel":
            raise AadstsError(65004)
        if action == "accept":
            emu.grant_admin_consent(user.tenant_id, app.client_id, scopes.permissions | OIDC_SCOPES)
            response = reply.send(
                {"admin_consent": "True", "tenant": user.tenant_id, "scope": params["scope"]}
            )
        else:
            org_name = emu.directory.tenants[user.tenant_id].name
            page = pages.consent(
                action=req.path,
                fields=fields,
                app=app,
                publisher=emu.directory.tenants[app.tenant_id].domain,
                user=user,
                permissions=[
                    f"Access Dynamics 365 as the signed-in user ({scopes.resource})",
                    f"Consent on behalf of your organization ({org_name})",
                ],
            )
            response = html_response(200, page, outcome="admin_consent_page")
    except AadstsError as err:
        response = error_page(req, err) if err.page else reply.error(err, req, emu.origin)
    if new_cookie is not None:
        response.headers.append(session_cookie(new_cookie))
    return response


def _sign_in(req: Request, fields, app_name: str, login: str, *, unknown: bool = False):
    error = UNKNOWN_USER if unknown else None
    page = pages.sign_in(
        action=req.path, fields=fields, login=login, app_name=app_name, error=error
    )
    return html_response(200, page, outcome="AADSTS50034" if unknown else "sign_in_page")
