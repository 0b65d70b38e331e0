"""Tokens after signup: silent refresh, health checks, operator commands, and no leaks."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from accounts.models import Account, AuditEvent, EntraApp
from connections.health import connection_check
from connections.models import DynamicsConnection
from lib import crypto
from tests.people import SIGNUP_URL, signup_form

pytestmark = pytest.mark.django_db

# Valid long enough for WhoAmI, yet MSAL treats a token with under 5 minutes left as expired,
# so every silent call refreshes.
SHORT_LIFETIME = 120


@pytest.fixture
def connection(account) -> DynamicsConnection:
    return DynamicsConnection.objects.select_related("account").get()


def grants(emulator, grant_type: str) -> list[dict]:
    return [e for e in emulator.log() if e["endpoint"] == "token" and e["grant_type"] == grant_type]


def test_a_check_always_refreshes_so_that_passing_proves_the_whole_chain(connection, emulator):
    """A valid cached access token would prove neither the secret nor the refresh token."""
    cache_before = connection.token_cache_encrypted
    log_before = len(emulator.log())

    result = connection_check(connection=connection)

    assert result.ok
    new_requests = emulator.log()[log_before:]
    assert [(e["endpoint"], e["grant_type"]) for e in new_requests] == [
        ("token", "refresh_token"),
        ("whoami", None),
        *[("tables", None)] * 5,  # one row of each table the product reads
    ]
    connection.refresh_from_db()
    assert connection.token_cache_encrypted != cache_before


@pytest.mark.parametrize(
    "claims",
    [
        {"oid": "0b9e5f55-7a61-4d7c-9b0e-6f1a2b3c4d5e"},
        {"sub": "someone-else"},
        {"tid": "{other}", "iss": "{emulator}/{other}/v2.0"},
        {"aud": "00000000-0000-0000-0000-000000000000"},
    ],
    ids=["oid", "sub", "tid", "aud"],
)
def test_row_33_a_refresh_naming_someone_else_keeps_nothing_and_needs_reauthentication(
    connection, emulator, demo, claims
):
    values = {"other": demo.other_tenant_id, "emulator": emulator.url}
    emulator.fault(
        endpoint="token",
        grant_type="refresh_token",
        claims={k: v.format(**values) for k, v in claims.items()},
    )
    cache_before = connection.token_cache_encrypted
    log_before = len(emulator.log())

    result = connection_check(connection=connection)

    connection.refresh_from_db()
    assert not result.ok
    assert connection.status == DynamicsConnection.Status.NEEDS_REAUTH
    assert connection.last_error_code.startswith("refreshed_")
    assert connection.token_cache_encrypted == cache_before
    during_the_check = emulator.log()[log_before:]
    assert [e["endpoint"] for e in during_the_check] == ["token"], during_the_check


def test_an_expired_token_is_refreshed_once_and_the_cache_saved(emulator, demo, visitor):
    emulator.config(access_token_lifetime=SHORT_LIFETIME)
    visitor.sign_up()
    connection = DynamicsConnection.objects.select_related("account").get()
    cache_before = connection.token_cache_encrypted
    verified_before = connection.last_verified_at

    result = connection_check(connection=connection)

    assert result.ok
    assert len(grants(emulator, "refresh_token")) == 1
    connection.refresh_from_db()
    assert connection.token_cache_encrypted != cache_before
    assert connection.status == DynamicsConnection.Status.CONNECTED
    assert connection.last_verified_at > verified_before


def test_a_revoked_refresh_token_marks_the_connection_needs_reauthentication(
    emulator, demo, visitor
):
    emulator.config(access_token_lifetime=SHORT_LIFETIME)
    visitor.sign_up()
    connection = DynamicsConnection.objects.select_related("account").get()
    emulator.revoke(demo.admin)

    result = connection_check(connection=connection)

    connection.refresh_from_db()
    assert not result.ok
    assert connection.status == DynamicsConnection.Status.NEEDS_REAUTH
    assert connection.last_error_code == "AADSTS50173"
    assert "Re-authorize" in connection.last_error_message


def test_a_whoami_401_gets_one_more_refresh_then_needs_reauthentication(connection, emulator):
    emulator.fault(endpoint="whoami", status=401, count=2)

    result = connection_check(connection=connection)

    connection.refresh_from_db()
    assert not result.ok
    assert len(grants(emulator, "refresh_token")) == 2
    assert connection.status == DynamicsConnection.Status.NEEDS_REAUTH


def test_a_whoami_401_cured_by_another_refresh_stays_connected(connection, emulator):
    emulator.fault(endpoint="whoami", status=401, count=1)

    assert connection_check(connection=connection).ok
    assert len(grants(emulator, "refresh_token")) == 2


def test_dynamics_being_down_is_an_error_not_a_reauthentication(connection, emulator):
    emulator.fault(endpoint="whoami", status=503)

    connection_check(connection=connection)

    connection.refresh_from_db()
    assert connection.status == DynamicsConnection.Status.ERROR
    assert "try again later" in connection.last_error_message


def test_row_61_a_token_cache_no_key_opens_needs_reauthentication(connection, settings):
    settings.FIELD_ENCRYPTION_KEYS = [crypto.generate_key()]

    result = connection_check(connection=connection)

    connection.refresh_from_db()
    assert not result.ok
    assert connection.status == DynamicsConnection.Status.NEEDS_REAUTH


def test_the_test_connection_button_shows_the_result_and_records_it(connection, admin):
    response = admin.client.post(f"/settings/connections/{connection.pk}/test", follow=True)

    assert "Connection test passed" in response.content.decode()
    assert AuditEvent.objects.filter(action="connection_test", outcome="success").exists()


class TestCheckConnectionsCommand:
    def test_it_prints_a_table_and_exits_zero_when_all_are_connected(self, connection, capsys):
        call_command("check_connections")

        out = capsys.readouterr().out
        assert connection.account.account_id in out and "Connected" in out

    def test_it_prints_json_and_exits_non_zero_when_one_is_not_connected(
        self, connection, emulator, capsys
    ):
        emulator.fault(endpoint="whoami", status=503)

        with pytest.raises(CommandError) as raised:
            call_command("check_connections", "--json")

        assert raised.value.returncode == 1
        rows = json.loads(capsys.readouterr().out)
        assert rows[0]["account"] == connection.account.account_id
        assert rows[0]["ok"] is False and rows[0]["status"] == "Error"

    def test_it_checks_one_account_and_refuses_an_unknown_one(self, connection, capsys):
        call_command("check_connections", "--account", connection.account.account_id, "--json")
        assert len(json.loads(capsys.readouterr().out)) == 1

        with pytest.raises(CommandError, match="No connection"):
            call_command("check_connections", "--account", "nope-nope-nope")


class TestRotateEncryptionKeysCommand:
    def test_row_60_after_rotation_the_old_key_can_be_removed(self, connection, settings, capsys):
        old_key = settings.FIELD_ENCRYPTION_KEYS[0]
        new_key = crypto.generate_key()
        settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]

        call_command("rotate_encryption_keys")
        first = capsys.readouterr().out
        call_command("rotate_encryption_keys")
        second = capsys.readouterr().out

        assert "Re-encrypted 2 value(s); 0 already" in first
        assert "Re-encrypted 0 value(s); 2 already" in second
        settings.FIELD_ENCRYPTION_KEYS = [new_key]
        connection.refresh_from_db()
        app = connection.account.entra_app
        assert crypto.decrypt(app.credential_encrypted, context=app.credential_context())
        assert connection_check(connection=connection).ok

    def test_row_61_a_value_no_key_opens_is_reported_and_marked(self, connection, settings, capsys):
        settings.FIELD_ENCRYPTION_KEYS = [crypto.generate_key()]

        call_command("rotate_encryption_keys")

        captured = capsys.readouterr()
        assert "2 could not be decrypted" in captured.out
        assert connection.account.account_id in captured.err
        assert "client secret cannot be decrypted" in captured.err
        connection.refresh_from_db()
        assert connection.status == DynamicsConnection.Status.NEEDS_REAUTH


class TestNoSecretLeaks:
    def test_row_47_the_admin_shows_no_secret_ciphertext_or_token(self, connection, demo):
        operator = get_user_model().objects.create_superuser("operator", "op@example.com", "pw")
        client = Client()
        client.force_login(operator)
        pages = [
            "/admin/connections/dynamicsconnection/",
            f"/admin/connections/dynamicsconnection/{connection.pk}/change/",
            "/admin/accounts/account/",
            f"/admin/accounts/account/{connection.account.pk}/change/",
            "/admin/accounts/auditevent/",
            "/admin/accounts/entraapp/",
            f"/admin/accounts/entraapp/{connection.account.entra_app.pk}/change/",
            "/admin/accounts/user/",
        ]
        for url in pages:
            response = client.get(url)
            text = response.content.decode()
            assert response.status_code == 200, url
            assert demo.client_secret not in text, url
            assert connection.account.entra_app.credential_encrypted not in text, url
            assert connection.token_cache_encrypted[:40] not in text, url
        assert "never shown" in client.get(pages[1]).content.decode()
        assert "never shown" in client.get(pages[6]).content.decode()

    def test_the_admin_cannot_edit_credentials(self, connection):
        operator = get_user_model().objects.create_superuser("operator", "op@example.com", "pw")
        client = Client()
        client.force_login(operator)
        app = connection.account.entra_app
        before = (
            DynamicsConnection.objects.values().get(pk=connection.pk),
            EntraApp.objects.values().get(pk=app.pk),
        )

        client.post(
            f"/admin/connections/dynamicsconnection/{connection.pk}/change/",
            {"token_cache_encrypted": "x", "org_url": "https://evil.example"},
        )
        client.post(
            f"/admin/accounts/entraapp/{app.pk}/change/",
            {"credential_encrypted": "x", "client_id": "y"},
        )

        assert (
            DynamicsConnection.objects.values().get(pk=connection.pk),
            EntraApp.objects.values().get(pk=app.pk),
        ) == before

    def test_row_46_no_secret_code_or_token_reaches_any_log_record(
        self, emulator, demo, person, caplog
    ):
        caplog.set_level("DEBUG")
        emulator.config(access_token_lifetime=SHORT_LIFETIME)
        admin = person()
        redirect = admin.at_microsoft(admin.submit_signup())
        code = parse_qs(urlsplit(redirect).query)["code"][0]
        admin.follow(redirect)
        connection = DynamicsConnection.objects.select_related("account").get()
        connection_check(connection=connection)
        wrong = signup_form(demo, client_secret="Wrong~secret-value-0123456789ab")
        assert person().client.post(SIGNUP_URL, wrong).status_code == 200  # the pre-flight's
        emulator.fault(endpoint="token", grant_type="authorization_code", aadsts=7000215)
        person().sign_up()  # and one the callback's token request refuses

        cache = crypto.decrypt(
            connection.token_cache_encrypted, context=connection.token_cache_context()
        ).reveal()
        tokens = [
            v["secret"]
            for kind in ("AccessToken", "RefreshToken", "IdToken")
            for v in json.loads(cache).get(kind, {}).values()
        ]
        logged = caplog.text + repr([r.__dict__ for r in caplog.records])
        for needle in [
            demo.client_secret,
            "Wrong~secret",
            code,
            *tokens,
            connection.account.entra_app.credential_encrypted,
        ]:
            assert needle not in logged
        assert Account.objects.count() == 1


def test_check_connections_goes_on_after_an_unexpected_error(
    connection, other_account, monkeypatch, capsys
):
    from connections import health
    from connections.management.commands import check_connections

    other = DynamicsConnection.objects.get(account=other_account)
    real_check = health.connection_check

    def check(*, connection):
        if connection.pk == other.pk:
            raise RuntimeError("unexpected")
        return real_check(connection=connection)

    monkeypatch.setattr(check_connections, "connection_check", check)

    with pytest.raises(CommandError):
        call_command("check_connections", "--json")

    rows = {row["account"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows[connection.account.account_id]["ok"] is True
    assert rows[other.account.account_id]["code"] == "unexpected_error"
