"""Issue 12's journeys: a single-tenant app signed up after first pasting its Secret ID, and a
signup that waits for an Entra ID admin's approval. Every page is checked by axe."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from accounts.models import Account, EntraApp
from tests.e2e.browser import (
    answer_consent,
    expect_consent_page,
    expect_emulator_sign_in_page,
    expect_welcome_page,
    fill_signup_form,
    run_axe,
    sign_in_at_emulator,
    submit_signup_form,
)

pytestmark = pytest.mark.e2e


def sign_in_and_consent(page, email: str) -> None:
    """At the emulator: its sign-in page, then its consent page, each checked by axe."""
    expect_emulator_sign_in_page(page)
    run_axe(page)
    sign_in_at_emulator(page, email)
    expect_consent_page(page)
    run_axe(page)
    answer_consent(page)


SINGLE_TENANT_APP = "5c4b3a29-1807-4f6e-9d5c-4b3a29180765"
SECRET_ID = "0e9d8c7b-6a59-4483-9271-605f4e3d2c1b"
SECRET_VALUE = "Sg7Q~single-tenant-journey-secret-0001"


def test_a_single_tenant_app_signs_up_after_the_secret_id_was_pasted_first(page, e2e_stack, demo):
    e2e_stack.emulator.add_app(
        {
            "client_id": SINGLE_TENANT_APP,
            "tenant": demo.tenant_id,
            "name": "Contoso's own Dynamics Connect",
            "sign_in_audience": "AzureADMyOrg",
            "secrets": [
                {"id": SECRET_ID, "value": SECRET_VALUE, "expires": "2099-12-31T00:00:00Z"}
            ],
            "redirect_uris": [
                "${PUBLIC_BASE_URL}/OAuth2",
                "${PUBLIC_BASE_URL}/OAuth2?identityOnly=true",
            ],
            "api_permissions": ["dynamics_crm/user_impersonation"],
        }
    )
    page.goto("/Dynamics/Signup")
    run_axe(page)
    fill_signup_form(
        page, client_id=SINGLE_TENANT_APP, client_secret=SECRET_ID, org_url=demo.org_url
    )
    submit_signup_form(page)

    secret = page.get_by_label("Client Secret", exact=True)
    expect(secret).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text("That is the secret's ID, not its Value")).to_be_visible()
    run_axe(page)
    secret.fill(SECRET_VALUE)
    submit_signup_form(page)
    sign_in_and_consent(page, demo.admin)

    expect_welcome_page(page)
    run_axe(page)
    app = EntraApp.objects.get()
    assert (app.client_id, app.tenant_id) == (SINGLE_TENANT_APP, demo.tenant_id)
    authorizes = [e for e in e2e_stack.emulator.log() if e["endpoint"] == "authorize"]
    assert {e["tenant"] for e in authorizes} == {demo.tenant_id}  # never /organizations


def test_a_signup_waits_for_an_entra_id_admins_approval_and_then_completes(page, e2e_stack, demo):
    e2e_stack.emulator.fault(endpoint="authorize", aadsts=90094)
    page.goto("/Dynamics/Signup")
    run_axe(page)
    fill_signup_form(
        page, client_id=demo.client_id, client_secret=demo.client_secret, org_url=demo.org_url
    )
    submit_signup_form(page)

    expect(page.get_by_role("heading", name="Ask an Entra ID admin to approve")).to_be_visible()
    expect(page.get_by_role("button", name="Copy the approval link")).to_be_visible()
    run_axe(page)
    page.get_by_role("link", name="I am an Entra ID admin: approve now").click()
    expect_emulator_sign_in_page(page)
    run_axe(page)
    sign_in_at_emulator(page, demo.admin)
    expect_consent_page(page)
    expect(page.get_by_text("Consent on behalf of your organization")).to_be_visible()
    run_axe(page)
    answer_consent(page)

    expect_welcome_page(page)  # the approval resumed the signup; no second consent page
    run_axe(page)
    assert Account.objects.count() == 1


def test_a_customer_signs_up_with_a_certificate_and_no_secret(page, e2e_stack, demo):
    page.goto("/Dynamics/Signup")
    run_axe(page)
    page.get_by_label("Company Name").fill("Contoso Ltd")
    page.get_by_label("Phone Number").fill("+1 425 555 0100")
    page.get_by_label("Website").fill("https://www.contoso.example")
    page.get_by_label("Client Id").fill(demo.client_id)
    expect(page.get_by_label("Certificate (recommended)")).to_be_checked()
    expect(page.locator("#id_client_secret")).to_be_hidden()  # no secret with a certificate
    page.get_by_label("Client secret", exact=True).check()
    expect(page.get_by_label("Client Secret", exact=True)).to_be_visible()
    page.get_by_label("Certificate (recommended)").check()
    expect(page.locator("#id_client_secret")).to_be_hidden()
    page.get_by_label("Application Id URL").fill(demo.org_url)
    submit_signup_form(page)

    expect(
        page.get_by_role("heading", name="Upload the certificate to your app registration")
    ).to_be_visible()
    run_axe(page)
    with page.expect_download() as download:
        page.get_by_role("link", name="Download certificate (.cer)").click()
    pem = Path(download.value.path()).read_text()
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in pem
    e2e_stack.emulator.upload_certificate(demo.client_id, pem)  # as in the Azure portal
    page.get_by_role("button", name="Continue").click()
    sign_in_and_consent(page, demo.admin)

    expect_welcome_page(page)
    run_axe(page)
    assert EntraApp.objects.get().credential_kind == EntraApp.CredentialKind.CERTIFICATE
