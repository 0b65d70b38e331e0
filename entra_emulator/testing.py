"""Helpers for tests: run the emulator as a subprocess, and sign in through its pages.

    with run_emulator(seed, tmp_path) as emu:
        emu.fault(endpoint="token", aadsts=7000215)
        url = sign_in(requests.Session(), flow["auth_uri"], "admin@contoso.onmicrosoft.com")

The emulator's CA is passed to `requests` per request (`verify=emu.ca_path`): this machine sets
REQUESTS_CA_BUNDLE, which takes precedence over `Session.verify`.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess  # runs our own interpreter and module, no shell: # nosec B404
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests

READY_LINE = re.compile(
    r"^entra-emulator ready at (?P<url>https://\S+) \(browser pages at (?P<browser>http://\S+)\)$"
)
START_TIMEOUT = 20.0


class EmulatorError(RuntimeError):
    """The emulator did not start, or its test API refused a call."""


class SignInError(RuntimeError):
    """`sign_in` ended on a page instead of a redirect back to the app."""


class RunningEmulator:
    """A started emulator and its test API."""

    def __init__(
        self, process: subprocess.Popen[str], ready_line: str, ca_path: Path, stderr: list[str]
    ) -> None:
        match = READY_LINE.match(ready_line)
        if match is None:
            raise EmulatorError(f"unexpected first line from the emulator: {ready_line!r}")
        self.process = process
        self.ready_line = ready_line
        self.url: str = match["url"]
        self.browser_url: str = match["browser"]
        self.ca_path = str(ca_path)
        self._stderr = stderr

    @property
    def stderr(self) -> str:
        """What the emulator logged so far (one line per request)."""
        return "".join(self._stderr)

    def session(self) -> requests.Session:
        """A session that trusts the emulator's CA, e.g. as MSAL's `http_client`."""
        session = requests.Session()
        session.request = functools.partial(  # type: ignore[method-assign]
            session.request, verify=self.ca_path, timeout=10
        )
        return session

    def fault(self, **fault: Any) -> dict[str, Any]:
        return self._call("POST", "faults", fault)

    def add_app(self, app: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", "apps", dict(app))

    def upload_certificate(self, client_id: str, pem: str) -> dict[str, Any]:
        """As the customer does under Certificates & secrets > Certificates > Upload."""
        return self._call("POST", "certificates", {"client_id": client_id, "pem": pem})

    def seed(self, fragment: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("POST", "seed", dict(fragment))

    def config(self, **settings: Any) -> dict[str, Any]:
        return self._call("POST", "config", settings)

    def revoke(self, user: str) -> dict[str, Any]:
        return self._call("POST", "revoke", {"user": user})

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def log(self) -> list[dict[str, Any]]:
        return self._call("GET", "log", None)

    def _call(self, method: str, name: str, body: Any) -> Any:
        response = requests.request(
            method, f"{self.url}/_emulator/{name}", json=body, verify=self.ca_path, timeout=10
        )
        if not response.ok:
            raise EmulatorError(
                f"{method} /_emulator/{name}: {response.status_code} {response.text}"
            )
        return response.json()


@contextmanager
def run_emulator(
    seed_path: str | os.PathLike[str],
    state_dir: str | os.PathLike[str],
    *,
    env: Mapping[str, str] | None = None,
    test_api: bool = True,
    port: int = 0,
    browser_port: int = 0,
    echo: bool = False,
) -> Iterator[RunningEmulator]:
    """Start `python -m entra_emulator` (on free ports unless given); stop it on exit.

    With ``echo`` its request log also goes to this process's stderr (`make run`)."""
    package_parent = str(Path(__file__).resolve().parent.parent)
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_parent, child_env.get("PYTHONPATH")) if p
    )
    command = [
        sys.executable,
        "-m",
        "entra_emulator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--browser-port",
        str(browser_port),
        "--seed",
        str(seed_path),
        "--state-dir",
        str(state_dir),
    ]
    if test_api:
        command.append("--test-api")
    process = subprocess.Popen(  # noqa: S603 - our argv, no shell: # nosec B603
        command, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stderr: list[str] = []
    drain = threading.Thread(target=_drain, args=(process.stderr, stderr, echo), daemon=True)
    drain.start()
    try:
        ready_line = _first_line(process, START_TIMEOUT)
        if ready_line is None:
            process.kill()
            process.wait()
            drain.join(timeout=2)
            raise EmulatorError(
                f"the emulator did not start within {START_TIMEOUT:.0f} s "
                f"(exit code {process.returncode}):\n{''.join(stderr)}"
            )
        yield RunningEmulator(process, ready_line, Path(state_dir) / "ca.pem", stderr)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _first_line(process: subprocess.Popen[str], timeout: float) -> str | None:
    """The first stdout line, or None if the process exits or stays silent too long."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0].rstrip("\n") if lines and lines[0] else None


def _drain(stream: Any, sink: list[str], echo: bool) -> None:
    for line in stream:
        sink.append(line)
        if echo:
            sys.stderr.write(line)


# --- Driving the browser pages ------------------------------------------------------------------


def sign_in(
    session: requests.Session, authorize_url: str, email: str, *, accept_consent: bool = True
) -> str:
    """Act as a person in a browser: sign in as `email`, answer consent, pick the account.

    Returns the URL the emulator finally redirects to (the app's callback with `code` and
    `state`, or with `error`), without requesting it. For `response_mode=form_post` it returns
    the form's action with the posted fields as a query string. Raises SignInError when the
    emulator ends on a page instead (an Entra error page, or an unknown email).
    """
    origin = _origin(authorize_url)
    method, url, data = "GET", authorize_url, None
    for _ in range(10):
        response = session.request(method, url, data=data, allow_redirects=False, timeout=10)
        if response.is_redirect:
            url = urljoin(url, response.headers["Location"])
            if _origin(url) != origin:
                return url
            method, data = "GET", None
            continue
        page = _Page.parse(response.text)
        if page.alert or page.form is None:
            raise SignInError(
                f"sign-in stopped on a page ({response.status_code}): {page.alert or page.text}"
            )
        action = urljoin(url, page.form.action)
        fields = dict(page.form.fields)
        buttons = page.form.buttons
        if _origin(action) != origin:  # response_mode=form_post back to the app
            return f"{action}?{urlencode(fields)}"
        if "login" in fields:
            fields["login"] = email
        elif "accept" in buttons:
            fields["action"] = "accept" if accept_consent else "cancel"
        elif "pick" in buttons:
            fields["action"] = "pick" if email.lower() in buttons["pick"].lower() else "other"
        else:
            raise SignInError(f"unexpected page: {page.text}")
        method, url, data = "POST", action, fields
    raise SignInError("sign-in did not finish in 10 steps")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class _Form:
    def __init__(self, action: str) -> None:
        self.action = action
        self.fields: dict[str, str] = {}
        self.buttons: dict[str, str] = {}  # value of name="action" buttons -> their text


class _Page(HTMLParser):
    """The first form (fields and buttons), any role=alert text, and the visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.form: _Form | None = None
        self.alert = ""
        self._texts: list[str] = []
        self._in_alert = False
        self._button: str | None = None
        self._skip = 0

    @classmethod
    def parse(cls, html: str) -> _Page:
        page = cls()
        page.feed(html)
        page.close()
        return page

    @property
    def text(self) -> str:
        return " ".join(" ".join(self._texts).split())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("style", "script"):
            self._skip += 1
        elif tag == "form" and self.form is None:
            self.form = _Form(a.get("action", ""))
        elif tag == "input" and self.form is not None and a.get("name"):
            self.form.fields.setdefault(a["name"], a.get("value", ""))
        elif tag == "button" and self.form is not None and a.get("name") == "action":
            self._button = a.get("value", "")
            self.form.buttons[self._button] = ""
        if a.get("role") == "alert":
            self._in_alert = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip -= 1
        elif tag == "button":
            self._button = None
        elif tag == "p":
            self._in_alert = False

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self._texts.append(data)
        if self._in_alert:
            self.alert += data.strip()
        if self._button is not None and self.form is not None:
            self.form.buttons[self._button] += data
