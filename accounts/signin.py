"""The sign-in flow's handler for ``/OAuth2?identityOnly=true`` (see lib/entra/django.py)."""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from accounts import services, signals
from accounts.aadsts import Audience
from accounts.access import start_session
from accounts.failures import describe, render_explanation
from accounts.models import EntraApp
from lib import crypto
from lib.entra.django import context_of
from lib.entra.errors import EntraError, FlowExpired, FlowRefused, Remedy
from lib.entra.types import AppCredentials, ProvenIdentity, StoredFlow, redirect_uri

logger = logging.getLogger("dynamics_connect.auth")


def _app_of(context: dict) -> EntraApp | None:
    """The signing-in account's app, with its account (one query; unique: no ORDER BY)."""
    apps = EntraApp.objects.select_related("account").filter(
        account__account_id=str(context.get("account", ""))
    )
    return next(iter(apps[:1]), None)


def _retry_url(app: EntraApp | None) -> str:
    return f"/business/{app.account.account_id}" if app else "/"


class SignInHandler:
    """The sign-in flow's handler, one per callback (see lib/entra/django.py)."""

    def __init__(self) -> None:
        self.app: EntraApp | None = None

    def credentials(self, request: HttpRequest, flow: StoredFlow) -> AppCredentials:
        self.app = app = _app_of(flow.context)
        if app is None:
            raise FlowExpired(code="account_missing")
        try:
            return app.credentials()
        except crypto.UndecryptableValue:
            error = FlowRefused(code="undecryptable_secret", remedy=Remedy.FIX_APP_CREDENTIALS)
            signals.app_credentials_rejected.send(EntraApp, app=app, error=error)
            raise error from None

    def completed(
        self, request: HttpRequest, flow: StoredFlow, identity: ProvenIdentity
    ) -> HttpResponse:
        app = self.app
        try:
            membership = services.member_sign_in(account=app.account, identity=identity)
        except services.SignInRefused as refused:
            return self.failed(request, flow, refused)
        start_session(request, membership.user, app.account.account_id)
        return redirect(flow.next_url or _retry_url(app))

    def failed(
        self, request: HttpRequest, flow: StoredFlow | None, error: EntraError
    ) -> HttpResponse:
        app = self.app or _app_of(context_of(flow, error))
        placeholders = {
            "client_id": app.client_id if app else "",
            "redirect_uri": redirect_uri(identity_only=True),
        }
        explanation = describe(error, Audience.SIGNING_IN, **placeholders)
        logger.warning(
            "sign-in failed",
            extra={
                "event": "sign_in",
                "outcome": "failure",
                "account": app.account.account_id if app else "",
                "code": error.code,
            },
        )
        if app and error.from_token_endpoint and explanation.remedy is Remedy.FIX_APP_CREDENTIALS:
            signals.app_credentials_rejected.send(EntraApp, app=app, error=error)
        return render_explanation(request, explanation, retry_url=_retry_url(app))
