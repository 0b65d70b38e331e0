"""The local Entra ID emulator, driven the way the product drives it: a subprocess over HTTPS,
with MSAL 1.39 unmodified and a person's sign-in acted out through its HTML pages."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import msal
import pytest
import requests

import entra_emulator
from entra_emulator.testing import RunningEmulator, run_emulator, sign_in
from tests.network_guard import allow_local_port

SEED = Path(entra_emulator.__file__).with_name("demo_seed.json")
DEMO = json.loads(SEED.read_text())
CONTOSO, FABRIKAM = DEMO["tenants"]
APP = DEMO["apps"][0]
ORG = DEMO["dynamics_orgs"][0]
CLIENT_ID = APP["client_id"]
SECRET = APP["secrets"][0]["value"]
ADMIN, MEMBER = (u["upn"] for u in CONTOSO["users"])
ADMIN_OID = CONTOSO["users"][0]["oid"]
OUTSIDER = FABRIKAM["users"][0]["upn"]
APP_URL = "http://127.0.0.1:8000"  # the product's PUBLIC_BASE_URL; never contacted here
REDIRECT_URI = f"{APP_URL}/OAuth2"
OTHER_CLIENT_ID = "7d1f0c3e-5b8a-4f6e-9c2d-1a3b5c7d9e0f"


@pytest.fixture(scope="module")
def emu(tmp_path_factory) -> RunningEmulator:
    with run_emulator(
        SEED, tmp_path_factory.mktemp("entra"), env={"PUBLIC_BASE_URL": APP_URL}
    ) as running:
        for url in (running.url, running.browser_url):
            allow_local_port(urlsplit(url).port)
        yield running


@pytest.fixture(autouse=True)
def _from_the_seed(emu):
    emu.reset()


@pytest.fixture
def app(emu):
    return msal_app(emu)


def msal_app(emu, *, client_id=CLIENT_ID, secret=SECRET, tenant="organizations", http_cache=None):
    """An MSAL app as the product builds it (a fresh `http_cache` unless one is shared)."""
    session = requests.Session()
    session.request = functools.partial(session.request, verify=emu.ca_path, timeout=10)
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=secret,
        authority=f"{emu.url}/{tenant}",
        instance_discovery=False,
        http_client=session,
        http_cache={} if http_cache is None else http_cache,
    )


def dynamics_scopes(org: str) -> list[str]:
    return [f"{org}/user_impersonation"]


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def start(emu, app, **kwargs) -> dict:
    kwargs.setdefault("redirect_uri", REDIRECT_URI)
    return app.initiate_auth_code_flow(dynamics_scopes(kwargs.pop("org", emu.url)), **kwargs)


def log_in(emu, app, email=ADMIN, *, browser=None, **kwargs) -> tuple[dict, dict]:
    """Start a flow, sign in through the pages; return the flow and the callback's query."""
    flow = start(emu, app, **kwargs)
    return flow, query(sign_in(browser or requests.Session(), flow["auth_uri"], email))


def tokens(emu, app, email=ADMIN, **kwargs) -> dict:
    flow, callback = log_in(emu, app, email, **kwargs)
    result = app.acquire_token_by_auth_code_flow(flow, callback)
    assert "error" not in result, result
    return result


def token_requests(emu) -> list[dict]:
    return [entry for entry in emu.log() if entry["endpoint"] == "token"]


def whoami(emu, token=None, *, org=None, path="WhoAmI"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(
        f"{org or emu.url}/api/data/v9.2/{path}", headers=headers, verify=emu.ca_path, timeout=10
    )


# --- Start-up and discovery ---------------------------------------------------------------------


def test_the_ready_line_names_the_https_and_browser_origins(emu):
    assert re.fullmatch(
        r"entra-emulator ready at https://127\.0\.0\.1:\d+ "
        r"\(browser pages at http://127\.0\.0\.1:\d+\)",
        emu.ready_line,
    )


def test_discovery_puts_the_browser_pages_on_http_and_everything_else_on_https(emu):
    http = emu.session()
    response = http.get(f"{emu.url}/organizations/v2.0/.well-known/openid-configuration")
    config = response.json()
    assert response.status_code == 200
    assert "Retry-After" not in response.headers
    assert config["issuer"] == f"{emu.url}/{{tenantid}}/v2.0"
    assert config["authorization_endpoint"] == (
        f"{emu.browser_url}/organizations/oauth2/v2.0/authorize"
    )
    assert config["end_session_endpoint"] == f"{emu.browser_url}/organizations/oauth2/v2.0/logout"
    assert config["token_endpoint"] == f"{emu.url}/organizations/oauth2/v2.0/token"
    assert config["jwks_uri"] == f"{emu.url}/organizations/discovery/v2.0/keys"
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]

    by_domain = http.get(f"{emu.url}/{CONTOSO['domain']}/v2.0/.well-known/openid-configuration")
    assert by_domain.json()["issuer"] == f"{emu.url}/{CONTOSO['id']}/v2.0"
    assert by_domain.json()["token_endpoint"] == f"{emu.url}/{CONTOSO['id']}/oauth2/v2.0/token"


