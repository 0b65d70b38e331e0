"""The Connections page and re-authorization through the key icon's form."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
import requests
from django.db import connection as db_connection
from django.test import Client
from django.utils import timezone

from accounts.models import Account, AuditEvent, Membership
from connections import crypto
from connections.models import DynamicsConnection, PendingAuthorization
from entra_emulator.testing import sign_in
from tests.journeys import follow_callback, sign_up

pytestmark = pytest.mark.django_db

CONNECTIONS_URL = "/settings/connections"


class Admin:
    """The demo admin after signup: signed in to the app and to the emulator."""

    def __init__(self, demo) -> None:
        self.demo = demo
        self.client = Client()
        self.browser = requests.Session()
        sign_up(self.client, demo, browser=self.browser)
        self.account = Account.objects.get()
        self.connection = DynamicsConnection.objects.get(account=self.account)

    def reauthorize_url(self) -> str:
        return f"{CONNECTIONS_URL}/{self.connection.pk}/reauthorize"

    def start(self, **fields) -> str:
        data = {
            "client_id": self.demo.client_id,
            "client_secret": self.demo.second_client_secret,
            "org_url": self.demo.org_url,
            **fields,
        }
        response = self.client.post(self.reauthorize_url(), data)
        assert response.status_code == 302, response.content.decode()[:2000]
        return response["Location"]

    def reauthorize(self, **fields):
        """The whole re-authorization; returns the Connections page it ends on."""
        redirect = sign_in(self.browser, self.start(**fields), self.demo.admin)
        response = follow_callback(self.client, redirect)
        assert response.status_code == 302 and response["Location"] == CONNECTIONS_URL
        return self.client.get(CONNECTIONS_URL)


@pytest.fixture
def admin(emulator, demo) -> Admin:
    return Admin(demo)


def stored_row(connection: DynamicsConnection) -> dict:
    return DynamicsConnection.objects.values().get(pk=connection.pk)


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
    assert after["secret_set_at"] > before["secret_set_at"]
    assert after["token_cache_encrypted"] != before["token_cache_encrypted"]
    secret = crypto.decrypt(
        after["client_secret_encrypted"], context=admin.connection.secret_context()
    )
    assert secret.reveal() == demo.second_client_secret
    assert str(after["secret_expires_on"]) == "2099-01-31"
    assert "was re-authorized and works" in page.content.decode()
    event = AuditEvent.objects.filter(action="reauthorize").get()
    assert event.outcome == AuditEvent.Outcome.SUCCESS
    assert not PendingAuthorization.objects.exists()


def test_a_wrong_secret_changes_nothing_and_explains_why(admin, demo):
    before = stored_row(admin.connection)

    page = admin.reauthorize(client_secret="Wrong~secret-value-0123456789abc")

    assert stored_row(admin.connection) == before
    text = page.content.decode()
    assert "Re-authorization failed" in text
    assert "Microsoft rejected the Client Secret" in text
    assert 'class="badge badge-ok">Connected<' in text
    event = AuditEvent.objects.filter(action="reauthorize").get()
    assert (event.outcome, event.error_code) == (AuditEvent.Outcome.FAILURE, "AADSTS7000215")
    assert "Wrong~secret" not in event.detail


@pytest.mark.parametrize(
    "fault",
    [
        {"endpoint": "token", "aadsts": 7000222},
        {"endpoint": "token", "aadsts": 65001},
        {"endpoint": "token", "status": 503},
        {"endpoint": "token", "delay": 1.5},
        {"endpoint": "token", "claims": {"nonce": "not-ours"}},
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
def test_any_failure_leaves_the_stored_connection_byte_for_byte(admin, emulator, settings, fault):
    settings.ENTRA_HTTP_TIMEOUT = 0.5
    before = stored_row(admin.connection)
    emulator.fault(**fault)

    page = admin.reauthorize()

    assert stored_row(admin.connection) == before
    assert "Re-authorization failed" in page.content.decode()
    assert AuditEvent.objects.get(action="reauthorize").outcome == AuditEvent.Outcome.FAILURE


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

    page = admin.reauthorize(org_url=other_org)

    assert stored_row(admin.connection) == before
    assert "was not found in your Microsoft tenant" in page.content.decode()


def test_a_replayed_callback_changes_nothing(admin, demo):
    redirect = sign_in(admin.browser, admin.start(), demo.admin)
    follow_callback(admin.client, redirect)
    after_first = stored_row(admin.connection)

    replay = follow_callback(admin.client, redirect)

    assert replay.status_code == 302 and replay["Location"] == CONNECTIONS_URL
    assert stored_row(admin.connection) == after_first
    assert "already used" in admin.client.get(CONNECTIONS_URL).content.decode()
    failure = AuditEvent.objects.get(action="reauthorize", outcome=AuditEvent.Outcome.FAILURE)
    assert failure.error_code == "flow_replayed"


def test_an_expired_pending_reauthorization_changes_nothing(admin, demo):
    before = stored_row(admin.connection)
    redirect = sign_in(admin.browser, admin.start(), demo.admin)
    PendingAuthorization.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    follow_callback(admin.client, redirect)

    assert stored_row(admin.connection) == before
    failure = AuditEvent.objects.get(action="reauthorize", outcome=AuditEvent.Outcome.FAILURE)
    assert failure.error_code == "pending_expired"


def test_a_re_authorization_link_older_than_its_lifetime_is_audited(
    admin, demo, settings, monkeypatch
):
    from accounts import entra

    before = stored_row(admin.connection)
    redirect = sign_in(admin.browser, admin.start(), demo.admin)
    later = entra.time.time() + settings.AUTH_FLOW_TTL_MINUTES * 60 + 1
    monkeypatch.setattr(entra.time, "time", lambda: later)

    response = follow_callback(admin.client, redirect)

    assert response["Location"] == CONNECTIONS_URL
    assert stored_row(admin.connection) == before
    failure = AuditEvent.objects.get(action="reauthorize", outcome=AuditEvent.Outcome.FAILURE)
    assert failure.error_code == "flow_expired"


def test_a_doubled_callback_completes_once_and_the_second_changes_nothing(admin, demo):
    """A reload while the first request is still at Microsoft: the second request finds the
    pending row claimed and leaves it to the first."""
    from connections.models import PendingAuthorization as Pending

    redirect = sign_in(admin.browser, admin.start(), demo.admin)
    Pending.objects.update(consumed_at=timezone.now())  # the first request has claimed it
    before = stored_row(admin.connection)

    follow_callback(admin.client, redirect)

    assert stored_row(admin.connection) == before
    assert Pending.objects.count() == 1  # still the first request's to finish
    assert "already being completed" in admin.client.get(CONNECTIONS_URL).content.decode()


def test_a_re_authorization_that_lost_the_race_changes_nothing(admin, demo):
    """Start A, start B, finish B, finish A: A must not overwrite B's credentials."""
    redirect_a = sign_in(admin.browser, admin.start(), demo.admin)
    redirect_b = sign_in(admin.browser, admin.start(), demo.admin)
    follow_callback(admin.client, redirect_b)
    after_b = stored_row(admin.connection)

    follow_callback(admin.client, redirect_a)

    assert stored_row(admin.connection) == after_b
    page = admin.client.get(CONNECTIONS_URL).content.decode()
    assert "Another admin changed this connection" in page


