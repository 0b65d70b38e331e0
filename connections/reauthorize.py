"""Re-authorization: new credentials proven at Entra ID and by WhoAmI, then swapped in at once.

Until the swap, the account's app credentials and the connection's tokens stay exactly as they
were; any failure leaves them so, writes a failed audit event (here, in one place) and says why
on the Connections page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from accounts.aadsts import Audience
from accounts.access import current_membership
from accounts.failures import Refused, render_failure
from accounts.models import AuditEvent, EntraApp, Membership, User
from accounts.services import audit_record
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


@dataclass(frozen=True)
class ReauthorizationRequest:
    client_id: str
    credential: SubmittedCredential = field(repr=False)
    org_url: str
    secret_expires_on: date | None = None


def reauthorization_start(
    request: HttpRequest,
    *,
    connection: DynamicsConnection,
    actor: User,
    submitted: ReauthorizationRequest,
) -> str:
    """Keep the new credentials pending and return the Entra ID URL to prove them at.

    The new values are checked first (``app_setup_check``: the org must be of the account's
    tenant, and Entra ID must not refuse the credentials there; SetupProblem names the field
    and nothing is stored). New credentials run on the account's own tenant. Entra
    ID is asked for a fresh sign-in, with the account picker showing the connection's current
    user first, so the admin picks the intended account. The versions of the app and the
    connection are recorded: a change committed meanwhile (another admin's re-authorization)
    wins over this one.
    """
    app = connection.account.entra_app
    app_setup_check(
        client_id=submitted.client_id,
        credential=submitted.credential,
        org_url=submitted.org_url,
        account_tenant_id=app.tenant_id,
    )
    return pending_flow_start(
        request,
        purpose=Purpose.REAUTHORIZE,
        tenant=app.tenant_id,
        credential=submitted.credential,
        connection=connection,
        requested_by=actor,
        client_id=submitted.client_id,
        org_url=submitted.org_url,
        secret_expires_on=submitted.secret_expires_on,
        app_version=app.version,
        connection_version=connection.version,
    )


# The admin-consent offer a re-authorization waits on, for the Connections page.
REAUTHORIZE_CONSENT_SESSION_KEY = "reauthorize.admin_consent"


def _is_active_admin(user: User, account_id: int) -> bool:
    return Membership.objects.filter(
        account_id=account_id, user=user, role=Membership.Role.ADMIN, is_blocked=False
    ).exists()


def connection_reauthorize(
    *,
    pending: PendingAuthorization,
    credentials: AppCredentials,
    identity: ProvenIdentity,
    actor: User,
) -> DynamicsConnection:
    """Swap proven credentials and tokens in, under row locks, if nothing changed meanwhile."""
    with transaction.atomic():
        connection = (
            DynamicsConnection.objects.select_for_update()
            .select_related("account")
            .get(pk=pending.connection_id)
        )
        app = EntraApp.objects.select_for_update().get(account_id=connection.account_id)
        if (app.version, connection.version) != (pending.app_version, pending.connection_version):
            raise Refused(
                "Another admin changed this connection while you were signing in, so your "
                "change was not applied. Check the connection and try again if needed.",
                code="changed_meanwhile",
            )
        app.client_id = pending.client_id
        app.store_credentials(credentials, expires_on=pending.secret_expires_on)
        app.version += 1
        app.save()
        connection.org_url = pending.org_url
        connection.token_cache_encrypted = crypto.encrypt(
            identity.token_cache, context=connection.token_cache_context()
        )
        connection.home_account_id = identity.home_account_id
        connection.connected_as = identity.username
        connection.status = DynamicsConnection.Status.CONNECTED
        connection.last_error_code = connection.last_error_message = ""
        connection.claims_challenge = ""
        connection.retry_after_until = None
        connection.last_verified_at = app.credential_set_at
        connection.version += 1
        connection.save()
        audit_record(
            account=connection.account,
            actor=actor,
            action="reauthorize",
            outcome=AuditEvent.Outcome.SUCCESS,
            detail=f"Re-authorized with Client Id {pending.client_id} for {pending.org_url} "
            f"as {identity.username}.",
        )
        pending.delete()
    return connection


def reauthorization_record_failure(
    *, connection: DynamicsConnection, actor: User, client_id: str, message: str, code: str
) -> None:
    with_client = f" with Client Id {client_id}" if client_id else ""
    audit_record(
        account=connection.account,
        actor=actor,
        action="reauthorize",
        outcome=AuditEvent.Outcome.FAILURE,
        detail=f"Re-authorization{with_client} failed: {message}",
        error_code=code,
    )


class ReauthorizeHandler(PendingFlowHandler):
    """The re-authorization flow's handler for ``/OAuth2``, one per callback."""

    def credentials(self, request: HttpRequest, flow: StoredFlow) -> AppCredentials:
        if not request.user.is_authenticated:
            raise Refused(
                "You were signed out before the re-authorization finished. Sign in and try again.",
                code="signed_out",
            )
        credentials = super().credentials(request, flow)
        if self.pending.requested_by_id != request.user.pk or not _is_active_admin(
            request.user, self.pending.connection.account_id
        ):
            raise Refused(
                "Only the admin who started this re-authorization can complete it. Nothing "
                "was changed.",
                code="actor_mismatch",
            )
        return credentials

    def completed(
        self, request: HttpRequest, flow: StoredFlow, identity: ProvenIdentity
    ) -> HttpResponse:
        try:
            self.prove_dynamics_access(identity)
            connection = connection_reauthorize(
                pending=self.pending,
                credentials=self.proven,
                identity=identity,
                actor=request.user,
            )
        except Refused as refused:
            return self.failed(request, flow, refused)
        request.session.pop(REAUTHORIZE_CONSENT_SESSION_KEY, None)
        messages.success(
            request,
            f"The Dynamics connection was re-authorized and works: connected to "
            f"{connection.org_url} as {connection.connected_as}.",
        )
        return redirect("connections")

    def failed(
        self, request: HttpRequest, flow: StoredFlow | None, error: EntraError
    ) -> HttpResponse:
        if not request.user.is_authenticated:
            return render_failure(request, error, Audience.ADMIN)
        pending = self.pending or pending_of(context_of(flow, error))
        explanation = pending_explained(error, pending)
        if explanation.cancelled:
            messages.info(
                request, "You cancelled at Microsoft's sign-in. The connection was not changed."
            )
        else:
            messages.error(request, f"Re-authorization failed: {explanation.message}")
        if error.code == "pending_in_progress":
            return redirect("connections")  # the request that claimed it finishes (and audits)
        connection = self._connection_of(request, pending)
        if connection is not None:
            reauthorization_record_failure(
                connection=connection,
                actor=request.user,
                client_id=pending.client_id if pending else "",
                message=explanation.message,
                code=error.code,
            )
        if pending is not None and flow is not None and needs_admin_consent(error):
            # Kept for the consent flow: an admin's approval resumes this re-authorization.
            offer = admin_consent_offer(request, pending=pending, tenant=flow.tenant)
            request.session[REAUTHORIZE_CONSENT_SESSION_KEY] = offer
        else:
            pending_discard(pending)
        return redirect("connections")

    @staticmethod
    def _connection_of(
        request: HttpRequest, pending: PendingAuthorization | None
    ) -> DynamicsConnection | None:
        """The connection to audit the failure on, when this person is one of its admins:
        the pending row's, or (once that is gone) the one of the account they work in."""
        if pending is not None and pending.connection is not None:
            connection = pending.connection
            return connection if _is_active_admin(request.user, connection.account_id) else None
        try:
            admin = current_membership(request, admin=True)
        except (Http404, PermissionDenied):  # not an admin here: nothing of theirs to audit
            return None
        return (
            DynamicsConnection.objects.select_related("account")
            .filter(account=admin.account)
            .first()
        )