def test_an_unknown_tenant_fails_discovery_with_90002(emu):
    response = emu.session().get(f"{emu.url}/nowhere.example/v2.0/.well-known/openid-configuration")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_tenant"
    assert response.json()["error_codes"] == [90002]
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal_app(emu, tenant="nowhere.example")


def test_the_browser_port_serves_only_the_pages_and_the_index_lists_no_secret(emu):
    assert (
        requests.get(
            f"{emu.browser_url}/organizations/v2.0/.well-known/openid-configuration", timeout=10
        ).status_code
        == 404
    )

    index = requests.get(f"{emu.browser_url}/", timeout=10)
    assert index.status_code == 200
    assert ADMIN in index.text and "Fabrikam" in index.text
    assert SECRET not in index.text


# --- The auth-code flow -------------------------------------------------------------------------


def test_the_auth_code_flow_gives_tokens_whose_claims_and_signature_check_out(emu, app):
    flow, callback = log_in(emu, app)
    result = app.acquire_token_by_auth_code_flow(flow, callback)

    assert "error" not in result, result
    tid = CONTOSO["id"]
    claims = result["id_token_claims"]
    assert claims["aud"] == CLIENT_ID
    assert claims["iss"] == f"{emu.url}/{tid}/v2.0"
    assert (claims["tid"], claims["oid"]) == (tid, ADMIN_OID)
    assert claims["preferred_username"] == ADMIN
    assert claims["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()
    assert claims["ver"] == "2.0"
    assert result["scope"] == f"{emu.url}/user_impersonation"
    padded = result["client_info"] + "=" * (-len(result["client_info"]) % 4)
    assert json.loads(base64.urlsafe_b64decode(padded)) == {"uid": ADMIN_OID, "utid": tid}

    http = emu.session()
    config = http.get(f"{emu.url}/organizations/v2.0/.well-known/openid-configuration").json()
    keys = jwt.PyJWKSet.from_dict(http.get(config["jwks_uri"]).json())
    key = keys[jwt.get_unverified_header(result["id_token"])["kid"]].key
    verified = jwt.decode(
        result["id_token"],
        key,
        algorithms=["RS256"],
        audience=CLIENT_ID,
        issuer=config["issuer"].replace("{tenantid}", tid),
    )
    assert verified == claims
    access = jwt.decode(result["access_token"], key, algorithms=["RS256"], audience=emu.url)
    assert access["iss"] == f"https://sts.windows.net/{tid}/"
    assert (access["appid"], access["scp"], access["oid"]) == (
        CLIENT_ID,
        "user_impersonation",
        ADMIN_OID,
    )


def test_the_code_is_appended_to_a_redirect_uri_that_already_has_a_query(emu, app):
    redirect_uri = f"{APP_URL}/OAuth2?identityOnly=true"
    flow = start(emu, app, redirect_uri=redirect_uri)

    callback = sign_in(requests.Session(), flow["auth_uri"], ADMIN)

    assert callback.startswith(f"{redirect_uri}&code=")
    assert "error" not in app.acquire_token_by_auth_code_flow(flow, query(callback))


def test_response_mode_form_post_posts_the_code_back_with_a_self_submitting_form(emu, app):
    flow = start(emu, app, response_mode="form_post")
    browser = requests.Session()
    sign_in(browser, flow["auth_uri"], ADMIN)  # signs in and consents
    page = browser.get(flow["auth_uri"], timeout=10).text

    posted = sign_in(browser, flow["auth_uri"], ADMIN)

    assert f'<form method="post" action="{REDIRECT_URI}">' in page
    assert "document.forms[0].submit()" in page
    assert posted.startswith(f"{REDIRECT_URI}?")
    assert "error" not in app.acquire_token_by_auth_code_flow(flow, query(posted))


def test_a_second_authorize_in_the_same_browser_signs_in_silently(emu, app):
    browser = requests.Session()
    log_in(emu, app, browser=browser)
    flow = start(emu, app)

    response = browser.get(flow["auth_uri"], allow_redirects=False, timeout=10)

    assert response.status_code == 302
    callback = query(response.headers["Location"])
    assert callback["state"] == flow["state"]
    assert "error" not in app.acquire_token_by_auth_code_flow(flow, callback)


def test_prompt_login_shows_the_sign_in_form_again(emu, app):
    browser = requests.Session()
    log_in(emu, app, browser=browser)
    flow = start(emu, app, prompt="login")

    response = browser.get(flow["auth_uri"], allow_redirects=False, timeout=10)

    assert response.status_code == 200
    assert '<label for="login">Email</label>' in response.text
    assert 'name="login" type="email" autocomplete="username"' in response.text


def test_prompt_select_account_offers_the_signed_in_account(emu, app):
    browser = requests.Session()
    log_in(emu, app, browser=browser)
    flow = start(emu, app, prompt="select_account")

    page = browser.get(flow["auth_uri"], timeout=10).text
    callback = query(sign_in(browser, flow["auth_uri"], ADMIN))

    assert "Pick an account" in page and ADMIN in page and "Use another account" in page
    assert "error" not in app.acquire_token_by_auth_code_flow(flow, callback)


def test_prompt_none_without_a_session_is_login_required(emu, app):
    flow = start(emu, app, prompt="none")

    response = requests.get(flow["auth_uri"], allow_redirects=False, timeout=10)

    callback = query(response.headers["Location"])
    assert callback["error"] == "login_required"
    assert callback["error_description"].startswith("AADSTS50058:")
    assert callback["state"] == flow["state"]


def test_prompt_consent_asks_again_after_consent_was_given(emu, app):
    browser = requests.Session()
    log_in(emu, app, browser=browser)
    flow = start(emu, app, prompt="consent")

    page = browser.get(flow["auth_uri"], allow_redirects=False, timeout=10).text

    assert "Permissions requested" in page
    assert f"Access Dynamics 365 as you ({emu.url})" in page
    assert ">Accept</button>" in page and ">Cancel</button>" in page


def test_only_openid_scopes_give_a_graph_token(emu, app):
    flow = app.initiate_auth_code_flow([], redirect_uri=f"{APP_URL}/OAuth2?identityOnly=true")
    callback = query(sign_in(requests.Session(), flow["auth_uri"], ADMIN))

    result = app.acquire_token_by_auth_code_flow(flow, callback)

    assert result["scope"] == "User.Read profile openid email"
    access = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert access["aud"] == "00000003-0000-0000-c000-000000000000"


def test_cancelling_consent_returns_access_denied_65004(emu, app):
    flow = start(emu, app)

    callback = query(sign_in(requests.Session(), flow["auth_uri"], ADMIN, accept_consent=False))

    assert callback["error"] == "access_denied"
    assert callback["error_description"].startswith(
        "AADSTS65004: User declined to consent to access the app."
    )
    assert app.acquire_token_by_auth_code_flow(flow, callback)["error"] == "access_denied"


def test_a_tampered_pkce_verifier_is_refused_with_501481(emu, app):
    flow, callback = log_in(emu, app)
    flow["code_verifier"] = flow["code_verifier"][::-1]

    result = app.acquire_token_by_auth_code_flow(flow, callback)

    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [501481]


def test_a_code_is_redeemed_only_once_54005(emu, app):
    flow, callback = log_in(emu, app)
    assert "error" not in app.acquire_token_by_auth_code_flow(dict(flow), callback)

    again = app.acquire_token_by_auth_code_flow(dict(flow), callback)

    assert again["error"] == "invalid_grant"
    assert again["error_codes"] == [54005]


def test_an_unregistered_redirect_uri_gets_the_error_page_and_no_redirect(emu, app):
    flow = start(emu, app, redirect_uri="https://evil.example/callback")

    response = requests.get(flow["auth_uri"], allow_redirects=False, timeout=10)

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "Sorry, but we\u2019re having trouble signing you in." in response.text
    assert "AADSTS50011" in response.text
    assert "https://evil.example/callback" in response.text
    assert "Correlation Id" in response.text


def test_assignment_required_turns_away_an_unassigned_user_with_50105(emu, app):
    emu.add_app({**APP, "assignment_required": True, "assigned_users": [ADMIN]})

    _, callback = log_in(emu, app, MEMBER)

    assert callback["error"] == "access_denied"
    assert callback["error_description"].startswith("AADSTS50105:")
    assert "error" not in tokens(emu, app, ADMIN)


def test_a_user_of_another_tenant_is_refused_at_a_tenant_authority_with_50020(emu):
    app = msal_app(emu, tenant=CONTOSO["id"])

    _, callback = log_in(emu, app, OUTSIDER)

    assert callback["error"] == "invalid_request"
    assert callback["error_description"].startswith(f"AADSTS50020: User account '{OUTSIDER}'")


def test_an_org_outside_the_users_tenant_is_an_invalid_resource_500011(emu, app):
    _, callback = log_in(emu, app, OUTSIDER)

    assert callback["error"] == "invalid_resource"
    assert callback["error_description"].startswith(
        f"AADSTS500011: The resource principal named {emu.url} was not found in the tenant "
        "named Fabrikam"
    )


def test_a_hostile_login_hint_is_escaped_on_the_sign_in_page(emu, app):
    flow = start(emu, app, login_hint='"><script>alert(1)</script>')

    page = requests.get(flow["auth_uri"], timeout=10).text

    assert "<script>alert(1)" not in page
    assert 'value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in page


def test_sign_out_ends_the_session_and_links_back_only_to_an_app(emu, app):
    browser = requests.Session()
    log_in(emu, app, browser=browser)
    logout = f"{emu.browser_url}/organizations/oauth2/v2.0/logout"

    back = browser.get(logout, params={"post_logout_redirect_uri": f"{APP_URL}/"}, timeout=10)
    elsewhere = browser.get(
        logout, params={"post_logout_redirect_uri": "https://evil.example/"}, timeout=10
    )
    again = browser.get(start(emu, app)["auth_uri"], allow_redirects=False, timeout=10)

    assert "You signed out of your account" in back.text
    assert f'<a href="{APP_URL}/">Return to the app</a>' in back.text
    assert "evil.example" not in elsewhere.text
    assert again.status_code == 200 and 'name="login"' in again.text


# --- Client authentication at the token endpoint ------------------------------------------------


ENTRA_ERROR_KEYS = {
    "error",
    "error_description",
    "error_codes",
    "timestamp",
    "trace_id",
    "correlation_id",
    "error_uri",
}


def test_a_wrong_secret_gets_401_and_7000215_in_entras_error_shape(emu):
    app = msal_app(emu, secret="Wrong~secret-value-0123456789")

    result = app.acquire_token_by_refresh_token("an-old-refresh-token", dynamics_scopes(emu.url))

    assert set(result) >= ENTRA_ERROR_KEYS
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith(
        "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the "
        "request is the client secret value, not the client secret ID"
    )
    assert f"Trace ID: {result['trace_id']}" in result["error_description"]
    assert result["error_uri"] == f"{emu.url}/error?code=7000215"
    assert "AADSTS7000215" in emu.session().get(result["error_uri"]).text
    assert [entry["status"] for entry in token_requests(emu)] == [401]


def test_an_expired_secret_gets_7000222(emu):
    expired = "Old8Q~expired-secret-value-0123456789abc"
    emu.add_app(
        {
            **APP,
            "client_id": OTHER_CLIENT_ID,
            "secrets": [
                {
                    "id": "0f0e0d0c-0b0a-4908-8706-050403020100",
                    "value": expired,
                    "expires": "2020-01-01T00:00:00Z",
                },
            ],
        }
    )
    app = msal_app(emu, client_id=OTHER_CLIENT_ID, secret=expired)

    result = app.acquire_token_by_refresh_token("an-old-refresh-token", dynamics_scopes(emu.url))

    assert (result["error"], result["error_codes"]) == ("invalid_client", [7000222])
    assert [entry["status"] for entry in token_requests(emu)] == [401]


def test_an_unknown_client_id_gets_700016(emu):
    app = msal_app(emu, client_id=OTHER_CLIENT_ID)

    result = app.acquire_token_by_refresh_token("an-old-refresh-token", dynamics_scopes(emu.url))
    page = requests.get(start(emu, app)["auth_uri"], allow_redirects=False, timeout=10)

    assert (result["error"], result["error_codes"]) == ("unauthorized_client", [700016])
    assert page.status_code == 400 and "AADSTS700016" in page.text


# --- Refresh ------------------------------------------------------------------------------------


def test_silent_acquisition_refreshes_a_short_lived_access_token_once(emu, app):
    emu.config(access_token_lifetime=60)  # under MSAL's 5-minute margin: always refreshed
    first = tokens(emu, app)
    account = app.get_accounts(username=ADMIN)[0]

    second = app.acquire_token_silent(dynamics_scopes(emu.url), account)

    assert second["access_token"] != first["access_token"]
    refreshes = [e for e in token_requests(emu) if e["grant_type"] == "refresh_token"]
    assert [e["outcome"] for e in refreshes] == ["ok"]
    assert "nonce" not in jwt.decode(second["id_token"], options={"verify_signature": False})
    assert whoami(emu, second["access_token"]).status_code == 200


def test_an_old_code_gets_70008_and_an_old_refresh_token_700082(emu, app):
    emu.config(refresh_token_lifetime=1)
    browser = requests.Session()
    tokens(emu, app, browser=browser)
    account = app.get_accounts(username=ADMIN)[0]
    emu.config(code_lifetime=1)
    flow, callback = log_in(emu, app, browser=browser)
    time.sleep(1.1)

    code = app.acquire_token_by_auth_code_flow(flow, callback)
    refresh = app.acquire_token_silent_with_error(
        dynamics_scopes(emu.url), account, force_refresh=True
    )

    assert (code["error"], code["error_codes"]) == ("invalid_grant", [70008])
    assert (refresh["error"], refresh["error_codes"]) == ("invalid_grant", [700082])


def test_a_revoked_user_cannot_refresh_50173(emu, app):
    tokens(emu, app)
    account = app.get_accounts(username=ADMIN)[0]
    emu.revoke(ADMIN)

    result = app.acquire_token_silent_with_error(
        dynamics_scopes(emu.url), account, force_refresh=True
    )

    assert (result["error"], result["error_codes"]) == ("invalid_grant", [50173])


# --- WhoAmI -------------------------------------------------------------------------------------


def test_whoami_answers_a_member_with_the_orgs_ids(emu, app):
    token = tokens(emu, app)["access_token"]

    response = whoami(emu, token)
    with_parentheses = whoami(emu, token, path="WhoAmI()")

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; odata.metadata=minimal"
    assert response.headers["OData-Version"] == "4.0"
    body = response.json()
    assert body["@odata.context"] == (
        f"{emu.url}/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"
    )
    assert body["OrganizationId"] == ORG["organization_id"]
    assert body["BusinessUnitId"] == ORG["business_unit_id"]
    assert with_parentheses.json()["UserId"] == body["UserId"] != ADMIN_OID


@pytest.mark.parametrize(
    ("claims", "outcome"),
    [
        (None, "no_token"),
        ({}, "invalid_token"),
        ({"exp": 1}, "expired_token"),
        ({"aud": "https://other.crm.dynamics.com"}, "wrong_audience"),
    ],
    ids=["missing", "not-a-jwt", "expired", "wrong-audience"],
)
def test_whoami_challenges_a_bad_token_with_401(emu, app, claims, outcome):
    token = None
    if claims == {}:
        token = "not-a-jwt"
    elif claims:
        emu.fault(endpoint="token", access_token_claims=claims)
        token = tokens(emu, app)["access_token"]

    response = whoami(emu, token)

    assert response.status_code == 401
    assert [e["outcome"] for e in emu.log() if e["endpoint"] == "whoami"] == [outcome]
    assert response.content == b""
    assert response.headers["WWW-Authenticate"] == (
        f"Bearer authorization_uri={emu.url}/{CONTOSO['id']}/oauth2/authorize, "
        f"resource_id={emu.url}/"
    )


def test_whoami_picks_the_org_by_host_and_refuses_a_non_member_with_403(emu, app):
    sales = emu.url.replace("127.0.0.1", "localhost")
    emu.seed(
        {
            "dynamics_orgs": [
                {
                    "url": sales,
                    "tenant": CONTOSO["id"],
                    "name": "Contoso Sales",
                    "organization_id": "6a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                    "business_unit_id": "7b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e",
                    "members": [ADMIN],
                }
            ]
        }
    )

    token = tokens(emu, app, MEMBER, org=sales)["access_token"]
    response = whoami(emu, token, org=sales)

    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "0x80072560",
            "message": "The user is not a member of the organization.",
        }
    }
    assert whoami(emu, token).status_code == 401  # the other org: wrong audience
    unknown = requests.get(
        f"{emu.url}/api/data/v9.2/WhoAmI",
        headers={"Host": "nowhere.example"},
        verify=emu.ca_path,
        timeout=10,
    )
    assert unknown.status_code == 404


