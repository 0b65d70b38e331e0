"""Rows of the hostile-input matrix (shared/reference/security-matrix.md, section 6) that no
other test pins, each named after its row. The rest are pinned where their code is tested, by
tests named ``test_row_NN_...`` too (``pytest -k row_32`` finds a row). Row 42 does not apply:
sign-out and the end of a re-authorization redirect to fixed pages and read no ``next``."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client

from accounts.models import Membership
from accounts.services import SignInRefused, member_sign_in
from connections.models import DynamicsConnection, PendingAuthorization
from lib import crypto
from lib.entra.types import ProvenIdentity
from tests.people import SIGNUP_URL, signup_form

pytestmark = pytest.mark.django_db


def token_requests(emulator, since: int = 0) -> list[dict]:
    return [e for e in emulator.log()[since:] if e["endpoint"] == "token"]


def signed_in(someone) -> bool:
    return "_auth_user_id" in someone.client.session


# --- A. State, flow, CSRF ---------------------------------------------------------------------


def test_row_01_a_callback_in_a_fresh_browser_is_refused_before_any_token_request(emulator, client):
    response = client.get("/OAuth2?code=some-code&state=some-state")

    assert response.status_code == 400
    assert "start again" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert token_requests(emulator) == []


def test_row_03_a_callback_without_state_is_refused_before_any_token_request(
    person, account, emulator, demo
):
    someone = person(demo.member)
    redirect = someone.at_microsoft(someone.start_sign_in(account))
    query = {k: v for k, v in parse_qs(urlsplit(redirect).query).items() if k != "state"}
    log_before = len(emulator.log())

    response = someone.client.get("/OAuth2", {k: v[0] for k, v in query.items()})

    assert response.status_code == 400
    assert not signed_in(someone)
    assert token_requests(emulator, log_before) == []


def test_row_07_an_account_id_injected_into_the_callback_is_ignored(
    person, account, other_account, demo
):
    someone = person(demo.member)
    redirect = someone.at_microsoft(someone.start_sign_in(account))
    injected = f"{redirect}&account={other_account.account_id}&accountId={other_account.account_id}"

    response = someone.follow(injected)

    assert response["Location"] == f"/business/{account.account_id}"
    assert Membership.objects.filter(account=account, user__email=demo.member).exists()
    assert not Membership.objects.filter(account=other_account, user__email=demo.member).exists()


def test_row_09_an_error_redirect_with_script_and_an_injected_token_is_shown_harmlessly(
    person, account, emulator, demo
):
    someone = person(demo.member)
    state = parse_qs(urlsplit(someone.start_sign_in(account)).query)["state"][0]
    log_before = len(emulator.log())
    query = urlencode(
        {
            "identityOnly": "true",
            "state": state,
            "error": "access_denied",
            "error_description": "<script>alert(1)</script>",
            "access_token": "injected-token",
        }
    )

    page = someone.client.get(f"/OAuth2?{query}").content.decode()

    assert "<script>alert(1)</script>" not in page
    assert "injected-token" not in page
    assert not signed_in(someone)
    assert token_requests(emulator, log_before) == []


# --- B. Code and token endpoint ---------------------------------------------------------------


def test_row_19_an_answer_without_an_id_token_signs_nobody_in(person, account, emulator, demo):
    emulator.fault(endpoint="token", grant_type="authorization_code", response={"id_token": None})
    someone = person(demo.member)

    response = someone.sign_in(account)

    assert response.status_code == 400
    assert not signed_in(someone)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "!!!.@@@.###", "e30.bm90LWpzb24.c2ln"])
def test_row_21_a_garbage_id_token_is_a_400_not_a_500(person, account, emulator, demo, garbage):
    emulator.fault(
        endpoint="token", grant_type="authorization_code", response={"id_token": garbage}
    )
    someone = person(demo.member)

    response = someone.sign_in(account)

    assert response.status_code == 400
    assert not signed_in(someone)


def test_row_12_a_code_the_token_endpoint_says_was_redeemed_already_changes_nothing(
    admin, emulator
):
    before = DynamicsConnection.objects.values().get(pk=admin.connection.pk)
    emulator.fault(
        endpoint="token", grant_type="authorization_code", aadsts=54005, error="invalid_grant"
    )

    page = admin.reauthorize().content.decode()

    assert "already used" in page
    assert DynamicsConnection.objects.values().get(pk=admin.connection.pk) == before


# --- C. ID token validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [{"aud": ["{client_id}", "00000000-0000-0000-0000-000000000001"]}, {"azp": "someone-else"}],
    ids=["aud-list", "azp"],
)
def test_row_23_an_id_token_also_meant_for_another_client_is_refused(
    person, account, emulator, demo, claims
):
    def filled(value):
        if isinstance(value, list):
            return [filled(v) for v in value]
        return value.format(client_id=demo.client_id)

    emulator.fault(
        endpoint="token",
        grant_type="authorization_code",
        claims={k: filled(v) for k, v in claims.items()},
    )
    someone = person(demo.member)

    assert someone.sign_in(account).status_code == 400
    assert not signed_in(someone)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_id_token(emulator, demo, nonce: str, how: str) -> str:
    """An id token with right claims and a wrong signature, signed four wrong ways."""
    now = int(time.time())
    claims = {
        "aud": demo.client_id,
        "iss": f"{emulator.url}/{demo.tenant_id}/v2.0",
        "tid": demo.tenant_id,
        "oid": "717b0aa2-22b4-43a4-8292-1d2f7f10f2f2",
        "sub": "forged-subject",
        "preferred_username": demo.member,
        "nonce": nonce,
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "ver": "2.0",
    }
    published = requests.get(
        f"{emulator.url}/{demo.tenant_id}/discovery/v2.0/keys", verify=emulator.ca_path, timeout=5
    ).json()["keys"][0]["kid"]
    own_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if how == "alg-none":
        header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{header}.{b64url(json.dumps(claims).encode())}."
    if how == "hs256-with-the-secret":
        return jwt.encode(claims, demo.client_secret, algorithm="HS256", headers={"kid": published})
    if how == "unknown-kid":
        return jwt.encode(claims, own_key, algorithm="RS256", headers={"kid": "not-published"})
    return jwt.encode(claims, own_key, algorithm="RS256", headers={"kid": published})


@pytest.mark.parametrize(
    "how", ["alg-none", "hs256-with-the-secret", "unknown-kid", "bad-signature"]
)
def test_row_32_an_id_token_not_signed_by_a_published_key_is_refused(
    person, account, emulator, demo, how
):
    someone = person(demo.member)
    authorize_url = someone.start_sign_in(account)
    nonce = parse_qs(urlsplit(authorize_url).query)["nonce"][0]  # what MSAL expects back
    forged = forged_id_token(emulator, demo, nonce, how)
    emulator.fault(endpoint="token", grant_type="authorization_code", response={"id_token": forged})

    response = someone.follow(someone.at_microsoft(authorize_url))

    assert response.status_code == 400
    assert not signed_in(someone)


def test_row_25_the_sign_in_service_refuses_an_identity_of_another_tenant_itself(account, demo):
    """The flow pins the tenant already; the domain rule holds on its own too."""
    stranger = ProvenIdentity(
        tenant_id=demo.other_tenant_id,
        object_id="5d98e1c7-906c-49a9-80b5-39ba42bc8b0b",
        username=demo.outsider,
        display_name="Alex Wilber",
        email="",
    )

    with pytest.raises(SignInRefused) as refused:
        member_sign_in(account=account, identity=stranger)
    assert refused.value.code == "tenant_mismatch"
    assert not Membership.objects.filter(user__object_id=stranger.object_id).exists()


# --- D. Authorization, tenancy ----------------------------------------------------------------


def test_row_39_signing_into_another_account_in_one_browser_ends_the_first_session(
    member, account, other_account
):
    from django.contrib.sessions.backends.db import SessionStore

    from accounts.access import CURRENT_ACCOUNT_SESSION_KEY

    first_session = member.client.session.session_key
    # While signed in to one account, another account's sign-in does not even start.
    assert member.client.post(f"/business/{other_account.account_id}/signin").status_code == 404

    member.client.post("/signout")
    assert member.sign_in(other_account).status_code == 302

    assert not SessionStore().exists(first_session)
    assert member.client.session.session_key != first_session
    assert member.client.session[CURRENT_ACCOUNT_SESSION_KEY] == other_account.account_id


# --- F. Secrets -------------------------------------------------------------------------------


def test_row_48_a_secret_sent_in_a_query_string_is_never_processed(admin, demo, emulator):
    log_before = len(emulator.log())
    secret = "Query~secret-value-0123456789"

    pages = [
        admin.client.get(SIGNUP_URL, {**signup_form(demo), "client_secret": secret}),
        admin.client.get(
            admin.reauthorize_url(), {"client_id": demo.client_id, "client_secret": secret}
        ),
    ]

    for page in pages:
        assert page.status_code == 200
        assert secret not in page.content.decode()
    assert not PendingAuthorization.objects.exists()
    assert emulator.log()[log_before:] == []


# --- G. Forms and input -----------------------------------------------------------------------


def test_row_51_a_huge_body_or_too_many_fields_is_a_400_not_a_500(entra_emulator):
    client = Client(raise_request_exception=False)
    form = "application/x-www-form-urlencoded"

    huge = client.post(SIGNUP_URL, "a" * 10_000_000, content_type=form)
    many = client.post(SIGNUP_URL, "&".join(f"f{n}=x" for n in range(1500)), content_type=form)

    assert huge.status_code == 400
    assert many.status_code == 400


def test_row_56_an_org_url_changed_by_re_authorization_gets_tokens_of_the_new_org_only(
    admin, emulator, demo
):
    new_org = demo.org_url.replace("127.0.0.1", "localhost")
    emulator.seed(
        {
            "dynamics_orgs": [
                {
                    "url": new_org,
                    "tenant": demo.tenant_id,
                    "name": "Contoso Sales",
                    "organization_id": "4b3b0e5e-8a4f-4f0e-9d2c-6a1b2c3d4e5f",
                    "business_unit_id": "5c4c1f6f-9b5a-4a1f-8e3d-7b2c3d4e5f60",
                    "members": [demo.admin],
                }
            ]
        }
    )

    page = admin.reauthorize(org_url=new_org)

    assert "was re-authorized and works" in page.content.decode()
    connection = DynamicsConnection.objects.select_related("account").get(pk=admin.connection.pk)
    cache = json.loads(
        crypto.decrypt(
            connection.token_cache_encrypted, context=connection.token_cache_context()
        ).reveal()
    )
    targets = {entry["target"] for entry in cache["AccessToken"].values()}
    assert all(new_org in target for target in targets), targets
    assert not any(f"{demo.org_url}/" in target for target in targets)


def test_the_forged_tokens_of_row_32_are_what_they_claim_to_be(emulator, demo):
    """The test's own forgeries: each is well-formed, and its header says what it is."""
    headers = {
        how: jwt.get_unverified_header(forged_id_token(emulator, demo, "n", how))
        for how in ("hs256-with-the-secret", "unknown-kid", "bad-signature")
    }
    assert headers["hs256-with-the-secret"]["alg"] == "HS256"
    assert headers["unknown-kid"]["kid"] == "not-published"
    assert headers["bad-signature"]["alg"] == "RS256"
