"""accounts/entra.py against the real emulator over HTTPS, with MSAL unmodified."""

from __future__ import annotations

import socket
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory

from accounts import entra
from accounts.entra import AppRegistration, Purpose
from bizible_site.sensitive import Secret
from entra_emulator.testing import sign_in
from tests.network_guard import OutboundConnectionBlocked, allow_local_port

pytestmark = pytest.mark.django_db

# Valid long enough for WhoAmI, yet MSAL treats a token with under 5 minutes left as expired,
# so every silent call refreshes.
SHORT_LIFETIME = 120


class Browser:
    """One person's browser: the app's session plus the emulator's cookies."""

    def __init__(self) -> None:
        self.session = SessionStore()
        self.http = requests.Session()

    def request(self, url: str = "/"):
        parts = urlsplit(url)
        request = RequestFactory().get(parts.path or "/", parse_qs(parts.query))
        request.session = self.session
        return request

    def start(self, demo, *, purpose=Purpose.SIGNUP, tenant=entra.ORGANIZATIONS, secret=None, **kw):
        app = AppRegistration(demo.client_id, Secret(secret or demo.client_secret), tenant)
        if "scopes" not in kw and not purpose.identity_only:
            kw["scopes"] = [entra.dynamics_scope(demo.org_url)]
        return entra.start_flow(self.request(), purpose=purpose, app=app, **kw)

    def complete(self, callback_url: str, *, secret: str, identity_only: bool | None = None):
        request = self.request(callback_url)
        if identity_only is None:
            identity_only = request.GET.get("identityOnly") == "true"
        flow = entra.pop_flow(request, identity_only=identity_only)
        return entra.redeem(flow, request.GET, client_secret=Secret(secret))

    def sign_in(self, demo, email=None, **start_kw) -> str:
        return sign_in(self.http, self.start(demo, **start_kw), email or demo.admin)


def token_requests(emulator) -> list[dict]:
    return [entry for entry in emulator.log() if entry["endpoint"] == "token"]


def test_a_full_crm_authorization_flow_succeeds_over_https(emulator, demo):
    browser = Browser()
    callback = browser.sign_in(demo)

    assert callback.startswith("http://testserver/OAuth2?")
    result = browser.complete(callback, secret=demo.client_secret)

    assert result.tenant_id == demo.tenant_id
    assert result.username == demo.admin
    assert result.object_id
    assert result.home_account_id
    assert result.access_token.reveal() not in repr(result)
    assert '"RefreshToken"' in result.token_cache
    assert len(token_requests(emulator)) == 1


