"""Sign in with Active Directory: /business/<id> -> Entra ID -> /OAuth2?identityOnly=true."""

from __future__ import annotations

import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.test import Client
from django.urls import get_resolver, reverse

from accounts.access import CURRENT_ACCOUNT_SESSION_KEY
from accounts.models import AuditEvent, Membership, User
from connections.models import DynamicsConnection
from entra_emulator.testing import sign_in

pytestmark = pytest.mark.django_db


class Person:
    """A person with a browser: the app's test client plus the emulator's cookies."""

    def __init__(self, email: str) -> None:
        self.email = email
        self.client = Client()
        self.browser = requests.Session()

    def start(self, account, **data):
        response = self.client.post(f"/business/{account.account_id}/signin", data)
        assert response.status_code == 302, response.content.decode()[:500]
        return response["Location"]

    def callback(self, url: str):
        parts = urlsplit(url)
        return self.client.get(f"{parts.path}?{parts.query}")

    def sign_in(self, account, **data):
        return self.callback(sign_in(self.browser, self.start(account, **data), self.email))


@pytest.fixture
def account(make_account):
    return make_account()


@pytest.fixture
def admin(account, demo):
    """The demo admin, signed in as the account's admin."""
    person = Person(demo.admin)
    person.sign_in(account)
    Membership.objects.filter(user__email=demo.admin).update(role=Membership.Role.ADMIN)
    return person


def test_a_visitor_sees_the_company_name_and_one_sign_in_button(account, client):
    response = client.get(f"/business/{account.account_id}")

    text = response.content.decode()
    assert response.status_code == 200
    assert "Contoso Ltd" in text
    assert text.count("Sign in with Active Directory</button>") == 1
    assert f'method="post" action="/business/{account.account_id}/signin"' in text
    assert "csrfmiddlewaretoken" in text


def test_starting_sign_in_needs_a_post_with_a_csrf_token(account, emulator):
    strict = Client(enforce_csrf_checks=True)

    assert strict.get(f"/business/{account.account_id}/signin").status_code == 405
    assert strict.post(f"/business/{account.account_id}/signin").status_code == 403


def test_sign_in_asks_the_accounts_tenant_for_identity_only(account, emulator, demo):
    url = Person(demo.admin).start(account)

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.path == f"/{demo.tenant_id}/oauth2/v2.0/authorize"
    assert query["client_id"] == [demo.client_id]
    assert query["redirect_uri"] == ["http://testserver/OAuth2?identityOnly=true"]
    assert set(query["scope"][0].split()) == {"openid", "profile", "offline_access"}
    assert "prompt" not in query


def test_signing_in_lands_on_the_account_home_with_a_new_session(account, emulator, demo):
    person = Person(demo.member)
    person.client.get(f"/business/{account.account_id}")
    key_before = person.client.session.session_key

    response = person.sign_in(account)

    assert response.status_code == 302
    assert response["Location"] == f"/business/{account.account_id}"
    assert person.client.session.session_key != key_before
    home = person.client.get(response["Location"]).content.decode()
    assert "Megan Bowen" in home and "Member" in home
    membership = Membership.objects.get(account=account)
    assert membership.role == Membership.Role.MEMBER
    assert (membership.user.tenant_id, membership.user.email) == (demo.tenant_id, demo.member)


def test_sign_in_keeps_no_token_anywhere(account, emulator, demo):
    before = DynamicsConnection.objects.values().get(account=account)
    person = Person(demo.member)

    person.sign_in(account)

    assert DynamicsConnection.objects.values().get(account=account) == before
    session = person.client.session
    assert not any("token" in key.lower() for key, _ in session.items())
    assert "eyJ" not in repr(dict(session.items()))


def test_a_second_sign_in_passes_silently_at_entra_id(account, emulator, demo):
    person = Person(demo.member)
    person.sign_in(account)
    person.client.post("/signout")

    authorize_url = person.start(account)
    silent = person.browser.get(authorize_url, allow_redirects=False)

    assert silent.status_code == 302
    assert silent.headers["Location"].startswith("http://testserver/OAuth2?identityOnly=true&")
    assert person.callback(silent.headers["Location"]).status_code == 302
    assert int(person.client.session["_auth_user_id"]) == User.objects.get().pk


def test_the_display_name_and_email_are_refreshed_but_never_used_to_match(account, emulator, demo):
    Person(demo.member).sign_in(account)
    User.objects.update(display_name="Old Name", email="someone@else.example")

    Person(demo.member).sign_in(account)

    user = User.objects.get()
    assert (user.display_name, user.email) == ("Megan Bowen", demo.member)