# --- Faults, reset and the log ------------------------------------------------------------------


def test_an_injected_aadsts_at_the_token_endpoint_fails_only_the_next_request(emu, app):
    emu.fault(endpoint="token", aadsts=65001)
    flow, callback = log_in(emu, app)

    result = app.acquire_token_by_auth_code_flow(flow, callback)

    assert (result["error"], result["suberror"], result["error_codes"]) == (
        "invalid_grant",
        "consent_required",
        [65001],
    )
    assert "error" not in tokens(emu, app)


@pytest.mark.parametrize(("code", "error"), [(50105, "access_denied"), (65001, "consent_required")])
def test_an_injected_aadsts_at_authorize_is_redirected_back(emu, app, code, error):
    emu.fault(endpoint="authorize", aadsts=code)

    response = requests.get(start(emu, app)["auth_uri"], allow_redirects=False, timeout=10)

    callback = query(response.headers["Location"])
    assert callback["error"] == error
    assert callback["error_description"].startswith(f"AADSTS{code}:")


def test_an_injected_page_error_at_authorize_is_shown_on_the_error_page(emu, app):
    emu.fault(endpoint="authorize", aadsts=50011)

    response = requests.get(start(emu, app)["auth_uri"], allow_redirects=False, timeout=10)

    assert response.status_code == 400 and "AADSTS50011" in response.text


