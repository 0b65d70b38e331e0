"""`/{tenant}/oauth2/v2.0/authorize`: sign-in, account picker, consent, then a code.

Checks run in Entra's order. Until the client and its redirect URI are known to be registered,
errors go on Entra's error page; after that they are redirected back to the app.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlencode

from . import pages
from .errors import AadstsError, entra_timestamp
from .oauth import (
    OIDC_SCOPES,
    SESSION_COOKIE,
    Scopes,
    check_resource,
    error_page,
    fault_error,
    find_client,
    parse_scopes,
    session_cookie,
)
from .seed import App, Tenant, User
from .state import AuthCode, EmulatorState, Session
from .tokens import client_info
from .web import Request, Response, html_response, redirect

RESPONSE_MODES = ("query", "fragment", "form_post")
#: Fields our own forms add; everything else is the app's original request, carried along.
CONTROL_FIELDS = ("action", "login")
_ACTIONS = ("signin", "other", "pick", "accept", "cancel")
UNKNOWN_USER = "We couldn't find an account with that username."


def authorize(emu: EmulatorState, req: Request) -> Response:
    params = req.params
    fault = req.fault
    segment = req.route["tenant"]
    try:
        if fault and fault.action == "aadsts" and AadstsError(fault.value).page:
            raise fault_error(fault, req)
        tenant = emu.directory.resolve_tenant(segment)
        app = find_client(emu.directory, params.get("client_id"), tenant, segment)
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:
            raise AadstsError(50011, redirect_uri=redirect_uri, client_id=app.client_id)
        if tenant is None and not app.multi_tenant:
            raise AadstsError(50194, client_id=app.client_id, app_name=app.name)
    except AadstsError as err:
        return error_page(req, err)
    return _Authorization(emu, req, app, tenant, redirect_uri).respond()


@dataclass
class Reply:
    """Sends results back to the (validated) redirect URI in the requested response mode."""

    redirect_uri: str
    state: str | None
    mode: str

    def send(self, fields: dict[str, str], *, outcome: str = "ok") -> Response:
        if self.state is not None:
            fields["state"] = self.state
        if self.mode == "form_post":
            page = pages.form_post(redirect_uri=self.redirect_uri, fields=fields)
            return html_response(200, page, outcome=outcome)
        separator = "&" if "?" in self.redirect_uri else "?"
        if self.mode == "fragment":
            separator = "#"
        return redirect(f"{self.redirect_uri}{separator}{urlencode(fields)}", outcome=outcome)

    def error(self, err: AadstsError, req: Request, base_url: str) -> Response:
        description = (
            f"{err.description} Trace ID: {req.trace_id} Correlation ID: {req.correlation_id} "
            f"Timestamp: {entra_timestamp()}"
        )
        fields = {
            "error": err.authorize_error,
            "error_description": description,
            "error_uri": f"{base_url}/error?code={err.code}",
        }
        return self.send(fields, outcome=f"AADSTS{err.code}")


class _Authorization:
    """One authorize request once the client and redirect URI are trusted."""

    def __init__(
        self, emu: EmulatorState, req: Request, app: App, tenant: Tenant | None, redirect_uri: str
    ) -> None:
        self.emu = emu
        self.req = req
        self.params = req.params
        self.app = app
        self.tenant = tenant
        self.response_mode = self.params.get("response_mode") or "query"
        self.reply = Reply(
            redirect_uri,
            self.params.get("state"),
            self.response_mode if self.response_mode in RESPONSE_MODES else "query",
        )
        self.new_cookie: str | None = None

    def respond(self) -> Response:
        try:
            response = self._run()
        except AadstsError as err:
            if err.page:
                response = error_page(self.req, err)
            else:
                response = self.reply.error(err, self.req, self.emu.origin)
        if self.new_cookie is not None:
            response.headers.append(session_cookie(self.new_cookie))
        return response

    def _run(self) -> Response:
        params = self.params
        if self.req.fault and self.req.fault.action == "aadsts":
            raise fault_error(self.req.fault, self.req)
        if params.get("response_type") != "code":
            raise AadstsError(70005, response_type=params.get("response_type", ""))
        if self.response_mode not in RESPONSE_MODES:
            raise AadstsError(70007, app_name=self.app.name, response_mode=self.response_mode)
        scopes = parse_scopes(params.get("scope", ""))
        # Our own form buttons arrive as POSTs; a link cannot press them.
        action = params.get("action") if self.req.method == "POST" else None
        if action not in _ACTIONS:
            action = None
        prompts = set(params.get("prompt", "").split())
        session = self.emu.sessions.get(self.req.cookies.get(SESSION_COOKIE, ""))

        if action == "signin":
            login = params.get("login", "").strip()
            user = self.emu.directory.user(login) if login else None
            if user is None:
                return self._sign_in_page(login, error=UNKNOWN_USER)
            self.new_cookie, session = self.emu.start_session(user)
        elif action == "other" or (action is not None and session is None):
            return self._sign_in_page(params.get("login_hint", ""))
        elif action is None:
            if "none" in prompts:
                if session is None:
                    raise AadstsError(50058)
            elif session is None or "login" in prompts or self._too_old(session):
                return self._sign_in_page(params.get("login_hint", ""))
            elif "select_account" in prompts:
                page = pages.account_picker(
                    action=self.req.path,
                    fields=self._fields(),
                    user=session.user,
                    app_name=self.app.name,
                )
                return html_response(200, page, outcome="account_picker")
        if session is None:  # every branch above either signed in or returned
            raise RuntimeError("authorize reached the code step without a session")

        self._check_user(session.user)
        check_resource(self.emu.directory, self.app, session.user, scopes)
        if action == "cancel":
            raise AadstsError(65004)
        needs_consent = "consent" in prompts or not self.emu.has_consent(
            session.user, self.app.client_id, scopes.permissions
        )
        tenant = self.emu.directory.tenants[session.user.tenant_id]
        if needs_consent and not tenant.users_can_consent and not session.user.admin:
            raise AadstsError(90094)  # Entra's "Need admin approval"
        if action == "accept":
            self.emu.grant_consent(session.user, self.app.client_id, scopes.permissions)
        elif needs_consent:
            if "none" in prompts:
                raise AadstsError(65001, client_id=self.app.client_id, app_name=self.app.name)
            return self._consent_page(session.user, scopes)
        return self._issue_code(session, scopes)

    def _max_age(self) -> int | None:
        raw = self.params.get("max_age", "")
        return int(raw) if raw.isdigit() else None

    def _too_old(self, session: Session) -> bool:
        """OIDC max_age: a sign-in longer ago than that needs the credentials again."""
        max_age = self._max_age()
        return max_age is not None and time.time() - session.authenticated_at > max_age

    def _check_user(self, user: User) -> None:
        app = self.app
        if self.tenant is not None and user.tenant_id != self.tenant.id:
            raise AadstsError(
                50020,
                upn=user.upn,
                idp=f"https://sts.windows.net/{user.tenant_id}/",
                tenant_name=self.tenant.name,
                client_id=app.client_id,
                app_name=app.name,
            )
        if app.assignment_required and not user.is_one_of(app.assigned_users):
            raise AadstsError(50105, app_name=app.name, client_id=app.client_id, upn=user.upn)

    def _issue_code(self, session: Session, scopes: Scopes) -> Response:
        params = self.params
        code = self.emu.issue_code(
            AuthCode(
                client_id=self.app.client_id,
                redirect_uri=self.reply.redirect_uri,
                scopes=scopes.requested,
                code_challenge=params.get("code_challenge") or None,
                code_challenge_method=params.get("code_challenge_method") or None,
                nonce=params.get("nonce"),
                user=session.user,
                sid=session.sid,
                issued_at=time.time(),
                auth_time=int(session.authenticated_at) if self._max_age() is not None else None,
            )
        )
        fields = {"code": code, "session_state": session.sid}
        if params.get("client_info") == "1":
            fields["client_info"] = client_info(session.user.oid, session.user.tenant_id)
        return self.reply.send(fields)

    def _fields(self) -> dict[str, str]:
        return {k: v for k, v in self.params.items() if k not in CONTROL_FIELDS}

    def _sign_in_page(self, login: str, *, error: str | None = None) -> Response:
        page = pages.sign_in(
            action=self.req.path,
            fields=self._fields(),
            login=login,
            app_name=self.app.name,
            error=error,
        )
        return html_response(200, page, outcome="AADSTS50034" if error else "sign_in_page")

    def _consent_page(self, user: User, scopes: Scopes) -> Response:
        wording = []
        if OIDC_SCOPES.intersection(scopes.requested) - {"offline_access"}:
            wording.append("Sign you in and read your profile")
        if "offline_access" in scopes.requested:
            wording.append("Maintain access to data you have given it access to")
        if scopes.resource:
            wording.append(f"Access Dynamics 365 as you ({scopes.resource})")
        page = pages.consent(
            action=self.req.path,
            fields=self._fields(),
            app=self.app,
            publisher=self.emu.directory.tenants[self.app.tenant_id].domain,
            user=user,
            permissions=wording,
        )
        return html_response(200, page, outcome="consent_page")