def test_the_authorize_url_carries_pkce_state_nonce_and_the_exact_redirect_uri(emulator, demo):
    url = Browser().start(demo)
    query = parse_qs(urlsplit(url).query)

    assert query["redirect_uri"] == ["http://testserver/OAuth2"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["response_type"] == ["code"]
    assert query["state"] and query["nonce"] and query["code_challenge"]
    assert f"{demo.org_url}/user_impersonation" in query["scope"][0].split()
    assert "prompt" not in query


def test_sign_in_uses_the_identity_only_redirect_and_keeps_no_tokens(emulator, demo):
    browser = Browser()
    callback = browser.sign_in(demo, purpose=Purpose.SIGN_IN, tenant=demo.tenant_id)

    assert callback.startswith("http://testserver/OAuth2?identityOnly=true&")
    result = browser.complete(callback, secret=demo.client_secret)

    assert result.object_id and result.tenant_id == demo.tenant_id
    assert result.access_token is None
    assert result.token_cache == ""


def test_a_second_login_in_the_same_process_makes_no_second_discovery_request(emulator, demo):
    for _ in range(2):
        browser = Browser()
        browser.complete(browser.sign_in(demo), secret=demo.client_secret)

    endpoints = [entry["endpoint"] for entry in emulator.log()]
    assert endpoints.count("discovery") == 1
    assert endpoints.count("token") == 2


def test_a_replayed_callback_finds_no_flow_and_makes_no_token_request(emulator, demo):
    browser = Browser()
    callback = browser.sign_in(demo)
    browser.complete(callback, secret=demo.client_secret)

    with pytest.raises(entra.FlowExpired):
        browser.complete(callback, secret=demo.client_secret)
    assert len(token_requests(emulator)) == 1


def test_a_forged_state_is_refused_before_any_token_request(emulator, demo):
    browser = Browser()
    callback = browser.sign_in(demo)
    forged = callback.replace("state=", "state=forged")

    with pytest.raises(entra.FlowExpired):
        browser.complete(forged, secret=demo.client_secret)
    assert token_requests(emulator) == []


def test_a_callback_delivered_to_another_browser_is_refused(emulator, demo):
    """Login CSRF: the attacker's code and state arrive in the victim's browser."""
    callback = Browser().sign_in(demo)

    with pytest.raises(entra.FlowExpired):
        Browser().complete(callback, secret=demo.client_secret)


@pytest.mark.parametrize("purpose", [Purpose.SIGN_IN, Purpose.SIGNUP])
def test_a_flipped_identity_only_flag_is_refused_and_consumes_the_flow(emulator, demo, purpose):
    browser = Browser()
    tenant = demo.tenant_id if purpose is Purpose.SIGN_IN else entra.ORGANIZATIONS
    callback = browser.sign_in(demo, purpose=purpose, tenant=tenant)

    with pytest.raises(entra.FlowExpired) as raised:
        browser.complete(
            callback, secret=demo.client_secret, identity_only=not purpose.identity_only
        )
    assert raised.value.code == "purpose_mismatch"
    with pytest.raises(entra.FlowExpired):
        browser.complete(callback, secret=demo.client_secret)
    assert token_requests(emulator) == []


def test_a_duplicated_callback_parameter_is_refused(emulator, demo):
    browser = Browser()
    callback = browser.sign_in(demo)

    with pytest.raises(entra.FlowExpired) as raised:
        browser.complete(callback + "&code=second", secret=demo.client_secret)
    assert raised.value.code == "duplicate_parameter"


def test_a_flow_older_than_its_lifetime_is_refused(emulator, demo, settings, monkeypatch):
    browser = Browser()
    callback = browser.sign_in(demo)
    later = time.time() + settings.AUTH_FLOW_TTL_MINUTES * 60 + 1
    monkeypatch.setattr(entra.time, "time", lambda: later)

    with pytest.raises(entra.FlowExpired):
        browser.complete(callback, secret=demo.client_secret)
    assert token_requests(emulator) == []


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"aud": "00000000-0000-0000-0000-000000000000"}, "id_token_aud"),
        ({"iss": "https://evil.example/{tid}/v2.0"}, "id_token_iss"),
        ({"exp": int(time.time()) - 3600}, "id_token_exp"),
        ({"nbf": int(time.time()) + 3600}, "id_token_nbf"),
        ({"iat": int(time.time()) + 3600}, "id_token_iat"),
        ({"oid": None}, "id_token_oid"),
        ({"sub": None}, "id_token_claims"),
    ],
    ids=["aud", "iss", "exp", "nbf", "iat", "oid", "sub"],
)
def test_an_id_token_with_a_bad_claim_is_rejected(emulator, demo, claims, code):
    claims = {
        k: (v.format(tid=demo.tenant_id) if isinstance(v, str) else v) for k, v in claims.items()
    }
    emulator.fault(endpoint="token", claims=claims)
    browser = Browser()

    with pytest.raises(entra.InvalidIdToken) as raised:
        browser.complete(browser.sign_in(demo), secret=demo.client_secret)
    assert raised.value.code == code


def test_an_id_token_of_another_tenant_is_rejected_on_a_tenant_flow(emulator, demo):
    emulator.fault(
        endpoint="token",
        claims={"tid": demo.other_tenant_id, "iss": f"{emulator.url}/{demo.other_tenant_id}/v2.0"},
    )
    browser = Browser()
    callback = browser.sign_in(demo, purpose=Purpose.SIGN_IN, tenant=demo.tenant_id)

    with pytest.raises(entra.WrongTenant):
        browser.complete(callback, secret=demo.client_secret)


def test_an_id_token_whose_issuer_names_another_tenant_is_rejected(emulator, demo):
    emulator.fault(endpoint="token", claims={"iss": f"{emulator.url}/{demo.other_tenant_id}/v2.0"})
    browser = Browser()

    with pytest.raises(entra.InvalidIdToken) as raised:
        browser.complete(browser.sign_in(demo), secret=demo.client_secret)
    assert raised.value.code == "id_token_iss"


def test_a_nonce_mismatch_is_rejected_as_start_again(emulator, demo):
    emulator.fault(endpoint="token", claims={"nonce": "not-the-nonce-we-sent"})
    browser = Browser()

    with pytest.raises(entra.InvalidIdToken) as raised:
        browser.complete(browser.sign_in(demo), secret=demo.client_secret)
    assert raised.value.code == "nonce"


def test_a_wrong_client_secret_is_explained_and_marks_credentials_rejected(emulator, demo):
    browser = Browser()
    callback = browser.sign_in(demo, secret="wrong-secret-value")

    with pytest.raises(entra.EntraRejected) as raised:
        browser.complete(callback, secret="wrong-secret-value")
    error = raised.value
    assert error.code == "AADSTS7000215"
    assert error.credentials_rejected
    assert "Value (not its Secret ID)" in error.message
    assert error.correlation_id


