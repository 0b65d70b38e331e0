"""Credentials waiting for Entra ID to prove them: stored encrypted, claimed once, then gone.

The pending row is the only place a submitted client secret (or a generated certificate's
private key) waits; it is decrypted here, by the pre-flight and by the callback that claims the
row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.http import HttpRequest
from django.utils import timezone

from accounts.aadsts import Audience, Explanation
from accounts.failures import Refused, describe
from connections.models import PendingAuthorization
from lib import crypto, dynamics
from lib.dynamics import dynamics_scope
from lib.entra import flows
from lib.entra.errors import EntraError
from lib.entra.flows import flow_lifetime
from lib.entra.types import AppCredentials, ProvenIdentity, Purpose, StoredFlow, redirect_uri
from lib.secret import Secret


@dataclass(frozen=True)
class SubmittedCredential:
    """A credential as submitted: a client secret, or a generated certificate's private key
    with its public certificate (PEM)."""

    value: Secret = field(repr=False)
    certificate_pem: str = ""

    def on(self, client_id: str, tenant: str) -> AppCredentials:
        if self.certificate_pem:
            return AppCredentials(
                client_id, tenant, private_key=self.value, certificate_pem=self.certificate_pem
            )
        return AppCredentials(client_id, tenant, client_secret=self.value)


def pending_create(*, credential: SubmittedCredential, **fields: object) -> PendingAuthorization:
    """Keep submitted credentials (the secret or private key encrypted) until Entra ID has
    proven them; drop expired and claimed-and-abandoned ones meanwhile."""
    PendingAuthorization.objects.filter(expires_at__lt=timezone.now()).delete()
    pending = PendingAuthorization(certificate_pem=credential.certificate_pem, **fields)
    pending.credential_encrypted = crypto.encrypt(
        credential.value, context=pending.credential_context()
    )
    pending.save()
    return pending


def pending_flow_start(
    request: HttpRequest,
    *,
    purpose: Purpose,
    tenant: str,
    credential: SubmittedCredential,
    **fields: object,
) -> str:
    """Keep submitted credentials pending and start the flow that proves them; returns the
    Entra ID URL to send the browser to. The flow's context is the pending row's id, nothing
    more. If the flow cannot start (Entra ID unreachable), the row is dropped and the error
    raised."""
    pending = pending_create(purpose=purpose, credential=credential, **fields)
    try:
        return pending_flow_resume(request, pending=pending, tenant=tenant)
    except EntraError:
        pending_discard(pending)
        raise


def pending_flow_resume(request: HttpRequest, *, pending: PendingAuthorization, tenant: str) -> str:
    """Start the flow that proves a pending row's credentials (again, after an admin's consent
    or a certificate's upload); the Entra ID URL to go to. A re-authorization asks Entra ID for
    a fresh sign-in with the connection's current user first in the account picker, and sends
    the Conditional Access claims its last refresh was challenged with."""
    connection = pending.connection
    return flows.start(
        request,
        purpose=Purpose(pending.purpose),
        client_id=pending.client_id,
        tenant=tenant,
        scopes=(dynamics_scope(pending.org_url),),
        context={"pending": str(pending.pk)},
        fresh_sign_in_as=connection.connected_as if connection else "",
        claims_challenge=connection.claims_challenge if connection else "",
    )


def pending_waiting(
    pk: str | None, *, purpose: Purpose | None = None, connection: object | None = None
) -> PendingAuthorization | None:
    """The pending row ``pk`` while it still waits: not expired, and of ``purpose`` and
    ``connection`` when they are given; None otherwise."""
    pending = pending_of({"pending": pk}) if pk else None
    if pending is None or pending.expires_at <= timezone.now():
        return None
    if purpose is not None and pending.purpose != purpose:
        return None
    if connection is not None and pending.connection_id != connection.pk:
        return None
    return pending


def pending_reopen(pending: PendingAuthorization, *, for_: timedelta) -> None:
    """Let the row wait ``for_`` longer, and be claimed once more (a flow that failed claimed
    it; the one that resumes it must claim it again)."""
    PendingAuthorization.objects.filter(pk=pending.pk).update(
        consumed_at=None, expires_at=timezone.now() + for_
    )


def pending_explained(error: EntraError, pending: PendingAuthorization | None) -> Explanation:
    """The admin's words for a failed flow, filled in with the values they submitted."""
    return describe(
        error,
        Audience.ADMIN,
        client_id=pending.client_id if pending else "",
        org_url=pending.org_url if pending else "",
        redirect_uri=redirect_uri(identity_only=False),
    )