def test_an_injected_503_reaches_msal_as_a_service_error(emu, app):
    emu.fault(endpoint="token", status=503)
    flow, callback = log_in(emu, app)

    with pytest.raises(msal.exceptions.MsalServiceError, match="503"):
        app.acquire_token_by_auth_code_flow(flow, callback)
    assert [e["outcome"] for e in token_requests(emu)] == ["http_503"]


def test_an_injected_delay_holds_the_answer_then_answers_normally(emu):
    emu.fault(endpoint="discovery", delay=1.0)

    started = time.monotonic()
    msal_app(emu)

    assert time.monotonic() - started >= 1.0
    [entry] = [e for e in emu.log() if e["endpoint"] == "discovery"]
    assert (entry["status"], entry["outcome"], entry["fault"]) == (200, "ok", "delay")


def test_an_injected_body_is_served_as_is(emu):
    emu.fault(endpoint="discovery", body="<html>not json</html>")

    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal_app(emu)
    assert [e["outcome"] for e in emu.log()] == ["fault_body"]


def test_injected_claims_change_only_the_next_id_token(emu, app):
    emu.fault(endpoint="token", claims={"aud": "someone-else", "name": "Injected", "sid": None})

    changed = tokens(emu, app)["id_token_claims"]
    normal = tokens(emu, app)["id_token_claims"]

    assert (changed["aud"], changed["name"]) == ("someone-else", "Injected")
    assert "sid" not in changed
    assert (normal["aud"], normal["name"]) == (CLIENT_ID, "Adele Vance")


