"""Issue 6's journeys that exist today: signup, silent sign-in again, cancelled signup, a member
kept out of admin pages. Every page they show is checked by axe (see conftest.py)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from accounts.models import Account, AuditEvent, Membership, User
from connections.models import DynamicsConnection, PendingAuthorization
from tests.e2e.browser import (
    ADMIN_ONLY_PATHS,
    COMPANY,
    answer_consent,
    expect_account_home,
    expect_admins_only,
    expect_consent_page,
    expect_emulator_sign_in_page,
    fill_signup_form,
    run_axe,
    sign_in_at_emulator,
    sign_out,
    start_sign_in,
    submit_signup_form,
)

pytestmark = pytest.mark.e2e


def test_a_new_customer_signs_up_and_sees_the_account_id(signed_in_admin, e2e_stack, demo):
    page = signed_in_admin

    account = Account.objects.get()
    assert page.url == f"{e2e_stack.app_url}/business/{account.account_id}/welcome"
    expect(page.get_by_text(account.account_id, exact=True)).to_be_visible()
    sign_in_url = f"{e2e_stack.app_url}/business/{account.account_id}"
    expect(page.get_by_role("link", name=sign_in_url)).to_be_visible()
    assert account.company_name == COMPANY["Company Name"]
    assert account.dynamics_connection.status == DynamicsConnection.Status.CONNECTED
    admin = Membership.objects.get(account=account)
    assert admin.is_admin and admin.user.email == demo.admin


def test_after_signing_out_the_admin_signs_in_again_without_typing(signed_in_admin, e2e_stack):
    page = signed_in_admin
    account = Account.objects.get()

    sign_out(page)
    run_axe(page)
    page.goto(f"/business/{account.account_id}")
    expect(page.get_by_role("button", name="Sign in with Active Directory")).to_be_visible()
    run_axe(page)

    emulator_pages: list[str] = []

    def note_emulator_page(frame) -> None:
        if frame.url.startswith(e2e_stack.emulator.browser_url):
            emulator_pages.append(frame.url)

    page.on("framenavigated", note_emulator_page)
    start_sign_in(page)
    expect_account_home(page)
    run_axe(page)

    assert page.url == f"{e2e_stack.app_url}/business/{account.account_id}"
    assert emulator_pages == [], "the emulator showed a page: the sign-in was not silent"
    expect(page.get_by_text("Admin", exact=True)).to_be_visible()


def test_cancelling_at_microsoft_creates_nothing_and_says_so(page, demo):
    page.goto("/Dynamics/Signup")
    run_axe(page)
    fill_signup_form(
        page, client_id=demo.client_id, client_secret=demo.client_secret, org_url=demo.org_url
    )
    submit_signup_form(page)
    expect_emulator_sign_in_page(page)
    run_axe(page)
    sign_in_at_emulator(page, demo.admin)
    expect_consent_page(page)
    run_axe(page)

    answer_consent(page, accept=False)

    alert = page.get_by_role("alert")
    expect(alert.get_by_role("heading", name="Signup cancelled")).to_be_visible()
    expect(alert).to_contain_text("so no account was created")
    expect(page.get_by_label("Company Name")).to_have_value(COMPANY["Company Name"])
    expect(page.get_by_label("Client Secret", exact=True)).to_have_value("")
    run_axe(page)
    assert not Account.objects.exists()
    assert not DynamicsConnection.objects.exists()
    assert not Membership.objects.exists()
    assert not User.objects.exists()
    # Microsoft's "Need admin approval" page sends people back this way too: the approval link
    # is offered, and the pending signup waits for it (until it expires), nothing more.
    expect(page.get_by_role("heading", name="Ask an Entra ID admin to approve")).to_be_visible()
    assert PendingAuthorization.objects.count() == 1
    assert not AuditEvent.objects.filter(outcome=AuditEvent.Outcome.SUCCESS).exists()


def test_a_member_signs_in_and_is_kept_out_of_admin_pages(page, account, demo):
    page.goto(f"/business/{account.account_id}")
    run_axe(page)
    start_sign_in(page)
    expect_emulator_sign_in_page(page)
    run_axe(page)
    sign_in_at_emulator(page, demo.member)
    expect_consent_page(page)
    run_axe(page)
    answer_consent(page)
    expect_account_home(page, account.company_name)
    expect(page.get_by_text("Member", exact=True)).to_be_visible()
    run_axe(page)
    nav_links = page.get_by_role("navigation", name="Main").get_by_role("link").all()
    assert not [link for link in nav_links if link.get_attribute("href").startswith("/settings")]

    for path in ADMIN_ONLY_PATHS:
        expect_admins_only(page, path)
        run_axe(page)
