"""Driving Debian's Chromium as a person would: launching it, the steps of our journeys, axe.

Shared by the browser journeys (`tests/e2e/`) and `scripts/screenshots.py`, so a screenshot
shows exactly what a journey checks. No pytest in here; see `tests/e2e/conftest.py` for the
fixtures and the overview.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, Playwright, expect

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_MISSING = f"Chromium not installed at {CHROMIUM}: apt-get install chromium"
# `playwright install` cannot download a browser here: Playwright drives Debian's Chromium.
# The flags keep it from calling home (updates, sync, field trials) and from needing a GPU or
# the setuid sandbox (CI runs as root in a container).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}

# What a new customer types into the signup form, besides the Azure app's three values.
COMPANY = {"Company Name": "Contoso Ltd", "Phone Number": "+1 425 555 0100"}
COMPANY_WEBSITE = "https://www.contoso.example"

# axe impacts that fail a journey (issue 6: zero serious or critical violations).
BLOCKING_IMPACTS = ("serious", "critical")


def launch_chromium(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


# --- Steps: one page each, role and label locators only ----------------------------------------


def fill_signup_form(
    page: Page,
    *,
    client_id: str,
    client_secret: str,
    org_url: str,
    company_name: str = COMPANY["Company Name"],
) -> None:
    """On /Dynamics/Signup: type the company and the Azure app's values (does not submit)."""
    expect(page.get_by_role("heading", name="Sign up with Dynamics 365")).to_be_visible()
    page.get_by_label("Company Name").fill(company_name)
    page.get_by_label("Phone Number").fill(COMPANY["Phone Number"])
    page.get_by_label("Website").fill(COMPANY_WEBSITE)
    page.get_by_label("Client Id").fill(client_id)
    choose_client_secret(page)
    page.get_by_label("Client Secret", exact=True).fill(client_secret)
    page.get_by_label("Application Id URL").fill(org_url)


def choose_client_secret(page) -> None:
    """Pick "Client secret" over the preselected "Certificate (recommended)"."""
    page.get_by_label("Client secret", exact=True).check()


def submit_signup_form(page: Page) -> None:
    page.get_by_role("button", name="Submit").click()


def sign_in_at_emulator(page: Page, email: str) -> None:
    """On the emulator's "Sign in" page: type the email and press "Sign in"."""
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_role("button", name="Sign in").click()


def pick_account_at_emulator(page: Page, email: str) -> None:
    """On the emulator's "Pick an account" page: press the signed-in account."""
    expect(page.get_by_role("heading", name="Pick an account")).to_be_visible()
    page.get_by_role("button", name=re.compile(re.escape(email))).click()


def expect_emulator_sign_in_page(page: Page) -> None:
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    expect(page.get_by_label("Email")).to_be_visible()


def expect_consent_page(page: Page) -> None:
    expect(page.get_by_role("heading", name="Permissions requested")).to_be_visible()


def answer_consent(page: Page, *, accept: bool = True) -> None:
    """On the emulator's "Permissions requested" page: press "Accept" (or "Cancel")."""
    expect_consent_page(page)
    page.get_by_role("button", name="Accept" if accept else "Cancel").click()


def expect_welcome_page(page: Page, company_name: str = COMPANY["Company Name"]) -> None:
    expect(page.get_by_role("heading", name=f"Welcome, {company_name}")).to_be_visible()


def sign_out(page: Page) -> None:
    """Press "Sign out" in the header's navigation."""
    nav = page.get_by_role("navigation", name="Main")
    nav.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="You signed out of Dynamics Connect")).to_be_visible()


def start_sign_in(page: Page) -> None:
    """On /business/<id> signed out: press "Sign in with Active Directory"."""
    page.get_by_role("button", name="Sign in with Active Directory").click()


def expect_account_home(page: Page, company_name: str = COMPANY["Company Name"]) -> None:
    expect(page.get_by_role("heading", name=company_name, exact=True)).to_be_visible()
    expect(page.get_by_text("Signed in as")).to_be_visible()


# Pages only an account's admins may open; a member gets the "Admins only" page (403).
ADMIN_ONLY_PATHS = ("/settings/members", "/settings/connections")