def test_msal_refuses_an_id_token_without_the_nonce(emu, app):
    emu.fault(endpoint="token", claims={"nonce": None})
    flow, callback = log_in(emu, app)

    with pytest.raises(RuntimeError, match="nonce"):
        app.acquire_token_by_auth_code_flow(flow, callback)


def test_reset_restores_the_seed_and_forgets_sessions_faults_and_settings(emu, app):
    emu.add_app({**APP, "client_id": OTHER_CLIENT_ID})
    emu.fault(endpoint="token", status=503)
    emu.config(access_token_lifetime=60)
    browser = requests.Session()
    log_in(emu, app, browser=browser)

    emu.reset()

    assert emu.log() == []
    other = msal_app(emu, client_id=OTHER_CLIENT_ID)
    result = other.acquire_token_by_refresh_token("an-old-refresh-token", dynamics_scopes(emu.url))
    assert result["error_codes"] == [700016]
    page = browser.get(start(emu, app)["auth_uri"], allow_redirects=False, timeout=10)
    assert page.status_code == 200 and 'name="login"' in page.text
    assert tokens(emu, app)["expires_in"] == 3599


def test_one_login_is_one_token_request_and_a_shared_http_cache_one_discovery(emu):
    http_cache: dict = {}
    first = msal_app(emu, http_cache=http_cache)
    tokens(emu, first)
    msal_app(emu, http_cache=http_cache)

    endpoints = [entry["endpoint"] for entry in emu.log()]

    assert endpoints.count("discovery") == 1
    assert [(e["grant_type"], e["status"]) for e in token_requests(emu)] == [
        ("authorization_code", 200)
    ]