@pytest.mark.skipif(
    db_connection.vendor == "sqlite",
    reason="SQLite has no row locks and one writer at a time; CI runs this on PostgreSQL.",
)
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_reauthorizations_leave_one_consistent_winner(emulator, demo):
    admin = Admin(demo)
    clients = [admin.client, Client()]
    clients[1].cookies = admin.client.cookies  # the same admin, two tabs
    redirects = [
        sign_in(admin.browser, admin.start(client_secret=s), demo.admin)
        for s in (demo.client_secret, demo.second_client_secret)
    ]
    barrier = threading.Barrier(2)
    outcomes: list[int] = []

    def finish(client: Client, redirect: str) -> None:
        barrier.wait()
        try:
            outcomes.append(follow_callback(client, redirect).status_code)
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
    assert row["version"] == 2
    winner = crypto.decrypt(
        row["client_secret_encrypted"], context=admin.connection.secret_context()
    ).reveal()
    assert winner in (demo.client_secret, demo.second_client_secret)
    crypto.decrypt(row["token_cache_encrypted"], context=admin.connection.token_cache_context())


def test_a_member_gets_a_plain_403_on_every_connections_url(admin, emulator, demo):
    member = Client()
    browser = requests.Session()
    response = member.post(f"/business/{admin.account.account_id}/signin")
    follow_callback(member, sign_in(browser, response["Location"], demo.member))
    before = stored_row(admin.connection)

    for method, url in [
        ("get", CONNECTIONS_URL),
        ("get", admin.reauthorize_url()),
        ("post", admin.reauthorize_url()),
        ("post", f"{CONNECTIONS_URL}/{admin.connection.pk}/test"),
        ("post", f"{CONNECTIONS_URL}/{admin.connection.pk}/secret-expiry"),
    ]:
        response = getattr(member, method)(url)
        assert response.status_code == 403, url
        assert "Admins only" in response.content.decode()
    assert stored_row(admin.connection) == before