def pending_of(context: dict) -> PendingAuthorization | None:
    """The pending row a flow's context names, if it still exists."""
    return (
        PendingAuthorization.objects.select_related("connection__account")
        .filter(pk=context.get("pending"))
        .first()
    )


def pending_claim(*, flow: StoredFlow) -> tuple[PendingAuthorization, AppCredentials]:
    """The flow's pending row, claimed for this request alone, and its credentials.

    A reloaded or doubled callback may run twice at once; only the request that claims the row
    completes it, and the other says so without touching it.
    """
    pending = pending_of(flow.context)
    if pending is None or pending.purpose != flow.purpose:
        raise Refused(
            "This link was already used or has expired, so nothing was changed. Please submit "
            "the form again.",
            code="pending_missing",
        )
    claimed = PendingAuthorization.objects.filter(
        pk=pending.pk, consumed_at__isnull=True, expires_at__gt=timezone.now()
    ).update(consumed_at=timezone.now())
    if not claimed:
        if pending.consumed_at is None:
            minutes = int(flow_lifetime().total_seconds() // 60)
            raise Refused(
                f"This took longer than {minutes} minutes, so it expired. Please submit the "
                "form again.",
                code="pending_expired",
            )
        raise Refused(
            "This is already being completed in another tab or window. Check there.",
            code="pending_in_progress",
        )
    try:
        return pending, pending_credentials(pending, tenant=flow.tenant)
    except crypto.UndecryptableValue:
        raise Refused(
            "The request could not be completed. Please submit the form again.",
            code="undecryptable_pending",
        ) from None


def pending_credentials(pending: PendingAuthorization, *, tenant: str) -> AppCredentials:
    """The pending row's credentials on ``tenant`` (``crypto.UndecryptableValue`` if no key
    opens them)."""
    return pending_submitted(pending).on(pending.client_id, tenant)


def pending_submitted(pending: PendingAuthorization) -> SubmittedCredential:
    """The credential kept in a pending row (``crypto.UndecryptableValue`` if no key opens it)."""
    value = crypto.decrypt(pending.credential_encrypted, context=pending.credential_context())
    return SubmittedCredential(value, pending.certificate_pem)


def pending_discard(pending: PendingAuthorization | None) -> None:
    if pending is not None:
        PendingAuthorization.objects.filter(pk=pending.pk).delete()


class PendingFlowHandler:
    """What the signup and re-authorization handlers share: one per callback, it claims the
    flow's pending row and keeps it, and the credentials it proves, for ``completed``."""

    def __init__(self) -> None:
        self.pending: PendingAuthorization | None = None
        self.proven: AppCredentials | None = None

    def credentials(self, request: HttpRequest, flow: StoredFlow) -> AppCredentials:
        self.pending, self.proven = pending_claim(flow=flow)
        return self.proven

    def prove_dynamics_access(self, identity: ProvenIdentity) -> None:
        """WhoAmI on the pending org with the new token; ``Refused`` when Dynamics says no."""
        try:
            dynamics.who_am_i(self.pending.org_url, identity.access_token)
        except dynamics.DynamicsError as error:
            raise Refused(error.message, code=f"dynamics_{error.code}") from None
