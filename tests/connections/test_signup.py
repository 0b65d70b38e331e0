"""Signup: /Dynamics/Signup -> Entra ID (the emulator) -> /OAuth2 -> welcome."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.utils import timezone

from accounts.models import Account, AuditEvent, EntraApp, Membership, User
from connections.models import DynamicsConnection, PendingAuthorization
from tests.people import SIGNUP_URL, signup_form

pytestmark = pytest.mark.django_db


def nothing_was_created() -> bool:
    return not (
        Account.objects.exists()
        or DynamicsConnection.objects.exists()
        or Membership.objects.exists()
        or User.objects.exists()
    )


def test_signup_creates_the_account_its_connection_and_its_first_admin(emulator, demo, visitor):
    response = visitor.sign_up()

    account = Account.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/business/{account.account_id}/welcome"
    assert account.company_name == "Contoso Ltd"
    assert account.phone == "+14255550100"
    app = EntraApp.objects.get(account=account)
    assert (app.client_id, app.tenant_id) == (demo.client_id, demo.tenant_id)
    assert app.credentials().client_secret.reveal() == demo.client_secret
    connection = DynamicsConnection.objects.get(account=account)
    assert connection.status == DynamicsConnection.Status.CONNECTED
    assert connection.org_url == demo.org_url
    assert connection.connected_as == demo.admin
    assert connection.last_verified_at is not None
    membership = Membership.objects.get(account=account)
    assert membership.role == Membership.Role.ADMIN
    assert membership.user.tenant_id == demo.tenant_id and membership.user.object_id
    assert AuditEvent.objects.get(account=account).action == "signup"
    assert not PendingAuthorization.objects.exists()
    whoami = [e for e in emulator.log() if e["endpoint"] == "whoami"]
    assert [e["status"] for e in whoami] == [200]


def test_the_welcome_page_shows_the_account_id_and_the_sign_in_url(emulator, demo, visitor):
    response = visitor.sign_up()
    page = visitor.client.get(response["Location"])

    account = Account.objects.get()
    assert page.status_code == 200
    text = page.content.decode()
    assert account.account_id in text
    assert f"http://testserver/business/{account.account_id}" in text


def test_row_70_the_user_is_signed_in_with_a_new_session_key(emulator, demo, visitor):
    authorize_url = visitor.submit_signup()
    key_before = visitor.client.session.session_key
    visitor.follow(visitor.at_microsoft(authorize_url))

    assert visitor.client.session.session_key != key_before
    assert int(visitor.client.session["_auth_user_id"]) == User.objects.get().pk


def test_the_secret_is_stored_encrypted_and_never_shown(emulator, demo, visitor):
    pages = [visitor.client.get(SIGNUP_URL)]
    response = visitor.sign_up()
    pages += [response, visitor.client.get(response["Location"])]

    with db_connection.cursor() as cursor:
        cursor.execute("SELECT * FROM connections_dynamicsconnection")
        row_dump = repr(cursor.fetchall())
        cursor.execute("SELECT * FROM accounts_entraapp")
        row_dump += repr(cursor.fetchall())
    assert demo.client_secret not in row_dump
    assert "RefreshToken" not in row_dump
    for page in pages:
        assert demo.client_secret not in page.content.decode()


def test_the_account_id_is_random_and_url_safe(person, emulator, demo, visitor):
    visitor.sign_up()
    person().sign_up(company_name="Contoso Two")

    first, second = Account.objects.order_by("id")
    assert first.account_id != second.account_id
    for account_id in (first.account_id, second.account_id):
        assert len(account_id) >= 16
        assert all(c.isalnum() or c in "-_" for c in account_id)


def test_the_redirect_goes_to_the_orgs_own_tenant_with_the_dynamics_scope(emulator, demo, visitor):
    authorize_url = visitor.submit_signup()

    parts = urlsplit(authorize_url)
    assert parts.path == f"/{demo.tenant_id}/oauth2/v2.0/authorize"  # found from the org itself
    assert f"scope={demo.org_url.replace(':', '%3A').replace('/', '%2F')}%2Fuser_impersonation" in (
        parts.query
    )
    assert "redirect_uri=http%3A%2F%2Ftestserver%2FOAuth2&" in parts.query


def test_the_signup_page_lists_the_two_redirect_urls_to_register(visitor, entra_emulator):
    text = visitor.client.get(SIGNUP_URL).content.decode()

    assert "http://testserver/OAuth2</code>" in text
    assert "http://testserver/OAuth2?identityOnly=true</code>" in text
    for label in (
        "Company Name",
        "Phone Number",
        "Website",
        "Client Id",
        "Client Secret",
        "Application Id URL",
    ):
        assert f">{label}</label>" in text
    assert "not its Secret ID" in text


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("company_name", "", "This field is required."),
        ("client_id", "not-a-guid", "The Client Id is a GUID"),
        (
            "client_secret",
            "",
            "Enter the client secret&#x27;s Value, or choose Certificate instead.",
        ),
        (
            "client_secret",
            "     ",
            "Enter the client secret&#x27;s Value, or choose Certificate instead.",
        ),
        ("client_secret", "6f1c2e4a-8b9d-4c3e-a2f1-0d9e8c7b6a5f", "That is the secret&#x27;s ID"),
        ("org_url", "http://contoso.crm.dynamics.com", "must start with https://"),
        ("org_url", "https://contoso.example.com", "not a Dynamics 365 org URL"),
        ("org_url", "https://contoso.crm.dynamics.com/main.aspx", "without a path or query"),
        ("org_url", "https://contoso.crm.dynamics.com?x=1", "without a path or query"),
        ("org_url", "https://admin@contoso.crm.dynamics.com", "Remove the user name"),
        ("org_url", "https://10.0.0.5", "not an IP address or localhost"),
        ("org_url", "https://localhost", "not an IP address or localhost"),
        ("org_url", "https://contoso.crm.dynamics.com.evil.example", "not a Dynamics 365 org"),
        ("phone", "call me maybe", "Enter a phone number"),
        ("website", "not a url", "Enter a valid URL."),
        ("company_name", "x" * 10_000, "at most 200 characters"),
        ("client_secret", "x" * 10_000, "at most 1024 characters"),
        ("org_url", "https://" + "a" * 10_000 + ".crm.dynamics.com", "at most 300 characters"),
        ("company_name", "Contoso \u202eLtd", "invisible formatting characters"),
        ("company_name", "Contoso\u200b Ltd", "invisible formatting characters"),
        ("phone", "+1 425\u200d 555 0100", "invisible formatting characters"),
        ("website", "https://contoso\u2066.example", "invisible formatting characters"),
        ("client_id", "\ufeff3f2b6a1c-0d4e-4f5a-9b8c-7d6e5f4a3b2c", "invisible formatting"),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 40 else None,
)
def test_row_52_53_a_bad_field_is_explained_next_to_it_and_nothing_starts(
    entra_emulator, demo, visitor, field, value, message
):
    response = visitor.client.post(SIGNUP_URL, signup_form(demo, **{field: value}))

    assert response.status_code == 200
    text = response.content.decode()
    assert message in text
    assert 'aria-invalid="true"' in text
    assert demo.client_secret not in text
    assert not PendingAuthorization.objects.exists()


def test_a_good_org_url_is_normalised_before_the_org_is_asked_for_its_tenant(
    emulator, demo, visitor, settings, monkeypatch
):
    from connections import preflight
    from lib.dynamics import DynamicsError

    settings.DYNAMICS_EXTRA_ALLOWED_ORIGINS = []
    asked: list[str] = []

    def no_such_org(org_url: str) -> str:
        asked.append(org_url)
        raise DynamicsError("not reached in tests", code="unreachable")

    monkeypatch.setattr(preflight, "discover_tenant", no_such_org)
    visitor.client.post(
        SIGNUP_URL, signup_form(demo, org_url=" https://Contoso.CRM4.dynamics.com/ ")
    )

    assert asked == ["https://contoso.crm4.dynamics.com"]


def test_the_emulator_origin_is_refused_without_the_development_allow_list(
    entra_emulator, demo, visitor, settings
):
    settings.DYNAMICS_EXTRA_ALLOWED_ORIGINS = []

    response = visitor.client.post(SIGNUP_URL, signup_form(demo))

    assert response.status_code == 200
    assert "not an IP address or localhost" in response.content.decode()


def test_row_52_html_in_the_company_name_is_escaped_and_non_ascii_is_kept(emulator, demo, visitor):
    name = "Ünïcødé <script>alert(1)</script> 株式会社"
    response = visitor.sign_up(company_name=name)
    page = visitor.client.get(response["Location"]).content.decode()

    assert Account.objects.get().company_name == name
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Ünïcødé" in page and "株式会社" in page


def test_row_49_the_form_requires_a_csrf_token(entra_emulator, demo):
    response = Client(enforce_csrf_checks=True).post(SIGNUP_URL, signup_form(demo))

    assert response.status_code == 403
    assert not PendingAuthorization.objects.exists()


def test_the_pending_signup_holds_the_secret_encrypted_until_the_callback(emulator, demo, visitor):
    visitor.submit_signup()

    pending = PendingAuthorization.objects.get()
    assert demo.client_secret not in pending.credential_encrypted
    assert pending.expires_at - timezone.now() <= timedelta(minutes=15)


def code_redemptions(emulator) -> list[dict]:
    """The token requests that redeemed a code (the pre-flight's client-credentials ones aside)."""
    return [e for e in emulator.log() if e.get("grant_type") == "authorization_code"]


def field_error(response, field: str) -> str:
    """The error the form shows next to ``field`` ("" when none)."""
    errors = response.context["form"].errors.get(field) or [""]
    return str(errors[0])


def assert_back_on_the_form_with(someone, response, demo, message: str) -> str:
    assert response.status_code == 302
    assert response["Location"] == SIGNUP_URL
    page = someone.client.get(SIGNUP_URL).content.decode()
    assert message in page
    assert 'value="Contoso Ltd"' in page
    assert f'value="{demo.client_id}"' in page
    assert demo.client_secret not in page
    assert nothing_was_created()
    return page


def test_cancelling_at_consent_is_told_apart_and_creates_nothing(emulator, demo, visitor):
    response = visitor.sign_up(accept=False)

    page = assert_back_on_the_form_with(visitor, response, demo, "You cancelled")
    assert "Signup cancelled" in page


@pytest.mark.parametrize(
    ("aadsts", "message"),
    [
        (7000215, "Paste the secret&#x27;s Value (not its Secret ID)"),
        (7000222, "The Client Secret has expired"),
        (700016, "was not found in your organization&#x27;s directory"),
        (65001, "Consent is needed"),
        (500011, "was not found in your Microsoft tenant"),
        (70011, "does not look like a Dynamics 365 org"),
        (650057, "Dynamics CRM &gt; Delegated &gt; user_impersonation"),
    ],
)
def test_an_entra_error_at_the_token_endpoint_is_explained_on_the_form(
    emulator, demo, visitor, aadsts, message
):
    emulator.fault(endpoint="token", grant_type="authorization_code", aadsts=aadsts)

    response = visitor.sign_up()

    page = assert_back_on_the_form_with(visitor, response, demo, message)
    assert "Signup did not go through" in page
    assert f"Reference for support: AADSTS{aadsts}" in page
    assert f'href="{emulator.browser_url}/error?code={aadsts}"' in page


def test_a_wrong_client_secret_is_explained_next_to_it_before_microsoft(emulator, demo, visitor):
    response = visitor.client.post(
        SIGNUP_URL, signup_form(demo, client_secret="Wrong~secret-value-0123456789")
    )

    assert response.status_code == 200
    assert field_error(response, "client_secret").startswith("Microsoft rejected the Client Secret")
    assert "Wrong~secret" not in response.content.decode()
    assert nothing_was_created()
    assert not [e for e in emulator.log() if e["endpoint"] == "authorize"]


def test_a_user_not_assigned_to_the_app_is_told_what_to_ask_for(emulator, demo, visitor):
    emulator.fault(endpoint="authorize", aadsts=50105)

    response = visitor.sign_up()

    assert_back_on_the_form_with(visitor, response, demo, "not assigned to this application")


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"status": 503}, "Dynamics 365 is having trouble right now"),
        ({"delay": 1.5}, "Dynamics 365 did not answer in time"),
    ],
)
def test_a_failing_whoami_creates_nothing(emulator, demo, visitor, settings, fault, message):
    settings.DYNAMICS_HTTP_TIMEOUT = 0.5
    emulator.fault(endpoint="whoami", **fault)

    response = visitor.sign_up()

    assert_back_on_the_form_with(visitor, response, demo, message)


