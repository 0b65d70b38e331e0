"""Signup: a pending signup, the flow to Entra ID, then WhoAmI and the account in one go.

Nothing is created until Entra ID has issued tokens for the submitted credentials and
Dynamics' WhoAmI has accepted them; then the account, its Entra app, its Dynamics connection
and its first admin are created in ONE transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone

from accounts.aadsts import Audience
from accounts.access import SIGNUP_OTHER_ACCOUNTS_SESSION_KEY, start_session
from accounts.failures import Refused, render_failure
from accounts.models import Account, AuditEvent, EntraApp, Membership, User
from accounts.services import audit_record, user_from_identity
from connections.consent import admin_consent_offer, needs_admin_consent
from connections.models import DynamicsConnection, PendingAuthorization
from connections.pending import (
    PendingFlowHandler,
    SubmittedCredential,
    pending_discard,
    pending_explained,
    pending_flow_start,
    pending_of,
)
from connections.preflight import app_setup_check
from lib import crypto
from lib.entra.django import context_of
from lib.entra.errors import EntraError
from lib.entra.types import AppCredentials, ProvenIdentity, Purpose, StoredFlow

logger = logging.getLogger("dynamics_connect.connections")

# The signup form's values to show again after a failure (never the secret).
SIGNUP_RETRY_SESSION_KEY = "signup.retry"
# The admin-consent offer a signup waits on, for its "Continue" button.
SIGNUP_CONSENT_SESSION_KEY = "signup.admin_consent"
RETRY_FIELDS = ("company_name", "phone", "website", "client_id", "org_url")


@dataclass(frozen=True)
class SignupRequest:
    company_name: str
    phone: str
    website: str
    client_id: str
    credential: SubmittedCredential = field(repr=False)
    org_url: str


def signup_start(request: HttpRequest, *, signup: SignupRequest) -> str:
    """Check the setup, keep the signup pending and return the Entra ID URL to send the
    browser to.

    The org's tenant comes from the org itself, and the credentials are tried there first
    (``app_setup_check``: SetupProblem names the field to fix, and nothing is stored). The flow
    runs on that tenant's authority, so a single-tenant app registration works, and the id
    token must be of that tenant. If the flow cannot start (Entra ID unreachable), the pending
    row is dropped and the error raised.
    """
    tenant_id = app_setup_check(
        client_id=signup.client_id, credential=signup.credential, org_url=signup.org_url
    )
    return pending_flow_start(
        request,
        purpose=Purpose.SIGNUP,
        tenant=tenant_id,
        credential=signup.credential,
        company_name=signup.company_name,
        phone=signup.phone,
        website=signup.website,
        client_id=signup.client_id,
        org_url=signup.org_url,
    )


@dataclass(frozen=True)
class SignupResult:
    account: Account
    user: User
    other_accounts_of_tenant: list[Account]


def account_create_from_signup(
    *, pending: PendingAuthorization, credentials: AppCredentials, identity: ProvenIdentity
) -> SignupResult:
    """Account, Entra app, connection and first admin from a proven signup, in ONE transaction."""
    other_accounts = list(
        Account.objects.filter(entra_app__tenant_id=identity.tenant_id).order_by("id")
    )
    with transaction.atomic():
        account = Account.objects.create(
            company_name=pending.company_name, phone=pending.phone, website=pending.website
        )
        app = EntraApp(account=account, client_id=pending.client_id, tenant_id=identity.tenant_id)
        app.store_credentials(credentials, expires_on=pending.secret_expires_on)
        app.save()
        connection = DynamicsConnection(
            account=account,
            org_url=pending.org_url,
            home_account_id=identity.home_account_id,
            connected_as=identity.username,
            status=DynamicsConnection.Status.CONNECTED,
            last_verified_at=timezone.now(),
        )
        connection.token_cache_encrypted = crypto.encrypt(
            identity.token_cache, context=connection.token_cache_context()
        )
        connection.save()
        user = user_from_identity(identity=identity)
        Membership.objects.create(account=account, user=user, role=Membership.Role.ADMIN)
        audit_record(
            account=account,
            actor=user,
            action="signup",
            outcome=AuditEvent.Outcome.SUCCESS,
            detail=f"Account created; Dynamics {pending.org_url} connected as {identity.username}.",
        )
        pending.delete()
    logger.info(
        "signup completed",
        extra={
            "event": "signup",
            "outcome": "success",
            "account": account.account_id,
            "oid": identity.object_id,
            "tenant": identity.tenant_id,
        },
    )
    return SignupResult(account=account, user=user, other_accounts_of_tenant=other_accounts)


class SignupHandler(PendingFlowHandler):
    """The signup flow's handler for ``/OAuth2``, one per callback (see lib/entra/django.py)."""

    def completed(
        self, request: HttpRequest, flow: StoredFlow, identity: ProvenIdentity
    ) -> HttpResponse:
        try:
            self.prove_dynamics_access(identity)
        except Refused as refused:
            return self.failed(request, flow, refused)
        result = account_create_from_signup(
            pending=self.pending, credentials=self.proven, identity=identity
        )
        start_session(request, result.user, result.account.account_id)
        request.session[SIGNUP_OTHER_ACCOUNTS_SESSION_KEY] = [
            {"company_name": a.company_name, "account_id": a.account_id}
            for a in result.other_accounts_of_tenant
        ]
        return redirect("welcome", account_id=result.account.account_id)

    def failed(
        self, request: HttpRequest, flow: StoredFlow | None, error: EntraError
    ) -> HttpResponse:
        """Back to the form, its fields kept (the secret aside), with the reason; nothing is
        created, and the pending signup is gone."""
        if flow is None:  # the link was used already, or is too old: nothing to go back to
            pending_discard(pending_of(context_of(flow, error)))
            return render_failure(request, error, Audience.ADMIN, retry_url=reverse("signup"))
        pending = self.pending or pending_of(flow.context)
        explanation = pending_explained(error, pending)
        message = explanation.message
        if explanation.cancelled:
            message = (
                "You cancelled at Microsoft's sign-in, so no account was created. Submit the "
                "form again when you are ready."
            )
        logger.warning(
            "signup failed", extra={"event": "signup", "outcome": "failure", "code": error.code}
        )
        retry = {
            "fields": {name: getattr(pending, name) for name in RETRY_FIELDS} if pending else {},
            "message": message,
            "code": error.code,
            "aadsts": error.aadsts,
            "cancelled": explanation.cancelled,
        }
        if pending is not None and needs_admin_consent(error):
            # Kept for the consent flow: an admin's approval resumes this very signup.
            retry["admin_consent"] = admin_consent_offer(
                request, pending=pending, tenant=flow.tenant
            )
        elif error.code != "pending_in_progress":
            pending_discard(pending)
        request.session[SIGNUP_RETRY_SESSION_KEY] = retry
        return redirect("signup")
