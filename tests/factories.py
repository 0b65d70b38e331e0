"""Rows as a finished signup leaves them, for tests and the benchmark (no browser needed)."""

from __future__ import annotations

from django.utils import timezone

from accounts.models import Account
from connections import crypto
from connections.models import DynamicsConnection
from tests.demo import Demo


def connected_account(
    demo: Demo,
    company_name: str = "Contoso Ltd",
    *,
    client_secret: str | None = None,
    tenant_id: str | None = None,
) -> Account:
    """An account with a Connected Dynamics connection on the demo app (no token cache: sign-in
    does not use one)."""
    account = Account.objects.create(
        company_name=company_name,
        phone="+14255550100",
        website="https://www.contoso.example",
        tenant_id=tenant_id or demo.tenant_id,
    )
    connection = DynamicsConnection(
        account=account,
        client_id=demo.client_id,
        org_url=demo.org_url,
        tenant_id=account.tenant_id,
        secret_set_at=timezone.now(),
        status=DynamicsConnection.Status.CONNECTED,
        connected_as=demo.admin,
    )
    connection.client_secret_encrypted = crypto.encrypt(
        client_secret or demo.client_secret, context=connection.secret_context()
    )
    connection.save()
    return account