def test_another_accounts_connection_is_404(admin, demo, make_account):
    other = make_account("Other Co")
    other_connection = DynamicsConnection.objects.get(account=other)

    for method in ("get", "post"):
        url = f"{CONNECTIONS_URL}/{other_connection.pk}/reauthorize"
        assert getattr(admin.client, method)(url).status_code == 404
    assert admin.client.post(f"{CONNECTIONS_URL}/{other_connection.pk}/test").status_code == 404
    expiry_url = f"{CONNECTIONS_URL}/{other_connection.pk}/secret-expiry"
    assert admin.client.post(expiry_url, {"secret_expires_on": "2030-01-01"}).status_code == 404
    other_connection.refresh_from_db()
    assert other_connection.secret_expires_on is None


def test_the_reauthorize_form_requires_csrf_and_post(admin):
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = admin.client.cookies

    assert strict.post(admin.reauthorize_url(), {"client_id": "x"}).status_code == 403
    assert admin.client.put(admin.reauthorize_url()).status_code == 405
    assert not PendingAuthorization.objects.exists()


def test_a_bad_value_is_explained_and_the_secret_is_not_echoed(admin, demo):
    response = admin.client.post(
        admin.reauthorize_url(),
        {
            "client_id": demo.client_id,
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
    redirect = sign_in(admin.browser, admin.start(), demo.admin)
    Membership.objects.filter(account=admin.account).update(role=Membership.Role.MEMBER)
    before = stored_row(admin.connection)

    follow_callback(admin.client, redirect)

    assert stored_row(admin.connection) == before


def test_the_secret_expiry_warning_appears_30_days_before(admin):
    soon = timezone.localdate() + timedelta(days=12)
    DynamicsConnection.objects.update(secret_expires_on=soon)
    text = admin.client.get(CONNECTIONS_URL).content.decode()
    assert "The client secret expires on" in text and "(in 12 days)" in text

    DynamicsConnection.objects.update(secret_expires_on=soon + timedelta(days=60))
    text = admin.client.get(CONNECTIONS_URL).content.decode()
    assert "The client secret expires on" not in text
    assert "Secret expires on" in text

    DynamicsConnection.objects.update(secret_expires_on=timezone.localdate() - timedelta(days=1))
    assert "The client secret expired on" in admin.client.get(CONNECTIONS_URL).content.decode()


def test_the_page_shows_the_last_20_audit_events_and_no_secret(admin, demo):
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
    assert admin.connection.client_secret_encrypted not in text


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
    assert after["secret_expires_on"] == soon
    assert after["client_secret_encrypted"] == before["client_secret_encrypted"]
    assert after["version"] == before["version"]
    assert "expiry date was saved" in page and "(in 10 days)" in page
    assert AuditEvent.objects.filter(action="secret_expiry").exists()


def test_an_expiry_date_for_a_connection_reauthorized_meanwhile_is_not_saved(admin, demo):
    shown = DynamicsConnection.objects.get(pk=admin.connection.pk)
    admin.reauthorize()  # version 2 now: a new secret

    from connections.services import connection_set_secret_expiry

    saved = connection_set_secret_expiry(
        connection=shown,
        expires_on=timezone.localdate(),
        actor=shown.account.memberships.get().user,
    )

    assert not saved
    assert stored_row(admin.connection)["secret_expires_on"] is None


def test_the_modal_leaves_the_expiry_date_empty_for_the_new_secret(admin):
    DynamicsConnection.objects.update(secret_expires_on=timezone.localdate() + timedelta(days=5))

    modal = admin.client.get(admin.reauthorize_url()).content.decode()

    (field,) = re.findall(r'<input[^>]*name="secret_expires_on"[^>]*>', modal)
    assert "value=" not in field