def test_the_log_never_shows_a_secret_code_or_token(emu, app):
    flow, callback = log_in(emu, app)
    result = app.acquire_token_by_auth_code_flow(flow, callback)
    whoami(emu, result["access_token"])
    time.sleep(0.2)  # let the stderr reader catch up

    assert "POST /organizations/oauth2/v2.0/token 200" in emu.stderr
    for value in (
        SECRET,
        callback["code"],
        result["access_token"],
        result["refresh_token"],
        result["id_token"],
        ADMIN,
    ):
        assert value not in emu.stderr


def test_max_age_sends_a_stale_session_back_to_the_sign_in_page(emu, app):
    """OIDC max_age: a browser signed in longer ago than that types its credentials again."""
    browser = requests.Session()
    log_in(emu, app, browser=browser)
    stale = start(emu, app, max_age=0)
    time.sleep(1.1)

    response = browser.get(stale["auth_uri"], allow_redirects=False, timeout=10)

    assert response.status_code == 200
    assert '<label for="login">Email</label>' in response.text


def test_max_age_puts_the_sign_in_time_in_the_id_token(emu, app):
    before = int(time.time())
    result = tokens(emu, app, max_age=300)

    assert before - 1 <= result["id_token_claims"]["auth_time"] <= time.time()
    assert "auth_time" not in tokens(emu, app)["id_token_claims"]


