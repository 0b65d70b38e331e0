"""Sign in with Active Directory: /business/<id> -> Entra ID -> /OAuth2?identityOnly=true."""

from __future__ import annotations

import re
import threading
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection as db_connection
from django.test import Client
from django.urls import get_resolver, reverse

from accounts.access import CURRENT_ACCOUNT_SESSION_KEY
from accounts.models import AuditEvent, Membership, User
from connections.models import DynamicsConnection

pytestmark = pytest.mark.django_db


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


def test_sign_in_asks_the_accounts_tenant_for_identity_only(person, account, emulator, demo):
    url = person(demo.member).start_sign_in(account)

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.path == f"/{demo.tenant_id}/oauth2/v2.0/authorize"
    assert query["client_id"] == [demo.client_id]
    assert query["redirect_uri"] == ["http://testserver/OAuth2?identityOnly=true"]
    assert set(query["scope"][0].split()) == {"openid", "profile"}  # no refresh token wanted
    assert "prompt" not in query


def test_row_70_signing_in_lands_on_the_account_home_with_a_new_session(
    person, account, emulator, demo
):
    someone = person(demo.member)
    someone.client.get(f"/business/{account.account_id}")
    key_before = someone.client.session.session_key

    response = someone.sign_in(account)

    assert response.status_code == 302
    assert response["Location"] == f"/business/{account.account_id}"
    assert someone.client.session.session_key != key_before
    home = someone.client.get(response["Location"]).content.decode()
    assert "Megan Bowen" in home and "Member" in home
    membership = Membership.objects.get(account=account, user__email=demo.member)
    assert membership.role == Membership.Role.MEMBER
    assert (membership.user.tenant_id, membership.user.email) == (demo.tenant_id, demo.member)


def test_sign_in_keeps_no_token_anywhere(person, account, emulator, demo):
    before = DynamicsConnection.objects.values().get(account=account)
    someone = person(demo.member)

    someone.sign_in(account)

    assert DynamicsConnection.objects.values().get(account=account) == before
    session = someone.client.session
    assert not any("token" in key.lower() for key, _ in session.items())
    assert "eyJ" not in repr(dict(session.items()))


def test_a_second_sign_in_passes_silently_at_entra_id(person, account, emulator, demo):
    someone = person(demo.member)
    someone.sign_in(account)
    someone.client.post("/signout")

    authorize_url = someone.start_sign_in(account)
    silent = someone.browser.get(authorize_url, allow_redirects=False)

    assert silent.status_code == 302
    assert silent.headers["Location"].startswith("http://testserver/OAuth2?identityOnly=true&")
    assert someone.follow(silent.headers["Location"]).status_code == 302
    assert int(someone.client.session["_auth_user_id"]) == User.objects.get(email=demo.member).pk


def test_the_display_name_and_email_are_refreshed_but_never_used_to_match(
    person, account, emulator, demo
):
    person(demo.member).sign_in(account)
    user_before = User.objects.get(email=demo.member)
    User.objects.filter(pk=user_before.pk).update(
        display_name="Old Name", email="someone@else.example"
    )

    person(demo.member).sign_in(account)

    user = User.objects.get(object_id=user_before.object_id)
    assert (user.display_name, user.email) == ("Megan Bowen", demo.member)


def test_row_25_a_user_from_another_tenant_is_refused(person, account, emulator, demo):
    someone = person(demo.outsider)

    response = someone.sign_in(account)

    assert response.status_code == 400
    assert "not part of this organization" in response.content.decode()
    assert not Membership.objects.exclude(user__email=demo.admin).exists()


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
def test_an_id_token_that_fails_validation_signs_nobody_in(person, account, emulator, demo, claims):
    values = {"tid": demo.tenant_id, "other": demo.other_tenant_id, "emulator": emulator.url}
    emulator.fault(
        endpoint="token",
        claims={k: v.format(**values) if isinstance(v, str) else v for k, v in claims.items()},
    )
    someone = person(demo.member)

    response = someone.sign_in(account)

    assert response.status_code == 400
    assert "_auth_user_id" not in someone.client.session
    assert not Membership.objects.exclude(user__email=demo.admin).exists()


def test_a_forged_identity_only_flag_is_refused(person, account, emulator, demo):
    someone = person(demo.member)
    redirect = someone.at_microsoft(someone.start_sign_in(account))

    forged = redirect.replace("/OAuth2?identityOnly=true&", "/OAuth2?")
    response = someone.follow(forged)

    assert response.status_code == 400
    assert "_auth_user_id" not in someone.client.session
    assert someone.follow(redirect).status_code == 400  # the flow was consumed


def test_a_replayed_callback_is_refused(person, account, emulator, demo):
    someone = person(demo.member)
    redirect = someone.at_microsoft(someone.start_sign_in(account))
    someone.follow(redirect)
    someone.client.post("/signout")

    assert someone.follow(redirect).status_code == 400
    assert "_auth_user_id" not in someone.client.session


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
def test_row_41_an_unsafe_next_is_ignored(person, account, emulator, demo, next_url):
    response = person(demo.member).sign_in(account, next=next_url)

    assert response["Location"] == f"/business/{account.account_id}"


