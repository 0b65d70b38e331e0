"""Issue 6's journeys on the Connections page: re-authorizing through the key icon's modal,
with the mouse and with the keyboard only."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from accounts.models import Account, AuditEvent, EntraApp
from tests.e2e.browser import choose_client_secret, pick_account_at_emulator, run_axe

pytestmark = pytest.mark.e2e

KEY_ICON = "Re-authorize Dynamics connection"


def open_connections(page: Page) -> None:
    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Connections", exact=True)).to_be_visible()
    run_axe(page)


def reauthorize_in_modal(page: Page, *, client_secret: str, email: str) -> None:
    page.get_by_role("button", name=KEY_ICON).click()
    dialog = page.get_by_role("dialog", name="Re-authorize Dynamics")
    expect(dialog).to_be_visible()
    run_axe(page)
    choose_client_secret(dialog)
    dialog.get_by_label("Client Secret", exact=True).fill(client_secret)
    dialog.get_by_role("button", name="Submit").click()
    # Changing the connection asks which account, with the connected one first.
    run_axe(page)
    pick_account_at_emulator(page, email)
    expect(page.get_by_role("heading", name="Connections", exact=True)).to_be_visible()
    run_axe(page)


def test_an_admin_reauthorizes_after_a_wrong_secret_without_losing_the_connection(
    signed_in_admin, demo
):
    """The wrong secret is caught before Microsoft, next to its field; the right one works."""
    page = signed_in_admin
    open_connections(page)
    app = EntraApp.objects.get()
    set_on_before = app.credential_set_at
    events_before = AuditEvent.objects.count()

    key_icon = page.get_by_role("button", name=KEY_ICON)
    key_icon.click()
    dialog = page.get_by_role("dialog", name="Re-authorize Dynamics")
    choose_client_secret(dialog)
    dialog.get_by_label("Client Secret", exact=True).fill("Wrong~secret-value-0123456789abcd")
    dialog.get_by_role("button", name="Submit").click()

    secret = page.get_by_label("Client Secret", exact=True)
    expect(secret).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_text("Microsoft rejected the Client Secret")).to_be_visible()
    run_axe(page)
    app.refresh_from_db()
    assert app.credential_set_at == set_on_before

    secret.fill(demo.second_client_secret)
    page.get_by_role("button", name="Submit").click()
    run_axe(page)
    pick_account_at_emulator(page, demo.admin)

    expect(page.get_by_role("status")).to_contain_text("was re-authorized and works")
    run_axe(page)
    expect(page.locator(".connection-head").get_by_text("Connected", exact=True)).to_be_visible()
    app.refresh_from_db()
    assert app.credential_set_at > set_on_before
    assert AuditEvent.objects.count() == events_before + 1
    expect(page.get_by_role("table").get_by_role("row").nth(1)).to_contain_text("Succeeded")


def test_the_modal_works_with_the_keyboard_alone(signed_in_admin):
    page = signed_in_admin
    open_connections(page)
    key_icon = page.get_by_role("button", name=KEY_ICON)
    key_icon.focus()

    page.keyboard.press("Enter")

    dialog = page.get_by_role("dialog", name="Re-authorize Dynamics")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Client Id")).to_be_focused()
    for _ in range(12):  # more Tabs than the dialog has controls: focus stays inside
        page.keyboard.press("Tab")
        inside = page.evaluate(
            "document.getElementById('reauthorize-dialog').contains(document.activeElement)"
        )
        assert inside, "focus left the modal"
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(key_icon).to_be_focused()

    page.keyboard.press("Enter")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").press("Enter")
    expect(dialog).to_be_hidden()
    expect(key_icon).to_be_focused()


def test_without_javascript_the_key_icon_is_a_link_to_the_same_form(
    chromium, e2e_stack, demo, signed_in_admin
):
    cookies = signed_in_admin.context.cookies()
    context = chromium.new_context(
        java_script_enabled=False,
        base_url=e2e_stack.app_url,
        viewport={"width": 1280, "height": 800},
    )
    context.add_cookies(cookies)
    page = context.new_page()
    try:
        page.goto("/settings/connections")
        page.get_by_role("link", name=KEY_ICON).click()
        expect(page.get_by_role("heading", name="Re-authorize Dynamics")).to_be_visible()
        expect(page.get_by_label("Client Id")).to_have_value(demo.client_id)
        expect(page.get_by_label("Application Id URI")).to_have_value(
            re.compile(re.escape(Account.objects.get().dynamics_connection.org_url))
        )
        expect(page.get_by_label("Client Secret", exact=True)).to_have_value("")
    finally:
        context.close()
