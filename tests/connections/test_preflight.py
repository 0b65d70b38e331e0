"""What the product finds itself before anyone goes to Microsoft (SPEC 4): the org's tenant
from the Web API's challenge, and the credentials tried there with a client-credentials token
request. Each mistake is told next to its field, with nothing stored and no /authorize."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from accounts.models import Account, EntraApp
from connections.models import PendingAuthorization
from lib.dynamics import DynamicsError, bearer_challenge, discover_tenant
from tests.people import SIGNUP_URL, signup_form

pytestmark = pytest.mark.django_db

SINGLE_TENANT_SECRET = "St8Q~single-tenant-app-secret-value-0001"


def field_error(response, field: str) -> str:
    errors = response.context["form"].errors.get(field) or [""]
    return str(errors[0])


def sent_to_microsoft(emulator) -> bool:
    return any(e["endpoint"] == "authorize" for e in emulator.log())


def assert_caught_on_the_form(emulator, response, field: str, words: str) -> None:
    assert response.status_code == 200
    assert words in field_error(response, field), response.context["form"].errors
    assert not PendingAuthorization.objects.exists()
    assert not Account.objects.exists()
    assert not sent_to_microsoft(emulator)


@pytest.mark.parametrize(
    ("aadsts", "field", "words"),
    [
        (7000215, "client_secret", "Paste the secret's Value (not its Secret ID)"),
        (7000218, "client_secret", "Microsoft received no Client Secret"),
        (7000222, "client_secret", "The Client Secret has expired"),
        (700016, "client_id", "was not found in your organization's directory"),
        (500011, "org_url", "was not found in your Microsoft tenant"),
        (500014, "org_url", "is disabled in your Microsoft tenant"),
        (90002, "org_url", "Microsoft does not know this organization's tenant"),
    ],
)
def test_each_mistake_entra_names_is_caught_next_to_its_field(
    emulator, demo, visitor, aadsts, field, words
):
    emulator.fault(endpoint="token", grant_type="client_credentials", aadsts=aadsts)

    response = visitor.client.post(SIGNUP_URL, signup_form(demo))

    assert_caught_on_the_form(emulator, response, field, words)


def test_a_secret_that_is_not_the_apps_is_caught_by_entra_itself(emulator, demo, visitor):
    response = visitor.client.post(
        SIGNUP_URL, signup_form(demo, client_secret="Made~up-secret-value-0123456789abcd")
    )

    assert_caught_on_the_form(emulator, response, "client_secret", "Microsoft rejected")
    grants = [e["grant_type"] for e in emulator.log() if e["endpoint"] == "token"]
    assert grants == ["client_credentials"]


def test_a_client_id_that_is_no_app_anywhere_is_caught(emulator, demo, visitor):
    response = visitor.client.post(
        SIGNUP_URL, signup_form(demo, client_id="3f2b6a1c-0d4e-4f5a-9b8c-7d6e5f4a3b2c")
    )

    unknown = "3f2b6a1c-0d4e-4f5a-9b8c-7d6e5f4a3b2c"
    assert_caught_on_the_form(emulator, response, "client_id", unknown)


def single_tenant_app(emulator, *, tenant: str, client_id: str) -> str:
    emulator.add_app(
        {
            "client_id": client_id,
            "tenant": tenant,
            "name": "Single tenant",
            "sign_in_audience": "AzureADMyOrg",
            "secrets": [
                {
                    "id": "0d6e2c6a-1b1e-4d55-9f0a-3c1a2b4d5e6f",
                    "value": SINGLE_TENANT_SECRET,
                    "expires": "2099-12-31T00:00:00Z",
                }
            ],
            "redirect_uris": [
                "${PUBLIC_BASE_URL}/OAuth2",
                "${PUBLIC_BASE_URL}/OAuth2?identityOnly=true",
            ],
            "api_permissions": ["dynamics_crm/user_impersonation"],
        }
    )
    return client_id


def test_an_app_registered_in_another_tenant_than_the_orgs_is_refused_before_microsoft(
    emulator, demo, visitor
):
    client_id = single_tenant_app(
        emulator, tenant=demo.other_tenant_id, client_id="6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d"
    )

    response = visitor.client.post(
        SIGNUP_URL,
        signup_form(demo, client_id=client_id, client_secret=SINGLE_TENANT_SECRET),
    )

    assert_caught_on_the_form(emulator, response, "client_id", client_id)


def test_a_single_tenant_app_signs_up_signs_in_and_re_authorizes(person, emulator, demo):
    client_id = single_tenant_app(
        emulator, tenant=demo.tenant_id, client_id="1e2d3c4b-5a69-4788-96a5-b4c3d2e1f0a9"
    )
    admin = person()

    authorize_url = admin.submit_signup(client_id=client_id, client_secret=SINGLE_TENANT_SECRET)
    assert urlsplit(authorize_url).path == f"/{demo.tenant_id}/oauth2/v2.0/authorize"
    response = admin.follow(admin.at_microsoft(authorize_url))
    assert response.status_code == 302 and "/welcome" in response["Location"], response
    account = Account.objects.get()
    assert EntraApp.objects.get().tenant_id == demo.tenant_id

    member = person(demo.member)
    assert member.sign_in(account).status_code == 302
    assert member.client.get(f"/business/{account.account_id}").status_code == 200

    admin.account = account
    page = admin.reauthorize(client_id=client_id, client_secret=SINGLE_TENANT_SECRET)
    assert "was re-authorized and works" in page.content.decode()
    assert not [e for e in emulator.log() if e["outcome"] == "AADSTS50194"]


@pytest.mark.parametrize(
    "outage",
    [{"aadsts": 53003}, {"status": 503}, {"delay": 1.5}],
    ids=["conditional-access", "5xx", "timeout"],
)
def test_an_inconclusive_pre_flight_does_not_block(
    emulator, demo, visitor, settings, outage, caplog
):
    settings.ENTRA_HTTP_TIMEOUT = 0.5
    emulator.fault(endpoint="token", grant_type="client_credentials", **outage)

    response = visitor.client.post(SIGNUP_URL, signup_form(demo))

    assert response.status_code == 302
    assert f"/{demo.tenant_id}/oauth2/v2.0/authorize" in response["Location"]
    assert any(getattr(r, "outcome", "") == "inconclusive" for r in caplog.records)


def test_an_org_in_another_microsoft_cloud_is_refused_in_plain_words(emulator, demo, visitor):
    emulator.fault(
        endpoint="webapi",
        challenge=f"Bearer authorization_uri=https://login.microsoftonline.us/{demo.tenant_id}"
        "/oauth2/authorize",
    )

    response = visitor.client.post(SIGNUP_URL, signup_form(demo))

    assert_caught_on_the_form(emulator, response, "org_url", "is in another Microsoft cloud")
    assert not [e for e in emulator.log() if e["endpoint"] == "token"]


@pytest.mark.parametrize(
    "fault",
    [
        {"challenge": None},
        {"challenge": 'Bearer realm="dynamics"'},
        {"challenge": "Bearer authorization_uri=https://{host}/not-a-guid/oauth2/authorize"},
        {
            "challenge": "Bearer authorization_uri=https://{host}/{tenant}/oauth2/authorize, "
            "authorization_uri=https://{host}/{other}/oauth2/authorize"
        },
        {
            "challenge": "Bearer authorization_uri=https://{host}/{tenant}/oauth2/authorize, "
            "Bearer authorization_uri=https://{host}/{other}/oauth2/authorize"
        },
        {
            "challenge": "Bearer authorization_uri=https://{host}/{tenant}/oauth2/authorize, x="
            + "a" * 2000
        },
        {"challenge": 'Basic realm="x"'},
        {"challenge": "Bearer authorization_uri=http://{host}/{tenant}/oauth2/authorize"},
        {"status": 404},
        {"status": 503},
    ],
    ids=[
        "no-header",
        "no-tenant",
        "non-guid",
        "two-tenants",
        "two-challenges",
        "oversized",
        "not-bearer",
        "plain-http",
        "404",
        "503",
    ],
)
def test_hostile_or_missing_challenges_are_refused_as_not_a_dynamics_org(
    emulator, demo, visitor, fault
):
    values = {
        "host": urlsplit(emulator.url).netloc,
        "tenant": demo.tenant_id,
        "other": demo.other_tenant_id,
    }
    if isinstance(fault.get("challenge"), str):
        fault = {"challenge": fault["challenge"].format(**values)}
    emulator.fault(endpoint="webapi", **fault)

    response = visitor.client.post(SIGNUP_URL, signup_form(demo))

    not_an_org = "does not answer as a Dynamics 365 org"
    assert_caught_on_the_form(emulator, response, "org_url", not_an_org)


@pytest.mark.parametrize(
    "header",
    [
        'Bearer authorization_uri="https://h/{t}/oauth2/authorize", resource_id="https://o/"',
        "Bearer resource_id=https://o/, authorization_uri=https://h/{t}/oauth2/authorize",
        "bearer   authorization_uri = https://h/{t}/oauth2/authorize ,resource_id=https://o/",
    ],
    ids=["quoted", "any-order", "spacing"],
)
def test_the_challenge_is_read_quoted_or_not_in_any_order(header):
    tenant = "1bc0ba21-2a9c-4529-94eb-c52155e791b2"
    params = bearer_challenge(header.format(t=tenant))

    assert params["authorization_uri"] == f"https://h/{tenant}/oauth2/authorize"
    assert params["resource_id"] == "https://o/"


def test_the_tenant_is_read_from_the_emulators_challenge(emulator, demo):
    assert discover_tenant(demo.org_url) == demo.tenant_id


def test_discovery_follows_no_redirect(emulator, demo, monkeypatch):
    from lib.dynamics import challenge

    class Redirect:
        status_code = 302
        headers = {"Location": "https://login.microsoftonline.com/", "WWW-Authenticate": ""}

    monkeypatch.setattr(challenge, "get", lambda *args, **kwargs: Redirect())
    with pytest.raises(DynamicsError) as raised:
        discover_tenant(demo.org_url)
    assert raised.value.code == "http_302"
