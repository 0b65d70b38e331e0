"""Browser journeys in Debian's Chromium, driven by Playwright as a person would.

What runs
    The app runs in this process on pytest-django's `live_server` (a thread, against the test
    database: every journey gets `transactional_db`), and the local Entra ID emulator runs as a
    subprocess with the demo seed, its redirect URIs expanded from the live server's URL. The
    product's settings (PUBLIC_BASE_URL, ENTRA_AUTHORITY_HOST, ENTRA_CA_BUNDLE,
    DYNAMICS_EXTRA_ALLOWED_ORIGINS) point at them for each journey only, so the rest of the suite
    keeps its own emulator and `http://testserver`. Chromium is `/usr/bin/chromium`; without it
    every test here is skipped with "Chromium not installed at /usr/bin/chromium: apt-get install
    chromium". `make e2e` runs only these; `make test` runs them too.

Fixtures
    `page`             a fresh browser context (no cookies) at 1280x800 whose base URL is the app,
                       so `page.goto("/Dynamics/Signup")` works. It fails the journey if the page
                       showed a document that `run_axe` never checked (ours or the emulator's).
                       On failure a screenshot goes to test-results/e2e/.
    `signed_in_admin`  that page after a whole signup as the demo admin, on the welcome page
                       ("Welcome, Contoso Ltd"); `Account.objects.get()` is the new account.
    `demo`             the demo seed's values (tests.demo.Demo), `org_url` being this
                       emulator's URL: what a person types into the signup form.
    `e2e_stack`        `.app_url` (the live server) and `.emulator` (entra_emulator.testing's
                       RunningEmulator: `.browser_url`, `.fault(...)`, `.add_app(...)`, `.log()`).
    `make_account`     (tests/conftest.py) an account on the demo app, without a browser.

Helpers (tests/e2e/browser.py; role and label locators only)
    `run_axe(page)`    axe-core on the page as it is now; fails listing each serious or critical
                       violation's id, impact, help and target nodes. Call it on arriving at
                       every page, and after opening a modal.
    `sign_up(page, client_id=, client_secret=, org_url=, email=)`  the signup journey.
    steps, one page each: `fill_signup_form`, `submit_signup_form`, `sign_in_at_emulator(page,
    email)`, `answer_consent(page, accept=)`, `sign_out(page)`, `start_sign_in(page)`, and
    `expect_*` for the pages they land on.
    `ADMIN_ONLY_PATHS` and `expect_admins_only(page, path)`: the pages a member must not reach.

A new journey, e.g.:

    def test_an_admin_opens_the_connections_page(signed_in_admin):
        page = signed_in_admin
        page.get_by_role("link", name="Connections").click()
        expect(page.get_by_role("heading", name="Connections")).to_be_visible()
        run_axe(page)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.test import override_settings

from entra_emulator.testing import RunningEmulator, run_emulator
from lib import entra
from tests.demo import DEMO_SEED, Demo
from tests.e2e.browser import (
    CHROMIUM,
    CHROMIUM_MISSING,
    VIEWPORT,
    PageAudit,
    launch_chromium,
    sign_up,
)
from tests.network_guard import allow_local_port

E2E_DIR = Path(__file__).resolve().parent
FAILURE_SCREENSHOTS = E2E_DIR.parent.parent / "test-results" / "e2e"


def chromium_installed() -> bool:
    return os.access(CHROMIUM, os.X_OK)


@pytest.hookimpl(tryfirst=True)  # before `-m e2e` selects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test in tests/e2e is an `e2e` test, skipped with the fix when Chromium is missing."""
    installed = chromium_installed()
    for item in items:
        if E2E_DIR in item.path.parents:
            item.add_marker(pytest.mark.e2e)
            if not installed:
                item.add_marker(pytest.mark.skip(reason=CHROMIUM_MISSING))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Let the `page` fixture know whether the journey itself failed (for its screenshot)."""
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


@dataclass(frozen=True)
class E2EStack:
    app_url: str
    emulator: RunningEmulator


@pytest.fixture(scope="package")
def e2e_stack(live_server, tmp_path_factory) -> Iterator[E2EStack]:
    """The live server, then an emulator whose redirect URIs are the live server's URLs."""
    app_url = live_server.url
    allow_local_port(urlsplit(app_url).port)
    state_dir = tmp_path_factory.mktemp("e2e-emulator")
    with run_emulator(
        DEMO_SEED, state_dir, env={"PUBLIC_BASE_URL": app_url}, test_api=True
    ) as emulator:
        for url in (emulator.url, emulator.browser_url):
            allow_local_port(urlsplit(url).port)
        yield E2EStack(app_url=app_url, emulator=emulator)


@pytest.fixture(scope="package")
def demo(e2e_stack) -> Demo:
    return Demo.from_seed(org_url=e2e_stack.emulator.url)


@pytest.fixture(autouse=True)
def e2e_settings(e2e_stack, transactional_db) -> Iterator[None]:
    """Point the product at this package's live server and emulator for one journey."""
    emulator = e2e_stack.emulator
    with override_settings(
        PUBLIC_BASE_URL=e2e_stack.app_url,
        ENTRA_AUTHORITY_HOST=emulator.url,
        ENTRA_CA_BUNDLE=emulator.ca_path,
        DYNAMICS_EXTRA_ALLOWED_ORIGINS=[
            emulator.url,
            emulator.url.replace("127.0.0.1", "localhost"),
        ],
    ):
        emulator.reset()
        entra.reset_process_caches()
        yield
        entra.reset_process_caches()


@pytest.fixture(scope="package")
def chromium() -> Iterator:
    """One Chromium for the package; each journey gets its own context (see `page`)."""
    if not chromium_installed():
        pytest.skip(CHROMIUM_MISSING)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop marked as running in this thread while it is
    # started, so Django's async-safety check would refuse every ORM call the journeys make in
    # this thread (the DB assertions, factories and transactional_db's flush) with
    # SynchronousOnlyOperation, although nothing here is async. Allowed only while Chromium is
    # up, i.e. during this package; the live server's thread never sees the loop.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(request: pytest.FixtureRequest, chromium, e2e_stack, e2e_settings) -> Iterator:
    context = chromium.new_context(viewport=VIEWPORT, base_url=e2e_stack.app_url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    audit = PageAudit(page)
    yield page
    unchecked = audit.close()
    if request.node.stash.get(_CALL_FAILED, False):
        FAILURE_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.name)
        page.screenshot(path=str(FAILURE_SCREENSHOTS / f"{name}.png"))
        unchecked = []  # the failure says more than a missing check
    context.close()
    if unchecked:
        pytest.fail(
            "The journey showed these pages without checking them with run_axe(page):\n"
            + "\n".join(f"- {url}" for url in unchecked)
        )


@pytest.fixture
def account(demo):
    """An account the demo admin signed up (outside this journey's browser)."""
    from tests.people import Person

    admin = Person(demo)
    assert admin.sign_up().status_code == 302
    return admin.account


@pytest.fixture
def signed_in_admin(page, demo):
    """`page` after the demo admin signed the company up: on the welcome page."""
    sign_up(
        page,
        client_id=demo.client_id,
        client_secret=demo.client_secret,
        org_url=demo.org_url,
        email=demo.admin,
    )
    return page
