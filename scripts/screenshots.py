"""`make screenshots`: regenerate docs/screenshots/*.png at 1280x800 in Debian's Chromium.

Starts what `make run` starts, on free ports and a throwaway SQLite database and keys: the local
Entra ID emulator (demo seed) and the app (`manage.py runserver`). Then walks the journeys with
the same steps as the browser tests (tests/e2e/browser.py) and takes a picture where `shoot` is
called. Adding a picture is one line in `journeys()`: `shoot("name")` where the page shows it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


from playwright.sync_api import BrowserContext, expect, sync_playwright  # noqa: E402

from entra_emulator.testing import RunningEmulator, run_emulator  # noqa: E402
from lib.crypto import generate_key  # noqa: E402
from tests.e2e.browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_MISSING,
    VIEWPORT,
    answer_consent,
    choose_client_secret,
    expect_emulator_sign_in_page,
    expect_welcome_page,
    fill_signup_form,
    launch_chromium,
    submit_signup_form,
)

OUT = ROOT / "docs" / "screenshots"
DEMO_SEED = ROOT / "entra_emulator" / "demo_seed.json"
# A secret the demo app does not have, for the error state.
WRONG_SECRET = "Wr0ng~Secret~Typed~Into~The~Signup~Form"


def journeys(new_page: Callable, shoot: Callable[..., None], demo: dict[str, str]) -> None:
    """Walk the product as a new customer would; `shoot(name)` saves docs/screenshots/name.png."""
    page = new_page()
    page.goto("/Dynamics/Signup")
    fill_signup_form(
        page,
        client_id=demo["client_id"],
        client_secret=demo["client_secret"],
        org_url=demo["org_url"],
    )
    shoot("signup")
    submit_signup_form(page)

    expect_emulator_sign_in_page(page)
    page.get_by_label("Email").fill(demo["admin"])
    shoot("emulator-sign-in")
    page.get_by_role("button", name="Sign in").click()
    answer_consent(page)

    expect_welcome_page(page)
    shoot("welcome")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Home").click()
    expect(page.get_by_text("Signed in as")).to_be_visible()
    shoot("account-home")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Connections", exact=True)).to_be_visible()
    shoot("connections")
    page.get_by_role("button", name="Add a new certificate").click()
    expect(
        page.get_by_role("heading", name="Upload the certificate to your app registration")
    ).to_be_visible()
    shoot("certificate")
    page.get_by_role("link", name="Back").click()
    page.get_by_role("button", name="Re-authorize Dynamics connection").click()
    dialog = page.get_by_role("dialog", name="Re-authorize Dynamics")
    choose_client_secret(dialog)
    dialog.get_by_label("Client Secret", exact=True).fill(WRONG_SECRET)
    shoot("modal")
    dialog.get_by_role("button", name="Submit").click()
    # Caught before Microsoft: the pre-flight's answer, next to the field.
    refused = page.get_by_text("Microsoft rejected the Client Secret")
    expect(refused).to_be_visible()
    shoot("reauthorize-error", at=page.get_by_label("Client Secret", exact=True))

    # The error state: a signup whose secret Microsoft refuses, in a fresh browser.
    page = new_page()
    page.goto("/Dynamics/Signup")
    fill_signup_form(
        page, client_id=demo["client_id"], client_secret=WRONG_SECRET, org_url=demo["org_url"]
    )
    submit_signup_form(page)
    refused = page.get_by_text("Microsoft rejected the Client Secret")
    expect(refused).to_be_visible()
    shoot("signup-error", at=page.get_by_label("Client Secret", exact=True))


# --- Machinery --------------------------------------------------------------------------------


def free_port(preferred: int = 8000) -> int:
    """`make run`'s port when it is free (so the pictures show the README's URLs), else any."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise OSError("no free port")


def demo_values(emulator: RunningEmulator) -> dict[str, str]:
    seed = json.loads(DEMO_SEED.read_text())
    app, users = seed["apps"][0], seed["tenants"][0]["users"]
    return {
        "client_id": app["client_id"],
        "client_secret": app["secrets"][0]["value"],
        "org_url": emulator.url,
        "admin": users[0]["upn"],
        "member": users[1]["upn"],
    }


def app_environment(var_dir: Path, app_url: str, emulator: RunningEmulator) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return {
        **env,
        "DJANGO_DEBUG": "true",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": generate_key(),
        "VAR_DIR": str(var_dir),
        "PUBLIC_BASE_URL": app_url,
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "ENTRA_AUTHORITY_HOST": emulator.url,
        "ENTRA_CA_BUNDLE": emulator.ca_path,
        "DYNAMICS_EXTRA_ALLOWED_ORIGINS": emulator.url,
        "LOG_LEVEL": "WARNING",
    }


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"The app stopped before it answered (exit code {process.returncode}).")
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 (our own local app)
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"The app did not answer at {url} within {timeout:.0f} s.")


def main() -> None:
    if not os.access(CHROMIUM, os.X_OK):
        sys.exit(CHROMIUM_MISSING)
    OUT.mkdir(parents=True, exist_ok=True)
    port = free_port()
    app_url = f"http://localhost:{port}"
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        var_dir = Path(tmp)
        with run_emulator(
            DEMO_SEED, var_dir / "emulator", env={"PUBLIC_BASE_URL": app_url}, test_api=False
        ) as emulator:
            env = app_environment(var_dir, app_url, emulator)
            manage = [sys.executable, str(ROOT / "manage.py")]
            migrate = subprocess.run(
                [*manage, "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True
            )
            if migrate.returncode:
                sys.exit(f"manage.py migrate failed:\n{migrate.stdout}{migrate.stderr}")
            log_path = var_dir / "app.log"
            log = log_path.open("w")
            app = subprocess.Popen(
                [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                wait_until_up(f"{app_url}/healthz", app)
                take_screenshots(app_url, demo_values(emulator))
            except BaseException:
                print(f"The app's log:\n{log_path.read_text()}", file=sys.stderr)
                print(f"The emulator's log:\n{emulator.stderr}", file=sys.stderr)
                raise
            finally:
                app.send_signal(signal.SIGINT)
                try:
                    app.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    app.kill()
                log.close()


def take_screenshots(app_url: str, demo: dict[str, str]) -> None:
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        contexts: list[BrowserContext] = []
        current = {}

        def new_page():
            context = browser.new_context(viewport=VIEWPORT, base_url=app_url)
            context.set_default_timeout(15_000)
            contexts.append(context)
            current["page"] = context.new_page()
            return current["page"]

        def shoot(name: str, at=None) -> None:
            """Save the page, from its top, or with the locator ``at`` in view."""
            page = current["page"]
            page.wait_for_load_state("load")
            page.evaluate("window.scrollTo(0, 0)")  # filling a form scrolls to the last field
            if at is not None:
                at.scroll_into_view_if_needed()
            path = OUT / f"{name}.png"
            page.screenshot(path=str(path), caret="hide", animations="disabled")
            print(f"wrote {path.relative_to(ROOT)}")

        try:
            journeys(new_page, shoot, demo)
        finally:
            for context in contexts:
                context.close()
            browser.close()


if __name__ == "__main__":
    main()