def test_a_kept_alive_request_is_answered_without_the_delayed_ack_stall(emu):
    """An answer in two writes waits for the client's delayed ACK (~40 ms on Linux loopback)."""
    session = emu.session()
    url = f"{emu.url}/organizations/v2.0/.well-known/openid-configuration"
    session.get(url)  # the TLS handshake, once
    durations = []
    for _ in range(11):
        began = time.perf_counter()
        assert session.get(url).status_code == 200
        durations.append(time.perf_counter() - began)

    assert sorted(durations)[5] < 0.02  # the median, well under the 40 ms stall


# --- Setup checks: the Web API's challenge, client credentials, admin consent ------------------


def test_the_web_api_root_challenges_an_anonymous_request_with_the_orgs_tenant(emu):
    response = whoami(emu, path="")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == (
        f"Bearer authorization_uri={emu.url}/{CONTOSO['id']}/oauth2/authorize, "
        f"resource_id={emu.url}/"
    )


def test_the_client_credentials_grant_issues_an_app_only_token_for_the_org(emu):
    result = msal_app(emu, tenant=CONTOSO["id"]).acquire_token_for_client([f"{emu.url}/.default"])

    assert "access_token" in result, result
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert (claims["aud"], claims["tid"], claims["idtyp"]) == (emu.url, CONTOSO["id"], "app")
    assert "refresh_token" not in result and "id_token" not in result
    assert whoami(emu, result["access_token"]).status_code == 403  # no application user


@pytest.mark.parametrize(
    ("tenant", "scope", "secret", "code"),
    [
        ("contoso", "{org}/user_impersonation", SECRET, 1002012),
        ("contoso", "{org}/.default", "Wrong~secret-value-0123456789", 7000215),
        ("fabrikam", "{org}/.default", SECRET, 700016),  # no service principal there yet
        ("contoso", "https://nothere.crm.dynamics.com/.default", SECRET, 500011),
    ],
    ids=["not-default", "wrong-secret", "no-service-principal", "unknown-org"],
)
def test_the_client_credentials_grant_refuses_as_entra_does(emu, tenant, scope, secret, code):
    tenant_id = CONTOSO["id"] if tenant == "contoso" else FABRIKAM["id"]
    app = msal_app(emu, tenant=tenant_id, secret=secret)

    result = app.acquire_token_for_client([scope.format(org=emu.url)])

    assert result.get("error_codes") == [code], result


def test_the_admin_consent_endpoint_grants_for_the_whole_tenant(emu):
    """A tenant whose users may not consent: its staff get AADSTS90094 until an admin
    approves at /v2.0/adminconsent (a non-admin there gets AADSTS90094 too)."""
    locked = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
    org = emu.url.replace("127.0.0.1", "localhost")
    staff, boss = "staff@locked.onmicrosoft.com", "boss@locked.onmicrosoft.com"
    users = [
        {"oid": "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d", "upn": boss, "name": "Boss", "admin": True},
        {"oid": "3b4c5d6e-7f8a-4b9c-8d0e-2f3a4b5c6d7e", "upn": staff, "name": "Staff"},
    ]
    emu.seed(
        {
            "tenants": [
                {
                    "id": locked,
                    "name": "Locked",
                    "domain": "locked.onmicrosoft.com",
                    "users_can_consent": False,
                    "users": users,
                }
            ],
            "dynamics_orgs": [
                {
                    **ORG,
                    "url": org,
                    "tenant": locked,
                    "organization_id": "4c5d6e7f-8a9b-4c0d-9e1f-3a4b5c6d7e8f",
                    "members": [staff, boss],
                }
            ],
        }
    )
    app = msal_app(emu)
    _, refused = log_in(emu, app, staff, org=org)
    assert refused["error"] == "access_denied" and "AADSTS90094" in refused["error_description"]

    consent_url = (
        f"{emu.browser_url}/{locked}/v2.0/adminconsent?"
        f"client_id={CLIENT_ID}&scope={org}/user_impersonation&redirect_uri={REDIRECT_URI}"
        "&state=s1"
    )
    non_admin = query(sign_in(requests.Session(), consent_url, staff))
    assert non_admin["error"] == "access_denied" and "AADSTS90094" in non_admin["error_description"]
    granted = query(sign_in(requests.Session(), consent_url, boss))
    assert granted == {
        "admin_consent": "True",
        "tenant": locked,
        "scope": f"{org}/user_impersonation",
        "state": "s1",
    }

    _, callback = log_in(emu, app, staff, org=org)  # and no consent page for staff now
    assert "code" in callback, callback


# --- Certificate credentials: client assertions (RFC 7523) ---------------------------------------