def test_a_user_from_another_tenant_is_refused(account, emulator, demo):
    person = Person(demo.outsider)

    response = person.sign_in(account)

    assert response.status_code == 400
    assert "not part of this organization" in response.content.decode()
    assert not Membership.objects.exists()


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "00000000-0000-0000-0000-000000000000"},
        {"iss": "https://evil.example/{tid}/v2.0"},
        {"tid": "{other}", "iss": "{emulator}/{other}/v2.0"},
        {"exp": int(time.time()) - 3600},
        {"nonce": "not-our-nonce"},
    ],
    ids=["aud", "iss", "tid", "exp", "nonce"],
)
def test_an_id_token_that_fails_validation_signs_nobody_in(account, emulator, demo, claims):
    values = {"tid": demo.tenant_id, "other": demo.other_tenant_id, "emulator": emulator.url}
    emulator.fault(
        endpoint="token",
        claims={k: v.format(**values) if isinstance(v, str) else v for k, v in claims.items()},
    )
    person = Person(demo.member)

    response = person.sign_in(account)

    assert response.status_code == 400
    assert "_auth_user_id" not in person.client.session
    assert not Membership.objects.exists()


def test_a_forged_identity_only_flag_is_refused(account, emulator, demo):
    person = Person(demo.member)
    redirect = sign_in(person.browser, person.start(account), demo.member)

    forged = redirect.replace("/OAuth2?identityOnly=true&", "/OAuth2?")
    response = person.callback(forged)

    assert response.status_code == 400
    assert "_auth_user_id" not in person.client.session
    assert person.callback(redirect).status_code == 400  # the flow was consumed


def test_a_replayed_callback_is_refused(account, emulator, demo):
    person = Person(demo.member)
    redirect = sign_in(person.browser, person.start(account), demo.member)
    person.callback(redirect)
    person.client.post("/signout")

    assert person.callback(redirect).status_code == 400
    assert "_auth_user_id" not in person.client.session


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "https:evil.example",
        "javascript:alert(1)",
        "https://testserver@evil.example",
        "/admin/",
    ],
)
def test_an_unsafe_next_is_ignored(account, emulator, demo, next_url):
    response = Person(demo.member).sign_in(account, next=next_url)

    assert response["Location"] == f"/business/{account.account_id}"


def test_a_safe_next_inside_the_account_is_followed(account, emulator, demo):
    response = Person(demo.member).sign_in(account, next="/settings/members")

    assert response["Location"] == "/settings/members"


def test_cancelling_is_told_apart_from_a_failure(account, emulator, demo):
    emulator.fault(endpoint="authorize", aadsts=65004, error="access_denied")
    person = Person(demo.member)

    response = person.sign_in(account)

    assert response.status_code == 200
    assert "Sign-in cancelled" in response.content.decode()


def test_a_user_not_assigned_to_the_app_is_told_what_to_ask_for(account, emulator, demo):
    emulator.fault(endpoint="authorize", aadsts=50105)

    response = Person(demo.member).sign_in(account)

    assert "Users and groups" in response.content.decode()


@pytest.mark.parametrize("aadsts", [7000215, 7000222])
def test_a_rejected_stored_secret_asks_for_an_admin_and_flags_the_connection(
    account, emulator, demo, aadsts
):
    emulator.fault(endpoint="token", aadsts=aadsts)

    response = Person(demo.member).sign_in(account)

    text = response.content.decode()
    assert response.status_code == 400
    assert "Ask an admin of your account to re-authorize" in text
    assert f"Reference for support: AADSTS{aadsts}" in text
    assert f'href="{emulator.browser_url}/error?code={aadsts}"' in text
    connection = DynamicsConnection.objects.get(account=account)
    assert connection.status == DynamicsConnection.Status.NEEDS_REAUTH
    assert connection.last_error_code == f"AADSTS{aadsts}"


def test_an_unreachable_entra_id_says_to_try_again(account, emulator, demo, settings):
    settings.ENTRA_HTTP_TIMEOUT = 0.5
    emulator.fault(endpoint="token", delay=1.5)

    response = Person(demo.member).sign_in(account)

    assert "did not answer in time" in response.content.decode()


def test_sign_out_is_post_only_and_offers_the_entra_sign_out(account, emulator, demo):
    person = Person(demo.member)
    person.sign_in(account)

    assert person.client.get("/signout").status_code == 405
    response = person.client.post("/signout")

    text = response.content.decode()
    assert "_auth_user_id" not in person.client.session
    assert f"{emulator.browser_url}/{demo.tenant_id}/oauth2/v2.0/logout?" in text
    assert f'href="/business/{account.account_id}"' in text