def test_a_safe_next_inside_the_account_is_followed(person, account, emulator, demo):
    response = person(demo.member).sign_in(account, next="/settings/members")

    assert response["Location"] == "/settings/members"


def test_cancelling_is_told_apart_from_a_failure(person, account, emulator, demo):
    emulator.fault(endpoint="authorize", aadsts=65004, error="access_denied")
    someone = person(demo.member)

    response = someone.sign_in(account)

    assert response.status_code == 200
    assert "Sign-in cancelled" in response.content.decode()


def test_a_user_not_assigned_to_the_app_is_told_what_to_ask_for(person, account, emulator, demo):
    emulator.fault(endpoint="authorize", aadsts=50105)

    response = person(demo.member).sign_in(account)

    assert "Users and groups" in response.content.decode()


@pytest.mark.parametrize("aadsts", [7000215, 7000222])
def test_a_rejected_stored_secret_asks_for_an_admin_and_flags_the_connection(
    person, account, emulator, demo, aadsts
):
    emulator.fault(endpoint="token", aadsts=aadsts)

    response = person(demo.member).sign_in(account)

    text = response.content.decode()
    assert response.status_code == 400
    assert "Ask an admin of your account to re-authorize" in text
    assert f"Reference for support: AADSTS{aadsts}" in text
    assert f'href="{emulator.browser_url}/error?code={aadsts}"' in text
    connection = DynamicsConnection.objects.get(account=account)
    assert connection.status == DynamicsConnection.Status.NEEDS_REAUTH
    assert connection.last_error_code == f"AADSTS{aadsts}"


def test_a_member_asked_for_mfa_is_told_to_sign_in_again_not_to_re_authorize(
    person, account, emulator, demo
):
    emulator.fault(endpoint="token", aadsts=50076, error="invalid_grant")

    response = person(demo.member).sign_in(account)

    text = response.content.decode()
    assert response.status_code == 400
    assert "Sign in again and complete it" in text
    assert "Re-authorize" not in text and "re-authorize" not in text
    connection = DynamicsConnection.objects.get(account=account)
    assert connection.status == DynamicsConnection.Status.CONNECTED


def test_an_unreachable_entra_id_says_to_try_again(person, account, emulator, demo, settings):
    settings.ENTRA_HTTP_TIMEOUT = 0.5
    emulator.fault(endpoint="token", delay=1.5)

    response = person(demo.member).sign_in(account)

    assert "did not answer in time" in response.content.decode()


def test_sign_out_is_post_only_and_offers_the_entra_sign_out(person, account, emulator, demo):
    someone = person(demo.member)
    someone.sign_in(account)

    assert someone.client.get("/signout").status_code == 405
    response = someone.client.post("/signout")

    text = response.content.decode()
    assert "_auth_user_id" not in someone.client.session
    assert f"{emulator.browser_url}/{demo.tenant_id}/oauth2/v2.0/logout?" in text
    assert f'href="/business/{account.account_id}"' in text


def test_a_removed_member_cannot_sign_in_until_restored(person, account, emulator, demo, admin):
    person(demo.member).sign_in(account)
    member = Membership.objects.get(user__email=demo.member)

    admin.client.post(f"/settings/members/{member.pk}", {"action": "block"})
    refused = person(demo.member).sign_in(account)
    admin.client.post(f"/settings/members/{member.pk}", {"action": "restore"})
    restored = person(demo.member).sign_in(account)

    assert refused.status_code == 400
    assert "removed your access" in refused.content.decode()
    assert restored.status_code == 302
    actions = list(AuditEvent.objects.values_list("action", flat=True))
    assert {"member_block", "member_restore"} <= set(actions)


def test_the_members_page_shows_removed_people_and_lets_an_admin_promote(
    person, account, emulator, demo, admin
):
    person(demo.member).sign_in(account)
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


def test_a_member_cannot_open_the_members_page(person, account, emulator, demo):
    someone = person(demo.member)
    someone.sign_in(account)

    response = someone.client.get("/settings/members")

    assert response.status_code == 403
    assert "Admins only" in response.content.decode()


def account_urls() -> list[str]:
    """Every URL pattern that takes an account id."""
    return [
        pattern.name
        for pattern in get_resolver().url_patterns
        if "account_id" in getattr(pattern.pattern, "converters", {})
    ]


# The methods each of them allows (require_GET, require_POST): the isolation test sends these.
ACCOUNT_URL_METHODS = {"business": ["get"], "sign_in": ["post"], "welcome": ["get"]}


def test_the_isolation_test_knows_every_account_url():
    assert set(account_urls()) == set(ACCOUNT_URL_METHODS)


def test_each_account_url_refuses_the_methods_it_does_not_allow(account, member):
    for name, methods in ACCOUNT_URL_METHODS.items():
        url = reverse(name, kwargs={"account_id": account.account_id})
        for method in {"get", "post"} - set(methods):
            assert getattr(member.client, method)(url).status_code == 405, (method, url)


