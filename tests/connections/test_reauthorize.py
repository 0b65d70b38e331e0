"""The Connections page and re-authorization through the key icon's form."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent, EntraApp, Membership
from connections.models import DynamicsConnection, PendingAuthorization
from lib import crypto
from tests.people import CONNECTIONS_URL

pytestmark = pytest.mark.django_db


def stored_row(connection: DynamicsConnection) -> dict:
    """The connection's row and its account's app row, as stored."""
    return {
        **DynamicsConnection.objects.values().get(pk=connection.pk),
        **{
            f"app_{k}": v
            for k, v in EntraApp.objects.values().get(account=connection.account_id).items()
        },
    }


def test_the_page_shows_the_dynamics_connection_and_its_health(admin, demo):
    text = admin.client.get(CONNECTIONS_URL).content.decode()

    assert "My Settings" in text and "Settings" in text and ">Connections</li>" in text
    assert ">CRM<" in text and ">Dynamics<" in text
    assert demo.org_url in text and demo.client_id in text
    assert "set on" in text
    assert demo.admin in text
    assert 'class="badge badge-ok">Connected<' in text
    assert 'aria-label="Re-authorize Dynamics connection"' in text
    assert "Test connection" in text
    assert "Account created; Dynamics" in text  # the signup's audit event


def test_the_modal_and_its_fallback_page_offer_the_same_prefilled_form(admin, demo):
    for page in (admin.client.get(CONNECTIONS_URL), admin.client.get(admin.reauthorize_url())):
        text = page.content.decode()
        assert "Re-authorize Dynamics" in text
        for label in ("Client Id", "Client Secret", "Application Id URI", "Secret expires on"):
            assert f">{label}</label>" in text
        assert f'value="{demo.client_id}"' in text
        assert f'value="{demo.org_url}"' in text
        assert demo.client_secret not in text
    modal = admin.client.get(CONNECTIONS_URL).content.decode()
    assert '<dialog id="reauthorize-dialog"' in modal
    assert f'href="{admin.reauthorize_url()}"' in modal  # works without JavaScript


def test_reauthorizing_with_new_values_replaces_the_credentials(admin, demo):
    before = stored_row(admin.connection)

    page = admin.reauthorize(secret_expires_on="2099-01-31")

    after = stored_row(admin.connection)
    admin.connection.refresh_from_db()
    assert after["status"] == DynamicsConnection.Status.CONNECTED
    assert after["version"] == before["version"] + 1
    assert after["app_credential_set_at"] > before["app_credential_set_at"]
    assert after["token_cache_encrypted"] != before["token_cache_encrypted"]
    secret = crypto.decrypt(
        after["app_credential_encrypted"],
        context=admin.connection.account.entra_app.credential_context(),
    )
    assert secret.reveal() == demo.second_client_secret
    assert str(after["app_credential_expires_on"]) == "2099-01-31"
    assert "was re-authorized and works" in page.content.decode()
    event = AuditEvent.objects.filter(action="reauthorize").get()
    assert event.outcome == AuditEvent.Outcome.SUCCESS
    assert not PendingAuthorization.objects.exists()


def test_row_14_a_wrong_secret_changes_nothing_and_is_explained_next_to_it(admin, emulator, demo):
    before = stored_row(admin.connection)
    authorize_requests = len([e for e in emulator.log() if e["endpoint"] == "authorize"])

    page = admin.submit_reauthorization(client_secret="Wrong~secret-value-0123456789abc")

    assert stored_row(admin.connection) == before
    assert page.status_code == 200
    error = str(page.context["form"].errors["client_secret"][0])
    assert error.startswith("Microsoft rejected the Client Secret")
    assert "Wrong~secret" not in page.content.decode()
    assert not PendingAuthorization.objects.exists()
    after = len([e for e in emulator.log() if e["endpoint"] == "authorize"])
    assert after == authorize_requests  # nobody was sent to Microsoft


def test_a_callback_that_rejects_the_secret_changes_nothing_and_explains_why(admin, emulator):
    """A secret the pre-flight accepted, refused when the code is redeemed (revoked meanwhile)."""
    before = stored_row(admin.connection)
    emulator.fault(endpoint="token", grant_type="authorization_code", aadsts=7000215)

    page = admin.reauthorize()

    assert stored_row(admin.connection) == before
    text = page.content.decode()
    assert "Re-authorization failed" in text
    assert "Microsoft rejected the Client Secret" in text
    assert 'class="badge badge-ok">Connected<' in text
    event = AuditEvent.objects.filter(action="reauthorize").get()
    assert (event.outcome, event.error_code) == (AuditEvent.Outcome.FAILURE, "AADSTS7000215")


@pytest.mark.parametrize(
    "fault",
    [
        {"endpoint": "token", "grant_type": "authorization_code", "aadsts": 7000222},
        {"endpoint": "token", "grant_type": "authorization_code", "aadsts": 65001},
        {"endpoint": "token", "grant_type": "authorization_code", "status": 503},
        {"endpoint": "token", "grant_type": "authorization_code", "delay": 1.5},
        {"endpoint": "token", "grant_type": "authorization_code", "claims": {"nonce": "not-ours"}},
        {"endpoint": "whoami", "status": 401},
        {"endpoint": "whoami", "status": 503},
        {"endpoint": "authorize", "aadsts": 50105},
    ],
    ids=[
        "expired-secret",
        "consent",
        "5xx",
        "timeout",
        "nonce",
        "whoami-401",
        "whoami-503",
        "not-assigned",
    ],
)
def test_row_58_any_failure_leaves_the_stored_connection_byte_for_byte(
    admin, emulator, settings, fault
):
    settings.ENTRA_HTTP_TIMEOUT = 0.5
    before = stored_row(admin.connection)
    emulator.fault(**fault)

    page = admin.reauthorize()

    assert stored_row(admin.connection) == before
    assert "Re-authorization failed" in page.content.decode()
    assert AuditEvent.objects.get(action="reauthorize").outcome == AuditEvent.Outcome.FAILURE


def test_row_20_a_re_authorization_without_a_refresh_token_changes_nothing(admin, emulator):
    before = stored_row(admin.connection)
    emulator.fault(
        endpoint="token", grant_type="authorization_code", response={"refresh_token": None}
    )

    page = admin.reauthorize()

    assert stored_row(admin.connection) == before
    assert "did not issue a refresh token" in page.content.decode()


def test_cancelling_changes_nothing(admin, emulator):
    emulator.fault(endpoint="authorize", aadsts=65004, error="access_denied")
    before = stored_row(admin.connection)

    page = admin.reauthorize()

    assert stored_row(admin.connection) == before
    assert "You cancelled" in page.content.decode()


def test_an_org_in_another_tenant_is_refused(admin, emulator, demo):
    other_org = demo.org_url.replace("127.0.0.1", "localhost")
    emulator.seed(
        {
            "dynamics_orgs": [
                {
                    "url": other_org,
                    "tenant": demo.other_tenant_id,
                    "name": "Fabrikam CRM",
                    "organization_id": "9c0a5f0e-5b0c-4f4e-8d8e-1f2a3b4c5d6e",
                    "business_unit_id": "8b1a4e0d-4a0b-4e3d-9c7d-0e1f2a3b4c5d",
                    "members": [demo.outsider],
                }
            ]
        }
    )
    before = stored_row(admin.connection)

    page = admin.submit_reauthorization(org_url=other_org)

    assert stored_row(admin.connection) == before
    error = str(page.context["form"].errors["org_url"][0])
    assert "belongs to another Microsoft Entra tenant" in error


def test_a_replayed_callback_changes_nothing(admin, demo):
    redirect = admin.at_microsoft(admin.start_reauthorization())
    admin.follow(redirect)
    after_first = stored_row(admin.connection)

    replay = admin.follow(redirect)

    assert replay.status_code == 302 and replay["Location"] == CONNECTIONS_URL
    assert stored_row(admin.connection) == after_first
    assert "already used" in admin.client.get(CONNECTIONS_URL).content.decode()
    failure = AuditEvent.objects.get(action="reauthorize", outcome=AuditEvent.Outcome.FAILURE)
    assert failure.error_code == "flow_replayed"


def test_an_expired_pending_reauthorization_changes_nothing(admin, demo):
    before = stored_row(admin.connection)
    redirect = admin.at_microsoft(admin.start_reauthorization())
    PendingAuthorization.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    admin.follow(redirect)

    assert stored_row(admin.connection) == before
    failure = AuditEvent.objects.get(action="reauthorize", outcome=AuditEvent.Outcome.FAILURE)
    assert failure.error_code == "pending_expired"


def test_a_re_authorization_link_older_than_its_lifetime_is_audited(
    admin, demo, settings, monkeypatch
):
    from lib.entra import flows

    before = stored_row(admin.connection)
    redirect = admin.at_microsoft(admin.start_reauthorization())
    later = flows.time.time() + settings.AUTH_FLOW_TTL_MINUTES * 60 + 1
    monkeypatch.setattr(flows.time, "time", lambda: later)

    response = admin.follow(redirect)

    assert response["Location"] == CONNECTIONS_URL
    assert stored_row(admin.connection) == before
    failure = AuditEvent.objects.get(action="reauthorize", outcome=AuditEvent.Outcome.FAILURE)
    assert failure.error_code == "flow_expired"


def test_row_59_a_doubled_callback_completes_once_and_the_second_changes_nothing(admin, demo):
    """A reload while the first request is still at Microsoft: the second request finds the
    pending row claimed and leaves it to the first."""
    from connections.models import PendingAuthorization as Pending

    redirect = admin.at_microsoft(admin.start_reauthorization())
    Pending.objects.update(consumed_at=timezone.now())  # the first request has claimed it
    before = stored_row(admin.connection)

    admin.follow(redirect)

    assert stored_row(admin.connection) == before
    assert Pending.objects.count() == 1  # still the first request's to finish
    assert "already being completed" in admin.client.get(CONNECTIONS_URL).content.decode()
    assert not AuditEvent.objects.filter(action="reauthorize").exists()  # the first one says


def test_row_57_a_re_authorization_that_lost_the_race_changes_nothing(admin, demo):
    """Start A, start B, finish B, finish A: A must not overwrite B's credentials."""
    redirect_a = admin.at_microsoft(admin.start_reauthorization())
    redirect_b = admin.at_microsoft(admin.start_reauthorization())
    admin.follow(redirect_b)
    after_b = stored_row(admin.connection)

    admin.follow(redirect_a)

    assert stored_row(admin.connection) == after_b
    page = admin.client.get(CONNECTIONS_URL).content.decode()
    assert "Another admin changed this connection" in page


