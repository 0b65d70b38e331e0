"""`migrate` on a database made before EntraApp existed keeps every account working."""

from __future__ import annotations

import pytest
from django.db import connection as db_connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from accounts.models import Account, EntraApp
from connections.models import DynamicsConnection
from lib import crypto

APPS = ("accounts", "connections")
ADMIN_OID = "49172b14-1a8c-42d6-9573-c096ee974413"  # the demo seed's admin@contoso
BEFORE_ENTRA_APP = [("accounts", "0002_cache_table"), ("connections", "0001_initial")]


def migrate(targets) -> None:
    executor = MigrationExecutor(db_connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def latest() -> list[tuple[str, str]]:
    executor = MigrationExecutor(db_connection)
    return [key for key in executor.loader.graph.leaf_nodes() if key[0] in APPS]


@pytest.fixture
def old_database(transactional_db, demo):
    """The schema as the previous release left it, with an account it made: the connection
    held the client id, the encrypted secret and the tenant; the demo admin is its admin."""
    migrate(BEFORE_ENTRA_APP)
    apps = MigrationExecutor(db_connection).loader.project_state(BEFORE_ENTRA_APP).apps
    old_account = apps.get_model("accounts", "Account").objects.create(
        company_name="Contoso Ltd",
        phone="+14255550100",
        website="https://www.contoso.example",
        tenant_id=demo.tenant_id,
    )
    apps.get_model("connections", "DynamicsConnection").objects.create(
        account=old_account,
        client_id=demo.client_id,
        client_secret_encrypted=crypto.encrypt(
            demo.client_secret, context=f"account:{old_account.account_id}:client_secret"
        ),
        secret_set_at=timezone.now(),
        secret_expires_on=timezone.localdate().replace(year=timezone.localdate().year + 1),
        org_url=demo.org_url,
        tenant_id=demo.tenant_id,
        connected_as=demo.admin,
        status="connected",
    )
    admin = apps.get_model("accounts", "User").objects.create(
        username=f"{ADMIN_OID}.{demo.tenant_id}",
        tenant_id=demo.tenant_id,
        object_id=ADMIN_OID,
        email=demo.admin,
    )
    apps.get_model("accounts", "Membership").objects.create(
        account=old_account, user=admin, role="admin"
    )
    try:
        yield old_account.account_id
    finally:
        migrate(latest())


def test_an_account_made_before_the_migration_signs_in_and_reauthorizes(old_database, person, demo):
    migrate(latest())
    account = Account.objects.get(account_id=old_database)
    app = EntraApp.objects.get(account=account)
    assert (app.client_id, app.tenant_id, app.version) == (demo.client_id, demo.tenant_id, 1)
    assert app.credentials().client_secret.reveal() == demo.client_secret
    assert app.credential_expires_on is not None

    admin = person()
    assert admin.sign_in(account).status_code == 302  # the stored secret still works
    page = admin.reauthorize()

    assert "was re-authorized and works" in page.content.decode()
    connection = DynamicsConnection.objects.get(account=account)
    assert connection.status == DynamicsConnection.Status.CONNECTED
    app.refresh_from_db()
    assert app.version == 2
    assert app.credentials().client_secret.reveal() == demo.second_client_secret
