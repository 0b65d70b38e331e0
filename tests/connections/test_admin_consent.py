"""Admin consent (SPEC 8): when Entra ID says an admin must approve, the signup offers the
tenant's admin-consent link; the admin's answer resumes the signup that waited."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from accounts.models import Account
from connections.models import PendingAuthorization
from tests.people import SIGNUP_URL, Person

pytestmark = pytest.mark.django_db


def waiting_for_approval(visitor, emulator, *, aadsts: int = 90094, error: str | None = None):
    """A signup that Entra ID sent back because an admin must approve; returns the offer."""
    fault = {"endpoint": "authorize", "aadsts": aadsts}
    if error:
        fault["error"] = error
    emulator.fault(**fault)
    response = visitor.sign_up()
    assert response.status_code == 302 and response["Location"] == SIGNUP_URL
    page = visitor.client.get(SIGNUP_URL)
    offer = page.context["admin_consent"]
    assert offer, page.content.decode()[:2000]
    return page, offer["url"]


@pytest.mark.parametrize(
    ("aadsts", "error"),
    [
        (90094, None),
        (90095, None),
        (65001, "consent_required"),
        (650057, "invalid_client"),
        (65004, "access_denied"),
    ],
    ids=["90094", "90095", "65001", "650057", "access_denied"],
)
def test_consent_an_admin_must_give_is_offered_as_a_link_to_copy_or_follow(
    emulator, demo, visitor, aadsts, error
):
    page, url = waiting_for_approval(visitor, emulator, aadsts=aadsts, error=error)

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.path == f"/{demo.tenant_id}/v2.0/adminconsent"
    assert query["client_id"] == [demo.client_id]
    assert query["scope"] == [f"{demo.org_url}/user_impersonation"]
    assert query["redirect_uri"] == ["http://testserver/OAuth2"]
    assert query["state"][0]
    text = page.content.decode()
    assert "Ask an Entra ID admin to approve" in text
    assert 'data-copy-target="admin-consent-url"' in text
    assert PendingAuthorization.objects.count() == 1  # kept for the approval
    assert not Account.objects.exists()


def test_an_admins_approval_in_the_same_browser_resumes_the_signup_to_a_working_account(
    emulator, demo, visitor
):
    _, url = waiting_for_approval(visitor, emulator)

    answer = visitor.at_microsoft(url)  # the admin signs in and accepts for the organization
    assert "admin_consent=True" in answer
    resumed = visitor.follow(answer)
    assert resumed.status_code == 302
    assert f"/{demo.tenant_id}/oauth2/v2.0/authorize" in resumed["Location"]
    done = visitor.follow(visitor.at_microsoft(resumed["Location"]))

    assert done.status_code == 302 and "/welcome" in done["Location"]
    account = Account.objects.get()
    assert account.company_name == "Contoso Ltd"
    assert not PendingAuthorization.objects.exists()


def test_an_approval_in_the_admins_own_browser_says_thanks_and_the_asker_continues(
    emulator, demo, visitor
):
    _, url = waiting_for_approval(visitor, emulator)
    admin_browser = Person(demo, demo.admin, client=Client())

    thanks = admin_browser.follow(admin_browser.at_microsoft(url))
    assert thanks.status_code == 200
    assert "Dynamics Connect is approved" in thanks.content.decode()
    assert "Contoso Ltd" not in thanks.content.decode()  # nothing of the asker's shows there
    assert not Account.objects.exists()

    resumed = visitor.client.post("/Dynamics/Signup/continue")
    assert resumed.status_code == 302
    done = visitor.follow(visitor.at_microsoft(resumed["Location"]))
    assert done.status_code == 302 and "/welcome" in done["Location"]
    assert Account.objects.count() == 1


def test_a_non_admin_at_the_approval_page_is_refused_and_nothing_is_created(
    emulator, demo, visitor
):
    _, url = waiting_for_approval(visitor, emulator)
    member = Person(demo, demo.member, client=Client())

    answer = member.at_microsoft(url)
    assert "error=access_denied" in answer and "AADSTS90094" in answer
    page = member.follow(answer)

    assert page.status_code == 400
    assert "An administrator must approve this app" in page.content.decode()
    assert not Account.objects.exists()


def test_a_refused_approval_creates_nothing(emulator, demo, visitor):
    _, url = waiting_for_approval(visitor, emulator)

    answer = visitor.at_microsoft(url, accept=False)
    page = visitor.follow(answer)

    assert "error=access_denied" in answer
    assert page.status_code == 200  # a cancel, told as one
    assert "You cancelled" in page.content.decode()
    assert not Account.objects.exists()


@pytest.mark.parametrize(
    ("forgery", "words"),
    [
        ("unknown-state", "expired or was already used"),
        ("replayed", "already used"),
        ("other-tenant", "account from another organization"),
        ("no-answer", "expired or was already used"),
    ],
)
def test_a_forged_or_replayed_approval_resumes_nothing(emulator, demo, visitor, forgery, words):
    _, url = waiting_for_approval(visitor, emulator)
    state = parse_qs(urlsplit(url).query)["state"][0]
    answers = {
        "unknown-state": f"state=forged&admin_consent=True&tenant={demo.tenant_id}",
        "other-tenant": f"state={state}&admin_consent=True&tenant={demo.other_tenant_id}",
        "no-answer": f"state={state}&tenant={demo.tenant_id}",
    }
    if forgery == "replayed":
        first = visitor.client.get(
            f"/OAuth2?state={state}&admin_consent=True&tenant={demo.tenant_id}"
        )
        assert first.status_code == 302  # the genuine answer resumed once
        response = visitor.client.get(
            f"/OAuth2?state={state}&admin_consent=True&tenant={demo.tenant_id}"
        )
    else:
        response = visitor.client.get(f"/OAuth2?{answers[forgery]}")

    assert response.status_code == 400
    assert words in response.content.decode()
    assert "oauth2/v2.0/authorize" not in response.get("Location", "")
    assert not Account.objects.exists()


def test_a_re_authorization_waiting_for_approval_resumes_after_it(admin, emulator, demo):
    emulator.fault(endpoint="authorize", aadsts=65001, error="consent_required")
    failed = admin.follow(admin.at_microsoft(admin.start_reauthorization()))
    assert failed["Location"] == "/settings/connections"
    page = admin.client.get("/settings/connections")
    offer = page.context["admin_consent"]
    assert "Ask an Entra ID admin to approve" in page.content.decode()
    assert "Continue re-authorization" in page.content.decode()

    resumed = admin.follow(admin.at_microsoft(offer["url"]))
    done = admin.follow(admin.at_microsoft(resumed["Location"]))

    assert done["Location"] == "/settings/connections"
    page = admin.client.get("/settings/connections").content.decode()
    assert "was re-authorized and works" in page
    assert "Ask an Entra ID admin to approve" not in page
    assert not PendingAuthorization.objects.exists()


def test_a_re_authorization_approved_elsewhere_continues_with_its_button(admin, emulator, demo):
    emulator.fault(endpoint="authorize", aadsts=90094)
    admin.follow(admin.at_microsoft(admin.start_reauthorization()))
    offer = admin.client.get("/settings/connections").context["admin_consent"]
    elsewhere = Person(demo, demo.admin, client=Client())
    assert elsewhere.follow(elsewhere.at_microsoft(offer["url"])).status_code == 200

    resumed = admin.client.post(f"{admin.reauthorize_url()}/continue")
    done = admin.follow(admin.at_microsoft(resumed["Location"]))

    assert done["Location"] == "/settings/connections"
    assert (
        "was re-authorized and works" in admin.client.get("/settings/connections").content.decode()
    )