def test_cancelling_at_the_consent_page_is_told_apart_from_a_failure(emulator, demo):
    browser = Browser()
    callback = sign_in(browser.http, browser.start(demo), demo.admin, accept_consent=False)

    with pytest.raises(entra.SignInCancelled):
        browser.complete(callback, secret=demo.client_secret)
    assert token_requests(emulator) == []


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ({"status": 503}, "http_5xx"),
        ({"body": "<html>Service unavailable</html>"}, "invalid_json"),
        ({"delay": 1.5}, "timeout"),
    ],
    ids=["5xx", "not-json", "slow"],
)
def test_an_unavailable_token_endpoint_is_reported_as_temporary(
    emulator, demo, settings, fault, code
):
    settings.ENTRA_HTTP_TIMEOUT = 0.5
    emulator.fault(endpoint="token", **fault)
    browser = Browser()

    with pytest.raises(entra.EntraUnavailable) as raised:
        browser.complete(browser.sign_in(demo), secret=demo.client_secret)
    assert raised.value.code == code
    assert "try again" in raised.value.message


def test_an_unreachable_authority_is_reported_as_temporary(emulator, demo, settings):
    closed = socket_port_nobody_listens_on()
    settings.ENTRA_AUTHORITY_HOST = f"https://127.0.0.1:{closed}"
    allow_local_port(closed)
    with pytest.raises(entra.EntraUnavailable) as raised:
        Browser().start(demo)
    assert raised.value.code == "unreachable"


def socket_port_nobody_listens_on() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_error_message_fills_in_what_the_customer_must_fix():
    error = entra.error_from_response(
        {"error": "invalid_request", "error_description": "AADSTS50011: The redirect URI..."},
        redirect="http://testserver/OAuth2",
    )
    assert "http://testserver/OAuth2" in error.message

    error = entra.error_from_response(
        {"error": "unauthorized_client", "error_codes": [700016]}, client_id="abc"
    )
    assert "abc" in error.message and error.credentials_rejected


def test_an_unknown_aadsts_code_still_gives_a_message_with_the_code():
    error = entra.error_from_response({"error": "invalid_request", "error_codes": [123456]})

    assert error.code == "AADSTS123456"
    assert "AADSTS123456" in error.message


class TestSilentTokens:
    def connect(self, demo) -> entra.SignInResult:
        browser = Browser()
        return browser.complete(browser.sign_in(demo), secret=demo.client_secret)

    def app(self, demo) -> AppRegistration:
        return AppRegistration(demo.client_id, Secret(demo.client_secret), demo.tenant_id)

    def test_an_expired_access_token_is_refreshed_once_and_the_cache_changes(self, emulator, demo):
        emulator.config(access_token_lifetime=SHORT_LIFETIME)
        connected = self.connect(demo)

        token = entra.acquire_token_silently(
            self.app(demo),
            token_cache=connected.token_cache,
            scopes=[entra.dynamics_scope(demo.org_url)],
            home_account_id=connected.home_account_id,
        )

        refreshes = [e for e in token_requests(emulator) if e["grant_type"] == "refresh_token"]
        assert len(refreshes) == 1
        assert token.token_cache and token.token_cache != connected.token_cache
        assert token.access_token.reveal() != connected.access_token.reveal()

    def test_a_fresh_access_token_comes_from_the_cache_without_a_request(self, emulator, demo):
        browser = Browser()
        connected = browser.complete(
            browser.sign_in(demo, tenant=demo.tenant_id), secret=demo.client_secret
        )

        token = entra.acquire_token_silently(
            self.app(demo),
            token_cache=connected.token_cache,
            scopes=[entra.dynamics_scope(demo.org_url)],
            home_account_id=connected.home_account_id,
        )

        assert token.token_cache == ""
        assert len(token_requests(emulator)) == 1

    def test_a_revoked_refresh_token_means_the_connection_needs_reauthorization(
        self, emulator, demo
    ):
        emulator.config(access_token_lifetime=SHORT_LIFETIME)
        connected = self.connect(demo)
        emulator.revoke(demo.admin)

        with pytest.raises(entra.EntraRejected) as raised:
            entra.acquire_token_silently(
                self.app(demo),
                token_cache=connected.token_cache,
                scopes=[entra.dynamics_scope(demo.org_url)],
                home_account_id=connected.home_account_id,
            )
        assert raised.value.code == "AADSTS50173"
        assert raised.value.credentials_rejected


def test_no_secret_code_or_token_reaches_the_logs(emulator, demo, caplog):
    caplog.set_level("DEBUG")
    browser = Browser()
    callback = browser.sign_in(demo)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    result = browser.complete(callback, secret=demo.client_secret)
    with pytest.raises(entra.EntraRejected):
        browser.complete(browser.sign_in(demo, secret="wrong-x"), secret="wrong-x")

    for needle in (demo.client_secret, code, result.access_token.reveal(), "wrong-x"):
        assert needle not in caplog.text


def test_the_network_guard_blocks_anything_but_the_emulator():
    with pytest.raises(OutboundConnectionBlocked):
        requests.get(
            "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration",
            timeout=2,
        )