def test_a_user_who_is_not_in_the_dynamics_org_is_told_so(person, emulator, demo, visitor):
    emulator.seed(
        {
            "tenants": [
                {
                    "id": demo.tenant_id,
                    "name": "Contoso",
                    "domain": "contoso.onmicrosoft.com",
                    "users": [
                        {
                            "oid": "0b9e5f55-7a61-4d7c-9b0e-6f1a2b3c4d5e",
                            "upn": "newhire@contoso.onmicrosoft.com",
                            "name": "New Hire",
                        }
                    ],
                }
            ]
        }
    )

    newhire = person("newhire@contoso.onmicrosoft.com")
    response = newhire.sign_up()

    assert_back_on_the_form_with(newhire, response, demo, "not a user of this Dynamics 365 org")


@pytest.mark.parametrize(
    ("response", "message"),
    [
        ({"refresh_token": None}, "did not issue a refresh token"),
        ({"scope": "openid profile offline_access"}, "did not grant access to Dynamics 365"),
    ],
    ids=["no-refresh-token", "no-dynamics-scope"],
)
def test_row_20_tokens_that_could_not_keep_the_connection_alive_create_nothing(
    emulator, demo, visitor, response, message
):
    emulator.fault(endpoint="token", grant_type="authorization_code", response=response)

    response = visitor.sign_up()

    assert_back_on_the_form_with(visitor, response, demo, message)