@pytest.mark.skipif(
    db_connection.vendor == "sqlite",
    reason="SQLite has no row locks and one writer at a time; CI runs this on PostgreSQL.",
)
@pytest.mark.django_db(transaction=True)
def test_row_57_two_concurrent_reauthorizations_leave_one_consistent_winner(person):
    admin = person()
    assert admin.sign_up().status_code == 302
    demo = admin.demo
    clients = [admin.client, Client()]
    clients[1].cookies = admin.client.cookies  # the same admin, two tabs
    redirects = [
        admin.at_microsoft(admin.start_reauthorization(client_secret=s))
        for s in (demo.client_secret, demo.second_client_secret)
    ]
    barrier = threading.Barrier(2)
    outcomes: list[int] = []

    def finish(client: Client, redirect: str) -> None:
        barrier.wait()
        try:
            parts = urlsplit(redirect)
            outcomes.append(client.get(f"{parts.path}?{parts.query}").status_code)
        finally:
            db_connection.close()

    threads = [
        threading.Thread(target=finish, args=pair) for pair in zip(clients, redirects, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert outcomes == [302, 302]
    events = AuditEvent.objects.filter(action="reauthorize")
    assert sorted(events.values_list("outcome", flat=True)) == ["failure", "success"]
    row = stored_row(admin.connection)
    assert (row["version"], row["app_version"]) == (2, 2)
    winner = crypto.decrypt(
        row["app_credential_encrypted"],
        context=admin.connection.account.entra_app.credential_context(),
    ).reveal()
    assert winner in (demo.client_secret, demo.second_client_secret)
    crypto.decrypt(row["token_cache_encrypted"], context=admin.connection.token_cache_context())


def test_row_38_a_member_gets_a_plain_403_on_every_connections_url(admin, member):
    before = stored_row(admin.connection)

    for method, url in [
        ("get", CONNECTIONS_URL),
        ("get", admin.reauthorize_url()),
        ("post", admin.reauthorize_url()),
        ("post", f"{CONNECTIONS_URL}/{admin.connection.pk}/test"),
        ("post", f"{CONNECTIONS_URL}/{admin.connection.pk}/secret-expiry"),
    ]:
        response = getattr(member.client, method)(url)
        assert response.status_code == 403, url
        assert "Admins only" in response.content.decode()
    assert stored_row(admin.connection) == before


def test_row_35_36_another_accounts_connection_is_404(admin, other_account):
    other_connection = DynamicsConnection.objects.get(account=other_account)
    other_app = EntraApp.objects.get(account=other_account)

    for method in ("get", "post"):
        url = f"{CONNECTIONS_URL}/{other_connection.pk}/reauthorize"
        assert getattr(admin.client, method)(url).status_code == 404
    assert admin.client.post(f"{CONNECTIONS_URL}/{other_connection.pk}/test").status_code == 404
    expiry_url = f"{CONNECTIONS_URL}/{other_connection.pk}/secret-expiry"
    assert admin.client.post(expiry_url, {"secret_expires_on": "2030-01-01"}).status_code == 404
    other_app.refresh_from_db()
    assert other_app.credential_expires_on is None


def test_row_49_50_the_reauthorize_form_requires_csrf_and_post(admin):
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = admin.client.cookies

    assert strict.post(admin.reauthorize_url(), {"client_id": "x"}).status_code == 403
    assert admin.client.put(admin.reauthorize_url()).status_code == 405
    assert not PendingAuthorization.objects.exists()


def test_row_44_a_bad_value_is_explained_and_the_secret_is_not_echoed(admin, demo):
    response = admin.client.post(
        admin.reauthorize_url(),
        {
            "client_id": demo.client_id,
            "credential_kind": "secret",
            "client_secret": "Typed~secret-value-0123456789",
            "org_url": "https://contoso.example.com",
        },
    )

    text = response.content.decode()
    assert response.status_code == 200
    assert "not a Dynamics 365 org URL" in text
    assert "Typed~secret" not in text
    assert not PendingAuthorization.objects.exists()


def test_the_callback_of_another_admin_is_refused(admin, demo):
    redirect = admin.at_microsoft(admin.start_reauthorization())
    Membership.objects.filter(account=admin.account).update(role=Membership.Role.MEMBER)
    before = stored_row(admin.connection)

    admin.follow(redirect)

    assert stored_row(admin.connection) == before


def test_the_secret_expiry_warning_appears_30_days_before(admin):
    soon = timezone.localdate() + timedelta(days=12)
    EntraApp.objects.update(credential_expires_on=soon)
    text = admin.client.get(CONNECTIONS_URL).content.decode()
    assert "The client secret expires on" in text and "(in 12 days)" in text

    EntraApp.objects.update(credential_expires_on=soon + timedelta(days=60))
    text = admin.client.get(CONNECTIONS_URL).content.decode()
    assert "The client secret expires on" not in text
    assert "Secret expires on" in text

    EntraApp.objects.update(credential_expires_on=timezone.localdate() - timedelta(days=1))
    assert "The client secret expired on" in admin.client.get(CONNECTIONS_URL).content.decode()


def test_row_43_the_page_shows_the_last_20_audit_events_and_no_secret(admin, demo):
    for number in range(25):
        AuditEvent.objects.create(
            account=admin.account,
            action="connection_test",
            outcome="success",
            detail=f"event number {number}",
        )

    text = admin.client.get(CONNECTIONS_URL).content.decode()

    assert "event number 24" in text and "event number 5" in text
    assert "event number 4<" not in text
    assert demo.client_secret not in text
    assert admin.connection.account.entra_app.credential_encrypted not in text


def test_the_connections_page_makes_a_bounded_number_of_queries(
    admin, django_assert_max_num_queries
):
    for _ in range(25):
        AuditEvent.objects.create(account=admin.account, actor=None, action="x", outcome="success")

    # session, user, membership, connection, audit events (the navigation reuses membership)
    with django_assert_max_num_queries(5):
        assert admin.client.get(CONNECTIONS_URL).status_code == 200


def test_an_admin_records_the_current_secrets_expiry_without_reauthorizing(admin):
    soon = timezone.localdate() + timedelta(days=10)
    before = stored_row(admin.connection)

    page = admin.client.post(
        f"{CONNECTIONS_URL}/{admin.connection.pk}/secret-expiry",
        {"secret_expires_on": soon.isoformat()},
        follow=True,
    ).content.decode()

    after = stored_row(admin.connection)
    assert after["app_credential_expires_on"] == soon
    assert after["app_credential_encrypted"] == before["app_credential_encrypted"]
    assert after["version"] == before["version"]
    assert "expiry date was saved" in page and "(in 10 days)" in page
    assert AuditEvent.objects.filter(action="secret_expiry").exists()


def test_an_expiry_date_for_a_connection_reauthorized_meanwhile_is_not_saved(admin, demo):
    shown = EntraApp.objects.select_related("account").get(account=admin.account)
    admin.reauthorize()  # version 2 now: a new secret

    from accounts.services import entra_app_set_credential_expiry

    saved = entra_app_set_credential_expiry(
        app=shown,
        expires_on=timezone.localdate(),
        actor=shown.account.memberships.get().user,
    )

    assert not saved
    assert stored_row(admin.connection)["app_credential_expires_on"] is None


def test_the_modal_leaves_the_expiry_date_empty_for_the_new_secret(admin):
    EntraApp.objects.update(credential_expires_on=timezone.localdate() + timedelta(days=5))

    modal = admin.client.get(admin.reauthorize_url()).content.decode()

    (field,) = re.findall(r'<input[^>]*name="secret_expires_on"[^>]*>', modal)
    assert "value=" not in field


def test_re_authorizing_asks_for_a_fresh_sign_in_showing_the_connected_account(admin, demo):
    query = parse_qs(urlsplit(admin.start_reauthorization()).query)

    assert query["prompt"] == ["select_account"]
    assert query["login_hint"] == [demo.admin]
    assert query["max_age"] == ["300"]


def test_a_sign_in_older_than_five_minutes_changes_nothing(admin, emulator):
    """Entra ID answers with the auth_time of the last sign-in; MSAL checks it against max_age."""
    before = stored_row(admin.connection)
    emulator.fault(
        endpoint="token",
        grant_type="authorization_code",
        claims={"auth_time": int(time.time()) - 3600},
    )

    page = admin.reauthorize()

    assert stored_row(admin.connection) == before
    assert "from the last five minutes" in page.content.decode()
    failure = AuditEvent.objects.get(action="reauthorize", outcome=AuditEvent.Outcome.FAILURE)
    assert failure.error_code == "auth_time"
