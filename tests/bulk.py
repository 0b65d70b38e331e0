"""Accounts seeded in bulk (three INSERTs for any number), to show that a page or a sign-in
costs the same with one account as with ten thousand."""

from __future__ import annotations

from django.utils import timezone

from accounts.models import Account, EntraApp
from connections.models import DynamicsConnection


def add_accounts(count: int) -> None:
    """``count`` more accounts, each with an app and a Dynamics connection."""
    now = timezone.now()
    accounts = Account.objects.bulk_create(
        Account(company_name=f"Company {n}", phone="+14255550100", website="https://x.example")
        for n in range(count)
    )
    EntraApp.objects.bulk_create(
        EntraApp(
            account=a,
            client_id="00000000-0000-4000-8000-000000000000",
            tenant_id="00000000-0000-4000-8000-000000000001",
            credential_encrypted="x",
            credential_set_at=now,
        )
        for a in accounts
    )
    DynamicsConnection.objects.bulk_create(
        DynamicsConnection(account=a, org_url="https://x.crm.dynamics.com") for a in accounts
    )