def test_an_unreachable_entra_id_creates_nothing(emulator, demo, visitor, settings):
    settings.ENTRA_HTTP_TIMEOUT = 0.5
    emulator.fault(endpoint="token", grant_type="authorization_code", delay=1.5)

    response = visitor.sign_up()

    assert_back_on_the_form_with(visitor, response, demo, "did not answer in time")


def test_a_replayed_callback_creates_nothing_twice_and_says_the_link_was_used(
    emulator, demo, visitor
):
    authorize_url = visitor.submit_signup()
    redirect = visitor.at_microsoft(authorize_url)
    visitor.follow(redirect)

    replay = visitor.follow(redirect)

    assert replay.status_code == 400
    assert "already used" in replay.content.decode()
    assert Account.objects.count() == 1
    assert len(code_redemptions(emulator)) == 1


def test_an_expired_pending_signup_asks_to_start_again(emulator, demo, visitor):
    authorize_url = visitor.submit_signup()
    redirect = visitor.at_microsoft(authorize_url)
    PendingAuthorization.objects.update(expires_at=timezone.now() - timedelta(seconds=1))

    response = visitor.follow(redirect)

    assert_back_on_the_form_with(visitor, response, demo, "expired")
    assert not code_redemptions(emulator)


def test_the_same_tenant_may_sign_up_twice_and_is_pointed_at_its_first_account(
    person, emulator, demo, visitor
):
    visitor.sign_up(company_name="Contoso Marketing")
    second = person()
    response = second.sign_up(company_name="Contoso Sales")

    assert Account.objects.count() == 2
    page = second.client.get(response["Location"]).content.decode()
    first = Account.objects.get(company_name="Contoso Marketing")
    assert "already had an account" in page
    assert f"http://testserver/business/{first.account_id}</code>" in page


def test_the_callback_makes_a_bounded_number_of_queries(
    emulator, demo, visitor, django_assert_max_num_queries
):
    authorize_url = visitor.submit_signup()
    redirect = visitor.at_microsoft(authorize_url)

    # A constant: the flow's claim (read, delete), pending lookup and lock, the tenant's other
    # accounts, five inserts, one delete, savepoints, and the sign-in's session key rotation.
    with django_assert_max_num_queries(30):
        response = visitor.follow(redirect)
    assert response.status_code == 302


def test_row_59_a_doubled_callback_leaves_the_pending_signup_to_the_first_request(
    emulator, demo, visitor
):
    authorize_url = visitor.submit_signup()
    redirect = visitor.at_microsoft(authorize_url)
    PendingAuthorization.objects.update(consumed_at=timezone.now())  # claimed by request one

    response = visitor.follow(redirect)

    assert response["Location"] == SIGNUP_URL
    assert "already being completed" in visitor.client.get(SIGNUP_URL).content.decode()
    assert PendingAuthorization.objects.count() == 1
    assert not Account.objects.exists()