def test_a_removed_member_cannot_sign_in_until_restored(account, emulator, demo, admin):
    Person(demo.member).sign_in(account)
    member = Membership.objects.get(user__email=demo.member)

    admin.client.post(f"/settings/members/{member.pk}", {"action": "block"})
    refused = Person(demo.member).sign_in(account)
    admin.client.post(f"/settings/members/{member.pk}", {"action": "restore"})
    restored = Person(demo.member).sign_in(account)

    assert refused.status_code == 400
    assert "removed your access" in refused.content.decode()
    assert restored.status_code == 302
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert {"member_block", "member_restore"} <= set(actions)


def test_the_members_page_shows_removed_people_and_lets_an_admin_promote(
    account, emulator, demo, admin
):
    Person(demo.member).sign_in(account)
    member = Membership.objects.get(user__email=demo.member)
    admin.client.post(f"/settings/members/{member.pk}", {"action": "promote"})

    page = admin.client.get("/settings/members").content.decode()

    member.refresh_from_db()
    assert member.role == Membership.Role.ADMIN
    assert "Megan Bowen" in page and "Adele Vance" in page


def test_the_last_admin_cannot_demote_themselves(account, emulator, demo, admin):
    me = Membership.objects.get(user__email=demo.admin)

    response = admin.client.post(f"/settings/members/{me.pk}", {"action": "demote"}, follow=True)

    me.refresh_from_db()
    assert me.role == Membership.Role.ADMIN
    assert "at least one admin" in response.content.decode()


def test_a_member_cannot_open_the_members_page(account, emulator, demo):
    person = Person(demo.member)
    person.sign_in(account)

    response = person.client.get("/settings/members")

    assert response.status_code == 403
    assert "Admins only" in response.content.decode()


def account_urls() -> list[str]:
    """Every URL pattern that takes an account id."""
    return [
        pattern.name
        for pattern in get_resolver().url_patterns
        if "account_id" in getattr(pattern.pattern, "converters", {})
    ]


def test_the_account_url_list_is_not_empty():
    assert {"business", "sign_in", "welcome"} <= set(account_urls())


def test_a_member_of_one_account_gets_404_on_every_url_of_another(make_account, emulator, demo):
    account_a, account_b = make_account("Alpha"), make_account("Bravo")
    person = Person(demo.member)
    person.sign_in(account_a)

    for name in account_urls():
        url = reverse(name, kwargs={"account_id": account_b.account_id})
        assert person.client.get(url).status_code in (404, 405), url
        assert person.client.post(url).status_code in (404, 405), url
        assert "Bravo" not in person.client.get(url).content.decode()
    session = person.client.session
    session[CURRENT_ACCOUNT_SESSION_KEY] = account_b.account_id
    session.save()
    assert person.client.get("/settings/members").status_code == 404


def without_csrf_token(response) -> str:
    """The page, minus the per-render masked CSRF token of the sign-out form."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())


def test_unknown_and_forbidden_accounts_give_the_same_404(make_account, emulator, demo):
    account_a, account_b = make_account("Alpha"), make_account("Bravo")
    person = Person(demo.member)
    person.sign_in(account_a)

    forbidden = person.client.get(f"/business/{account_b.account_id}")
    unknown = person.client.get("/business/AAAAAAAAAAAAAAAA")
    malformed = person.client.get("/business/../etc")

    assert forbidden.status_code == unknown.status_code == malformed.status_code == 404
    assert without_csrf_token(forbidden) == without_csrf_token(unknown)
    assert without_csrf_token(unknown) == without_csrf_token(malformed)
    anonymous = Client()
    assert anonymous.get("/business/AAAAAAAAAAAAAAAA").status_code == 404
    assert anonymous.get("/business/not*valid").status_code == 404


def test_the_account_home_makes_a_bounded_number_of_queries(
    account, emulator, demo, django_assert_max_num_queries
):
    person = Person(demo.member)
    person.sign_in(account)

    # session, user, membership with its account (the navigation reuses it)
    with django_assert_max_num_queries(3):
        response = person.client.get(f"/business/{account.account_id}")
    assert response.status_code == 200


def test_a_failed_sign_in_is_logged_with_the_account_and_code(account, emulator, demo, caplog):
    emulator.fault(endpoint="token", aadsts=7000215)

    Person(demo.member).sign_in(account)

    record = next(r for r in caplog.records if getattr(r, "event", "") == "sign_in")
    assert (record.outcome, record.account, record.code) == (
        "failure",
        account.account_id,
        "AADSTS7000215",
    )