def expect_admins_only(page: Page, path: str) -> None:
    """Open `path` and expect the plain "Admins only" page, with a 403."""
    response = page.goto(path)
    assert response is not None and response.status == 403, (path, response and response.status)
    expect(page.get_by_role("heading", name="Admins only")).to_be_visible()


# --- Accessibility ------------------------------------------------------------------------------


class AccessibilityViolations(AssertionError):
    """axe found violations of a blocking impact on a page."""


def axe_violations(page: Page, impacts: Sequence[str] = BLOCKING_IMPACTS) -> list[dict[str, Any]]:
    """Run axe-core (shipped by axe-playwright-python) on the page as it is now."""
    page.wait_for_load_state("load")
    results = Axe().run(page)
    return [v for v in results.response["violations"] if v.get("impact") in impacts]


def format_violations(url: str, violations: list[dict[str, Any]]) -> str:
    lines = [f"axe: {len(violations)} serious or critical violation(s) on {url}"]
    for violation in violations:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']}")
        lines.append(f"  {violation['helpUrl']}")
        for node in violation["nodes"]:
            target = " ".join(str(t) for t in node["target"])
            summary = re.sub(r"\s+", " ", node.get("failureSummary", "")).strip()
            lines.append(f"    {target}: {summary}")
    return "\n".join(lines)


class PageAudit:
    """Remembers the documents a page showed, so a journey cannot leave one unchecked by axe.

    `run_axe(page)` checks the document the page shows now; a document the page navigated
    away from (or ended on) without a check is "missed". Fragment-only changes (`#main`) are
    the same document.
    """

    _by_page: dict[int, PageAudit] = {}

    def __init__(self, page: Page) -> None:
        self.page = page
        self.current: str | None = None
        self.current_checked = True
        self.missed: list[str] = []
        page.on("framenavigated", self._navigated)
        PageAudit._by_page[id(page)] = self

    @classmethod
    def of(cls, page: Page) -> PageAudit | None:
        return cls._by_page.get(id(page))

    def _navigated(self, frame: Any) -> None:
        if frame.parent_frame is not None or frame.url == "about:blank":
            return
        url, previous = frame.url, self.current
        if previous and "#" in url and _without_fragment(url) == _without_fragment(previous):
            self.current = url  # same document, another fragment
            return
        if previous and not self.current_checked:
            self.missed.append(previous)
        self.current, self.current_checked = url, False

    def checked(self) -> None:
        self.current_checked = True

    def close(self) -> list[str]:
        """Stop listening; the documents never checked (including the last one)."""
        PageAudit._by_page.pop(id(self.page), None)
        last = [self.current] if self.current and not self.current_checked else []
        return [*self.missed, *last]


def _without_fragment(url: str) -> str:
    return url.split("#", 1)[0]


def run_axe(page: Page) -> None:
    """Assert that axe finds no serious or critical violation on the page as it is now.

    Call it on every page a journey arrives at (ours and the emulator's), and again after
    anything that changes the page a lot (an open modal). On failure the message lists each
    violation's id, impact, help and target nodes.
    """
    violations = axe_violations(page)
    audit = PageAudit.of(page)
    if audit is not None:
        audit.checked()
    if violations:
        raise AccessibilityViolations(format_violations(page.url, violations))


# --- Journeys made of steps, axe-checked at every page ------------------------------------------


def sign_up(
    page: Page,
    *,
    client_id: str,
    client_secret: str,
    org_url: str,
    email: str,
    company_name: str = COMPANY["Company Name"],
) -> None:
    """From a blank page: the whole signup as the new customer, ending on the welcome page."""
    page.goto("/Dynamics/Signup")
    run_axe(page)
    fill_signup_form(
        page,
        client_id=client_id,
        client_secret=client_secret,
        org_url=org_url,
        company_name=company_name,
    )
    submit_signup_form(page)
    expect_emulator_sign_in_page(page)
    run_axe(page)
    sign_in_at_emulator(page, email)
    expect_consent_page(page)
    run_axe(page)
    answer_consent(page, accept=True)
    expect_welcome_page(page, company_name)
    run_axe(page)
