"""Certificate credentials the product generates: no secret to paste, leak or let expire.

Choosing "Certificate" makes a key pair and a self-signed certificate (``lib/certificates.py``)
and keeps the private key encrypted in a pending row, exactly where a submitted secret would
wait; only the public certificate is ever offered, for upload to the app registration. After
the upload, Continue runs the pre-flight with it (AADSTS700027: not uploaded yet) and then the
authorization that proves it; only a proven certificate replaces the current credential, so a
rotation has no gap and a failed switch changes nothing.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User
from connections.models import DynamicsConnection, PendingAuthorization
from connections.pending import (
    SubmittedCredential,
    pending_create,
    pending_flow_resume,
    pending_reopen,
    pending_submitted,
)
from connections.preflight import app_setup_check
from lib import certificates
from lib.entra.flows import flow_lifetime
from lib.entra.types import Purpose

# Long enough to download the certificate and upload it in the Azure portal.
UPLOAD_MINUTES = 60


def _generated(subject: str) -> SubmittedCredential:
    private_key, certificate = certificates.generate(
        subject, valid_days=settings.CERTIFICATE_VALID_MONTHS * 30 + 5
    )
    return SubmittedCredential(private_key, certificate.pem)


def _upload_window():
    return timezone.now() + max(timedelta(minutes=UPLOAD_MINUTES), flow_lifetime())


def certificate_for_signup(*, company_name: str, **fields: object) -> PendingAuthorization:
    """A new certificate for a signup, waiting for its upload (nothing is created yet)."""
    return pending_create(
        purpose=Purpose.SIGNUP,
        credential=_generated(f"Dynamics Connect for {company_name}"),
        company_name=company_name,
        expires_at=_upload_window(),
        **fields,
    )


def certificate_for_connection(
    *, connection: DynamicsConnection, actor: User, client_id: str, org_url: str
) -> PendingAuthorization:
    """A new certificate for an existing connection, while the current credential keeps
    working: the versions are recorded, so a change meanwhile wins over this one."""
    app = connection.account.entra_app
    return pending_create(
        purpose=Purpose.REAUTHORIZE,
        credential=_generated(f"Dynamics Connect for {connection.account.company_name}"),
        connection=connection,
        requested_by=actor,
        client_id=client_id,
        org_url=org_url,
        app_version=app.version,
        connection_version=connection.version,
        expires_at=_upload_window(),
    )


def certificate_of(pending: PendingAuthorization) -> certificates.Certificate:
    return certificates.load(pending.certificate_pem)


def certificate_continue(request: HttpRequest, *, pending: PendingAuthorization) -> str:
    """Once the certificate is uploaded: the pre-flight with it (SetupProblem on the field to
    fix; ``certificate`` when Entra ID does not know it yet), then the authorization that
    proves it; the Entra ID URL to go to."""
    connection = pending.connection
    tenant_id = app_setup_check(
        client_id=pending.client_id,
        credential=pending_submitted(pending),
        org_url=pending.org_url,
        account_tenant_id=connection.account.entra_app.tenant_id if connection else "",
    )
    pending_reopen(pending, for_=flow_lifetime())
    return pending_flow_resume(request, pending=pending, tenant=tenant_id)
