"""Keeping a connection alive (SPEC 11): throttling understood, privileges named, disconnect."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.utils import timezone

from accounts.models import AuditEvent
from connections.health import connection_check
from connections.models import DynamicsConnection
from tests.demo import demo_org

pytestmark = pytest.mark.django_db
Status = DynamicsConnection.Status


@pytest.fixture
def connection(account) -> DynamicsConnection:
    return DynamicsConnection.objects.select_related("account").get()


def requests_to(emulator, endpoint: str) -> int:
    return len([e for e in emulator.log() if e["endpoint"] == endpoint])


# --- Throttling ------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["whoami", "tables"])
def test_throttling_is_busy_never_broken_and_its_retry_after_is_honoured(
    connection, emulator, endpoint
):
    emulator.fault(endpoint=endpoint, throttle=120)

    result = connection_check(connection=connection)

    connection.refresh_from_db()
    assert not result.ok and result.busy
    assert connection.status == Status.BUSY
    assert "asked to wait 120 s" in connection.last_error_message
    wait = (connection.retry_after_until - timezone.now()).total_seconds()
    assert 100 < wait <= 120
    whoami_before = requests_to(emulator, "whoami")
    out = call_command_output("check_connections", "--json")
    assert requests_to(emulator, "whoami") == whoami_before  # not asked again before then
    assert out[0]["code"] == "throttled" and out[0]["ok"]


def call_command_output(*args) -> list[dict]:
    from io import StringIO

    buffer = StringIO()
    call_command(*args, stdout=buffer)
    return json.loads(buffer.getvalue())


def test_test_connection_under_throttling_says_busy_in_plain_words(admin, emulator):
    emulator.fault(endpoint="whoami", throttle=30)
    connection = admin.connection

    admin.client.post(f"/settings/connections/{connection.pk}/test")
    page = admin.client.get("/settings/connections").content.decode()

    assert "Dynamics is busy, not broken" in page
    assert "asked to wait 30 s" in page
    assert ">Busy<" in page
    assert "Needs re-authentication" not in page


def test_a_5xx_from_dynamics_is_its_trouble_not_a_credential_problem(connection, emulator):
    emulator.fault(endpoint="whoami", status=503)

    connection_check(connection=connection)

    connection.refresh_from_db()
    assert connection.status == Status.ERROR
    assert "Dynamics 365 is having trouble" in connection.last_error_message


# --- Privileges --------------------------------------------------------------------------------


def test_a_missing_privilege_is_named_per_table_with_the_fix(connection, emulator, demo):
    emulator.seed(
        {
            "dynamics_orgs": [
                demo_org(
                    demo,
                    roles={demo.admin: ["prvReadContact", "prvReadAccount", "prvReadCampaign"]},
                )
            ]
        }
    )

    result = connection_check(connection=connection)

    connection.refresh_from_db()
    assert result.ok
    assert connection.status == Status.WARNINGS
    assert "cannot read Leads: give them a security role with Read on Lead" in (
        connection.last_error_message
    )
    assert "cannot read Opportunities: give them a security role with Read on Opportunity" in (
        connection.last_error_message
    )
    assert "cannot read Contacts" not in connection.last_error_message
    assert "prvReadLead" in connection.last_error_code


# --- Disconnect --------------------------------------------------------------------------------


def test_disconnect_deletes_the_tokens_is_audited_and_sign_in_still_works(
    admin, person, demo, emulator
):
    connection = admin.connection
    confirm = admin.client.get(f"/settings/connections/{connection.pk}/disconnect")
    assert "Disconnect Dynamics?" in confirm.content.decode()

    admin.client.post(f"/settings/connections/{connection.pk}/disconnect")

    connection.refresh_from_db()
    assert connection.status == Status.DISCONNECTED
    assert connection.token_cache_encrypted == ""
    assert AuditEvent.objects.filter(action="disconnect").exists()
    tokens_before = requests_to(emulator, "token")
    result = connection_check(connection=connection)
    assert not result.ok and result.code == "disconnected"
    assert requests_to(emulator, "token") == tokens_before  # nothing refreshes it any more
    page = admin.client.get("/settings/connections").content.decode()
    assert "Use the key icon to connect again" in page

    member = person(demo.member)
    assert member.sign_in(admin.account).status_code == 302  # the app registration stays

    page = admin.reauthorize()  # connect again, through the key icon's flow
    connection.refresh_from_db()
    assert connection.status == Status.CONNECTED
    assert connection.token_cache_encrypted


# --- Conditional Access claims challenges -------------------------------------------------------


def test_a_claims_challenge_on_refresh_reaches_the_next_authorize_request(admin, emulator):
    from urllib.parse import parse_qs, urlsplit

    challenge = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}'
    emulator.fault(endpoint="token", grant_type="refresh_token", claims_challenge=challenge)
    connection = admin.connection

    result = connection_check(connection=connection)

    connection.refresh_from_db()
    assert not result.ok
    assert connection.status == Status.NEEDS_REAUTH
    assert connection.claims_challenge == challenge
    authorize_url = admin.start_reauthorization()
    claims = parse_qs(urlsplit(authorize_url).query)["claims"][0]
    assert json.loads(claims)["access_token"]["acrs"] == {"essential": True, "value": "c1"}

    page = admin.follow(admin.at_microsoft(authorize_url))  # the admin satisfies the policy
    assert page["Location"] == "/settings/connections"
    connection.refresh_from_db()
    assert connection.claims_challenge == ""
    assert connection.status == Status.CONNECTED
