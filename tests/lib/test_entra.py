"""lib/entra against the real emulator over HTTPS, with MSAL unmodified, below the views."""

from __future__ import annotations

import socket
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from lib.dynamics import dynamics_scope
from lib.entra import flows
from lib.entra.errors import (
    EntraRejected,
    EntraUnavailable,
    FlowExpired,
    InvalidIdToken,
    Remedy,
    SignInCancelled,
    WrongTenant,
)
from lib.entra.tokens import acquire_token_silently
from lib.entra.types import ORGANIZATIONS, AppCredentials, Purpose
from lib.secret import Secret
from tests.network_guard import OutboundConnectionBlocked, allow_local_port

pytestmark = pytest.mark.django_db

# Valid long enough for WhoAmI, yet MSAL treats a token with under 5 minutes left as expired,
# so every silent call refreshes.
SHORT_LIFETIME = 120


def start(someone, *, purpose=Purpose.SIGNUP, tenant=ORGANIZATIONS, scopes=None, **kw) -> str:
    """Start a flow on the demo app in this person's browser; returns the authorize URL."""
    demo = someone.demo
    if scopes is None and not purpose.identity_only:
        scopes = (dynamics_scope(demo.org_url),)
    return flows.start(
        someone.request(),
        purpose=purpose,
        client_id=demo.client_id,
        tenant=tenant,
        scopes=scopes or (),
        **kw,
    )


def sign_in(someone, **start_kw) -> str:
    """Start a flow and sign in at the emulator; returns the callback URL."""
    return someone.at_microsoft(start(someone, **start_kw))


def complete(someone, callback_url: str, *, secret: str, identity_only: bool | None = None):
    request = someone.request(callback_url)
    if identity_only is None:
        identity_only = request.GET.get("identityOnly") == "true"
    flow = flows.pop(request, identity_only=identity_only)
    credentials = AppCredentials(someone.demo.client_id, flow.tenant, Secret(secret))
    return flows.redeem(flow, request.GET, credentials=credentials)


def token_requests(emulator) -> list[dict]:
    return [entry for entry in emulator.log() if entry["endpoint"] == "token"]


def test_a_full_crm_authorization_flow_succeeds_over_https(person, emulator, demo):
    browser = person()
    callback = sign_in(browser)

    assert callback.startswith("http://testserver/OAuth2?")
    result = complete(browser, callback, secret=demo.client_secret)

    assert result.tenant_id == demo.tenant_id
    assert result.username == demo.admin
    assert result.object_id
    assert result.home_account_id
    assert result.access_token.reveal() not in repr(result)
    assert '"RefreshToken"' in result.token_cache.reveal()
    assert result.token_cache.reveal() not in repr(result)
    assert len(token_requests(emulator)) == 1