def test_row_34_a_member_of_one_account_gets_404_on_every_url_of_another(member, other_account):
    for name, methods in ACCOUNT_URL_METHODS.items():
        url = reverse(name, kwargs={"account_id": other_account.account_id})
        for method in methods:
            response = getattr(member.client, method)(url)
            assert response.status_code == 404, (method, url)
            assert "Other Co" not in response.content.decode()
    session = member.client.session
    session[CURRENT_ACCOUNT_SESSION_KEY] = other_account.account_id
    session.save()
    assert member.client.get("/settings/members").status_code == 404


def without_csrf_token(response) -> str:
    """The page, minus the per-render masked CSRF token of the sign-out form."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", response.content.decode())


def test_row_40_unknown_and_forbidden_accounts_give_the_same_404(member, other_account):
    forbidden = member.client.get(f"/business/{other_account.account_id}")
    unknown = member.client.get("/business/AAAAAAAAAAAAAAAA")
    malformed = member.client.get("/business/../etc")

    assert forbidden.status_code == unknown.status_code == malformed.status_code == 404
    assert without_csrf_token(forbidden) == without_csrf_token(unknown)
    assert without_csrf_token(unknown) == without_csrf_token(malformed)
    anonymous = Client()
    assert anonymous.get("/business/AAAAAAAAAAAAAAAA").status_code == 404
    assert anonymous.get("/business/not*valid").status_code == 404


def test_the_account_home_makes_a_bounded_number_of_queries(
    person, account, emulator, demo, django_assert_max_num_queries
):
    someone = person(demo.member)
    someone.sign_in(account)

    # session, user, membership with its account (the navigation reuses it)
    with django_assert_max_num_queries(3):
        response = someone.client.get(f"/business/{account.account_id}")
    assert response.status_code == 200


def test_a_failed_sign_in_is_logged_with_the_account_and_code(
    person, account, emulator, demo, caplog
):
    emulator.fault(endpoint="token", aadsts=7000215)

    person(demo.member).sign_in(account)

    record = next(r for r in caplog.records if getattr(r, "event", "") == "sign_in")
    assert (record.outcome, record.account, record.code) == (
        "failure",
        account.account_id,
        "AADSTS7000215",
    )


def test_row_10_a_callback_with_both_a_code_and_an_error_signs_nobody_in(
    person, account, emulator, demo
):
    someone = person(demo.member)
    redirect = someone.at_microsoft(someone.start_sign_in(account))
    log_before = len(emulator.log())

    response = someone.follow(f"{redirect}&error=access_denied")

    assert response.status_code == 400
    assert "_auth_user_id" not in someone.client.session
    since = emulator.log()[log_before:]
    assert not [e for e in since if e["endpoint"] == "token"], since


def test_row_66_the_callback_page_sends_no_referrer_at_all(person, account, demo, client):
    someone = person(demo.member)
    signed_in = someone.sign_in(account)
    refused = client.get("/OAuth2?state=unknown&code=abc")

    assert signed_in["Referrer-Policy"] == refused["Referrer-Policy"] == "no-referrer"
    assert client.get("/")["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize(("idle_minutes", "still_signed_in"), [(59, True), (61, False)])
def test_a_session_unused_for_an_hour_ends(member, account, idle_minutes, still_signed_in):
    session = member.client.session
    session["session.seen_at"] = time.time() - idle_minutes * 60
    session.save()

    page = member.client.get(f"/business/{account.account_id}").content.decode()

    assert ("Sign in with Active Directory</button>" not in page) is still_signed_in
    assert ("_auth_user_id" in member.client.session) is still_signed_in


@pytest.mark.skipif(
    db_connection.vendor == "sqlite",
    reason="SQLite has one writer at a time, so nothing here is simultaneous; CI runs PostgreSQL.",
)
@pytest.mark.django_db(transaction=True)
def test_two_tabs_starting_sign_in_at_the_same_moment_both_complete(person, demo, monkeypatch):
    """Each start writes its own entry, so neither overwrites the other's flow (a list inside
    the session would keep only the last writer's). Both requests have read the session before
    either builds its flow: the worst interleaving, every time."""
    import msal

    both_loaded = threading.Barrier(2, timeout=10)
    initiate = msal.ClientApplication.initiate_auth_code_flow

    def after_both_loaded(self, *args, **kwargs):
        both_loaded.wait()
        return initiate(self, *args, **kwargs)

    admin = person()
    assert admin.sign_up().status_code == 302
    someone = person(demo.member)
    someone.start_sign_in(admin.account)  # the browser has its session already
    monkeypatch.setattr(msal.ClientApplication, "initiate_auth_code_flow", after_both_loaded)
    tabs = [someone.client, Client()]
    tabs[1].cookies = someone.client.cookies  # one browser: one cookie jar
    barrier = threading.Barrier(2)
    started: list[str] = []

    def start(tab: Client) -> None:
        barrier.wait()
        try:
            response = tab.post(f"/business/{admin.account.account_id}/signin")
            started.append(response["Location"])
        finally:
            db_connection.close()

    threads = [threading.Thread(target=start, args=(tab,)) for tab in tabs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(started) == 2
    for authorize_url in started:
        assert someone.follow(someone.at_microsoft(authorize_url)).status_code == 302