def uploaded_certificate(emu):
    from lib.certificates import generate

    private_key, certificate = generate("Dynamics Connect test", valid_days=30)
    emu.upload_certificate(CLIENT_ID, certificate.pem)
    return private_key, certificate


def certificate_app(emu, private_key, certificate, *, tenant=None):
    session = requests.Session()
    session.request = functools.partial(session.request, verify=emu.ca_path, timeout=10)
    return msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential={
            "private_key": private_key.reveal(),
            "public_certificate": certificate.pem,
        },
        authority=f"{emu.url}/{tenant or CONTOSO['id']}",
        instance_discovery=False,
        http_client=session,
        http_cache={},
    )


def test_msal_authenticates_with_an_uploaded_certificate(emu):
    private_key, certificate = uploaded_certificate(emu)
    app = certificate_app(emu, private_key, certificate)

    first = app.acquire_token_for_client([f"{emu.url}/.default"])
    app.remove_tokens_for_client()  # so the next call asks again, with the same assertion
    second = app.acquire_token_for_client([f"{emu.url}/.default"])

    assert "access_token" in first, first
    assert "access_token" in second, second  # MSAL reused its assertion: Entra accepts that


def test_msal_with_a_certificate_not_uploaded_gets_700027(emu):
    from lib.certificates import generate

    private_key, certificate = generate("never uploaded", valid_days=30)

    result = certificate_app(emu, private_key, certificate).acquire_token_for_client(
        [f"{emu.url}/.default"]
    )

    assert result.get("error_codes") == [700027], result


def assertion(private_key, certificate, **overrides):
    now = int(time.time())
    claims = {"iss": CLIENT_ID, "sub": CLIENT_ID, "exp": now + 600, "nbf": now, "jti": "j1"}
    headers = {"x5t#S256": certificate.x5t_s256}
    headers.update(overrides.pop("headers", {}))
    claims.update(overrides)
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None},
        private_key.reveal(),
        algorithm="PS256",
        headers=headers,
    )


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"headers": {"x5t#S256": "AAAA"}}, 700027),
        ("other-key", 700027),
        ({"aud": "https://elsewhere.example/token"}, 700023),
        ({"iss": OTHER_CLIENT_ID, "sub": OTHER_CLIENT_ID}, 700021),
        ({"exp": int(time.time()) - 3600}, 700024),
        ({"nbf": int(time.time()) + 3600}, 700024),
    ],
    ids=["unknown-certificate", "bad-signature", "wrong-audience", "other-app", "expired", "early"],
)
def test_hostile_client_assertions_are_refused_as_entra_does(emu, change, code):
    from lib.certificates import generate

    private_key, certificate = uploaded_certificate(emu)
    token_endpoint = f"{emu.url}/{CONTOSO['id']}/oauth2/v2.0/token"
    if change == "other-key":
        other_key, _ = generate("an impostor", valid_days=30)
        value = assertion(other_key, certificate, aud=token_endpoint)
    else:
        value = assertion(private_key, certificate, **{"aud": token_endpoint, **change})

    response = requests.post(
        token_endpoint,
        data={
            "client_id": CLIENT_ID,
            "grant_type": "client_credentials",
            "scope": f"{emu.url}/.default",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": value,
        },
        verify=emu.ca_path,
        timeout=10,
    )

    assert response.status_code == 401
    assert response.json()["error_codes"] == [code]


def test_a_person_uploads_a_certificate_on_the_portal_page(emu):
    from lib.certificates import generate

    private_key, certificate = generate("uploaded by a person", valid_days=30)
    page_url = f"{emu.browser_url}/apps/{CLIENT_ID}/certificates"

    refused = requests.post(page_url, data={"pem": "not a certificate"}, timeout=10)
    uploaded = requests.post(page_url, data={"pem": certificate.pem}, timeout=10)

    assert "not a PEM certificate" in refused.text
    assert certificate.sha1_thumbprint in uploaded.text
    result = certificate_app(emu, private_key, certificate).acquire_token_for_client(
        [f"{emu.url}/.default"]
    )
    assert "access_token" in result, result


def test_a_request_still_delayed_at_a_reset_is_not_logged_into_the_next_test(emu):
    """A client that gave up on a delayed answer must not leave an entry in the fresh log."""
    emu.fault(endpoint="whoami", delay=1.0)
    with pytest.raises(requests.Timeout):
        whoami_with_timeout = functools.partial(
            requests.get, f"{emu.url}/api/data/v9.2/WhoAmI", verify=emu.ca_path
        )
        whoami_with_timeout(timeout=0.2)
    emu.reset()
    time.sleep(1.2)  # the delayed request wakes up now

    assert emu.log() == []