def test_row_13_the_authorize_url_carries_pkce_state_nonce_and_the_exact_redirect_uri(
    person, emulator, demo
):
    url = start(person())
    query = parse_qs(urlsplit(url).query)

    assert query["redirect_uri"] == ["http://testserver/OAuth2"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["response_type"] == ["code"]
    assert query["state"] and query["nonce"] and query["code_challenge"]
    assert f"{demo.org_url}/user_impersonation" in query["scope"][0].split()
    assert "prompt" not in query


def test_sign_in_uses_the_identity_only_redirect_and_keeps_no_tokens(person, emulator, demo):
    browser = person()
    callback = sign_in(browser, purpose=Purpose.SIGN_IN, tenant=demo.tenant_id)

    assert callback.startswith("http://testserver/OAuth2?identityOnly=true&")
    result = complete(browser, callback, secret=demo.client_secret)

    assert result.object_id and result.tenant_id == demo.tenant_id
    assert result.access_token is None
    assert result.token_cache is None


def test_a_second_login_in_the_same_process_makes_no_second_discovery_request(
    person, emulator, demo
):
    for _ in range(2):
        browser = person()
        complete(browser, sign_in(browser), secret=demo.client_secret)

    endpoints = [entry["endpoint"] for entry in emulator.log()]
    assert endpoints.count("discovery") == 1
    assert endpoints.count("token") == 2


def test_row_04_a_replayed_callback_finds_no_flow_and_makes_no_token_request(
    person, emulator, demo
):
    browser = person()
    callback = sign_in(browser)
    complete(browser, callback, secret=demo.client_secret)

    with pytest.raises(FlowExpired):
        complete(browser, callback, secret=demo.client_secret)
    assert len(token_requests(emulator)) == 1


def test_row_02_a_forged_state_is_refused_before_any_token_request(person, emulator, demo):
    browser = person()
    callback = sign_in(browser)
    forged = callback.replace("state=", "state=forged")

    with pytest.raises(FlowExpired):
        complete(browser, forged, secret=demo.client_secret)
    assert token_requests(emulator) == []


@pytest.mark.parametrize("victim_started_a_flow", [False, True], ids=["fresh", "with-binding"])
def test_row_05_a_callback_delivered_to_another_browser_is_refused(
    person, emulator, demo, victim_started_a_flow
):
    """Login CSRF: the attacker's code and state arrive in the victim's browser, which may
    have a session binding of its own; the attacker's flow is neither taken nor spent."""
    attacker, victim = person(), person()
    callback = sign_in(attacker)
    if victim_started_a_flow:
        start(victim)

    with pytest.raises(FlowExpired):
        complete(victim, callback, secret=demo.client_secret)
    assert token_requests(emulator) == []
    assert complete(attacker, callback, secret=demo.client_secret).username == demo.admin


@pytest.mark.parametrize("purpose", [Purpose.SIGN_IN, Purpose.SIGNUP])
def test_row_06_a_flipped_identity_only_flag_is_refused_and_consumes_the_flow(
    person, emulator, demo, purpose
):
    browser = person()
    tenant = demo.tenant_id if purpose is Purpose.SIGN_IN else ORGANIZATIONS
    callback = sign_in(browser, purpose=purpose, tenant=tenant)

    with pytest.raises(FlowExpired) as raised:
        complete(
            browser, callback, secret=demo.client_secret, identity_only=not purpose.identity_only
        )
    assert raised.value.code == "purpose_mismatch"
    with pytest.raises(FlowExpired):
        complete(browser, callback, secret=demo.client_secret)
    assert token_requests(emulator) == []


def test_row_11_a_duplicated_callback_parameter_is_refused(person, emulator, demo):
    browser = person()
    callback = sign_in(browser)

    with pytest.raises(FlowExpired) as raised:
        complete(browser, callback + "&code=second", secret=demo.client_secret)
    assert raised.value.code == "duplicate_parameter"


def test_row_08_a_flow_older_than_its_lifetime_is_refused(
    person, emulator, demo, settings, monkeypatch
):
    browser = person()
    callback = sign_in(browser)
    later = time.time() + settings.AUTH_FLOW_TTL_MINUTES * 60 + 1
    monkeypatch.setattr(flows.time, "time", lambda: later)

    with pytest.raises(FlowExpired):
        complete(browser, callback, secret=demo.client_secret)
    assert token_requests(emulator) == []


def test_flows_nobody_came_back_for_are_swept_by_the_next_callback(
    person, emulator, demo, settings, monkeypatch
):
    from accounts.models import StartedFlow

    for _ in range(3):
        start(person())  # three browsers that never come back
    later = time.time() + settings.AUTH_FLOW_TTL_MINUTES * 60 + 301
    monkeypatch.setattr(flows.time, "time", lambda: later)
    browser = person()
    callback = sign_in(browser)
    assert StartedFlow.objects.count() == 4

    assert complete(browser, callback, secret=demo.client_secret).username == demo.admin
    assert StartedFlow.objects.count() == 0


def test_a_flow_row_holds_a_hash_of_the_browser_binding_never_the_value(person, demo):
    from accounts.models import StartedFlow

    browser = person()
    start(browser)
    request = browser.request("/")
    row = StartedFlow.objects.get()
    assert request.session[flows.BINDING_SESSION_KEY] not in row.binding + row.entry


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
def test_row_22_24_27_28_29_30_an_id_token_with_a_bad_claim_is_rejected(
    person, emulator, demo, claims, code
):
    claims = {
        k: (v.format(tid=demo.tenant_id) if isinstance(v, str) else v) for k, v in claims.items()
    }
    emulator.fault(endpoint="token", claims=claims)
    browser = person()

    with pytest.raises(InvalidIdToken) as raised:
        complete(browser, sign_in(browser), secret=demo.client_secret)
    assert raised.value.code == code


def test_row_25_an_id_token_of_another_tenant_is_rejected_on_a_tenant_flow(person, emulator, demo):
    emulator.fault(
        endpoint="token",
        claims={"tid": demo.other_tenant_id, "iss": f"{emulator.url}/{demo.other_tenant_id}/v2.0"},
    )
    browser = person()
    callback = sign_in(browser, purpose=Purpose.SIGN_IN, tenant=demo.tenant_id)

    with pytest.raises(WrongTenant):
        complete(browser, callback, secret=demo.client_secret)


def test_row_26_an_id_token_whose_issuer_names_another_tenant_is_rejected(person, emulator, demo):
    emulator.fault(endpoint="token", claims={"iss": f"{emulator.url}/{demo.other_tenant_id}/v2.0"})
    browser = person()

    with pytest.raises(InvalidIdToken) as raised:
        complete(browser, sign_in(browser), secret=demo.client_secret)
    assert raised.value.code == "id_token_iss"


def test_row_31_a_nonce_mismatch_is_rejected_as_start_again(person, emulator, demo):
    emulator.fault(endpoint="token", claims={"nonce": "not-the-nonce-we-sent"})
    browser = person()

    with pytest.raises(InvalidIdToken) as raised:
        complete(browser, sign_in(browser), secret=demo.client_secret)
    assert raised.value.code == "nonce"


def test_a_wrong_client_secret_names_the_app_credentials_as_the_fix(person, emulator, demo):
    browser = person()
    callback = sign_in(browser)

    with pytest.raises(EntraRejected) as raised:
        complete(browser, callback, secret="wrong-secret-value")
    error = raised.value
    assert (error.code, error.aadsts) == ("AADSTS7000215", 7000215)
    assert error.remedy is Remedy.FIX_APP_CREDENTIALS
    assert error.from_token_endpoint
    assert error.correlation_id


def test_an_error_that_came_through_the_browser_proves_nothing_about_credentials(
    person, emulator, demo
):
    browser = person()
    callback = sign_in(browser)
    state = parse_qs(urlsplit(callback).query)["state"][0]
    forged = f"http://testserver/OAuth2?state={state}&error=invalid_client&error_codes=7000215"

    with pytest.raises(EntraRejected) as raised:
        complete(browser, forged, secret=demo.client_secret)
    assert not raised.value.from_token_endpoint


def test_cancelling_at_the_consent_page_is_told_apart_from_a_failure(person, emulator, demo):
    browser = person()
    callback = browser.at_microsoft(start(browser), accept=False)

    with pytest.raises(SignInCancelled):
        complete(browser, callback, secret=demo.client_secret)
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
def test_row_15_16_17_an_unavailable_token_endpoint_is_reported_as_temporary(
    person, emulator, demo, settings, fault, code
):
    settings.ENTRA_HTTP_TIMEOUT = 0.5
    emulator.fault(endpoint="token", **fault)
    browser = person()

    with pytest.raises(EntraUnavailable) as raised:
        complete(browser, sign_in(browser), secret=demo.client_secret)
    assert raised.value.code == code
    assert raised.value.remedy is Remedy.RETRY


def test_row_18_an_unreachable_authority_is_reported_as_temporary(person, emulator, demo, settings):
    closed = socket_port_nobody_listens_on()
    settings.ENTRA_AUTHORITY_HOST = f"https://127.0.0.1:{closed}"
    allow_local_port(closed)
    with pytest.raises(EntraUnavailable) as raised:
        start(person())
    assert raised.value.code == "unreachable"


def socket_port_nobody_listens_on() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class TestSilentTokens:
    def connect(self, person):
        browser = person()
        return complete(browser, sign_in(browser), secret=browser.demo.client_secret)

    def app(self, demo) -> AppCredentials:
        return AppCredentials(demo.client_id, demo.tenant_id, Secret(demo.client_secret))

    def test_an_expired_access_token_is_refreshed_once_and_the_cache_changes(
        self, person, emulator, demo
    ):
        emulator.config(access_token_lifetime=SHORT_LIFETIME)
        connected = self.connect(person)

        token = acquire_token_silently(
            self.app(demo),
            token_cache=connected.token_cache,
            scopes=(dynamics_scope(demo.org_url),),
            home_account_id=connected.home_account_id,
        )

        refreshes = [e for e in token_requests(emulator) if e["grant_type"] == "refresh_token"]
        assert len(refreshes) == 1
        assert token.token_cache is not None
        assert token.token_cache.reveal() != connected.token_cache.reveal()
        assert token.access_token.reveal() != connected.access_token.reveal()

    def test_a_fresh_access_token_comes_from_the_cache_without_a_request(
        self, person, emulator, demo
    ):
        browser = person()
        connected = complete(
            browser, sign_in(browser, tenant=demo.tenant_id), secret=demo.client_secret
        )

        token = acquire_token_silently(
            self.app(demo),
            token_cache=connected.token_cache,
            scopes=(dynamics_scope(demo.org_url),),
            home_account_id=connected.home_account_id,
        )

        assert token.token_cache is None
        assert len(token_requests(emulator)) == 1

    def test_a_revoked_refresh_token_means_the_connection_needs_reauthorization(
        self, person, emulator, demo
    ):
        emulator.config(access_token_lifetime=SHORT_LIFETIME)
        connected = self.connect(person)
        emulator.revoke(demo.admin)

        with pytest.raises(EntraRejected) as raised:
            acquire_token_silently(
                self.app(demo),
                token_cache=connected.token_cache,
                scopes=(dynamics_scope(demo.org_url),),
                home_account_id=connected.home_account_id,
            )
        assert raised.value.code == "AADSTS50173"
        assert raised.value.remedy is Remedy.REAUTHORIZE


def test_no_secret_code_or_token_reaches_the_logs(person, emulator, demo, caplog):
    caplog.set_level("DEBUG")
    browser = person()
    callback = sign_in(browser)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    result = complete(browser, callback, secret=demo.client_secret)
    with pytest.raises(EntraRejected):
        complete(browser, sign_in(browser), secret="wrong-x")

    for needle in (demo.client_secret, code, result.access_token.reveal(), "wrong-x"):
        assert needle not in caplog.text


def test_the_network_guard_blocks_anything_but_the_emulator():
    with pytest.raises(OutboundConnectionBlocked):
        requests.get(
            "https://login.microsoftonline.com/common/v2.0/.well-known/openid-configuration",
            timeout=2,
        )


def test_credentials_of_another_app_than_the_flows_are_refused_before_any_token_request(
    person, emulator, demo
):
    """The account's app changed while the person was at Microsoft: start again."""
    browser = person()
    request = browser.request(sign_in(browser))
    flow = flows.pop(request, identity_only=False)
    other_app = AppCredentials(
        "0f0f0f0f-0000-4000-8000-000000000000", flow.tenant, Secret(demo.client_secret)
    )

    with pytest.raises(FlowExpired) as raised:
        flows.redeem(flow, request.GET, credentials=other_app)
    assert raised.value.code == "credentials_changed"
    assert token_requests(emulator) == []


def test_row_32_a_signing_key_withdrawn_from_the_jwks_stops_verifying_after_a_day(
    person, emulator, demo, monkeypatch
):
    from lib.entra import id_token

    browser = person()
    complete(browser, sign_in(browser), secret=demo.client_secret)  # the key set is cached
    monkeypatch.setattr(id_token, "_fetch_jwks", lambda uri: {})  # Microsoft withdrew the key

    complete(browser, sign_in(browser), secret=demo.client_secret)  # cached: still trusted
    a_day_later = time.time() + id_token.JWKS_MAX_AGE_SECONDS + 1
    monkeypatch.setattr(id_token.time, "time", lambda: a_day_later)
    with pytest.raises(InvalidIdToken) as raised:
        complete(browser, sign_in(browser), secret=demo.client_secret)
    assert raised.value.code == "id_token_kid"


@pytest.mark.parametrize(
    "id_token",
    [
        "only.two",
        "a.b.c.d",
        "eyJhbGciOiJSUzI1NiJ9.e30.c2ln!",  # not base64url
        "eyJhbGciOiJSUzI1NiJ9.e30=.c2ln",  # padded
        "bm90IGpzb24.e30.c2ln",  # a header that is not JSON
        "eyJhbGciOiJSUzI1NiJ9.WzFd.c2ln",  # claims that are a list, not an object
        "eyJhbGciOiJSUzI1NiJ9..c2ln",  # no claims at all
    ],
    ids=["two-parts", "four-parts", "not-base64url", "padded", "header", "list", "empty"],
)
def test_a_malformed_id_token_is_refused_before_any_key_is_fetched(id_token, demo):
    from lib.entra.id_token import validate_id_token

    with pytest.raises(InvalidIdToken) as raised:
        validate_id_token(id_token, client_id=demo.client_id, tenant=demo.tenant_id)
    assert raised.value.code == "id_token_malformed"


def test_an_egress_proxy_from_the_environment_carries_entra_calls_unless_no_proxy_says_not(
    person, emulator, monkeypatch
):
    from lib.entra import reset_process_caches

    closed = socket_port_nobody_listens_on()
    allow_local_port(closed)
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    reset_process_caches()
    with pytest.raises(EntraUnavailable) as raised:
        start(person())  # the discovery document, through a proxy that is not there
    assert raised.value.code == "unreachable"

    monkeypatch.setenv("NO_PROXY", urlsplit(emulator.url).hostname)
    reset_process_caches()
    assert "/oauth2/v2.0/authorize?" in start(person())
    reset_process_caches()
