"""People using the product: one driver for every test (healthchecks' Alice, Bob, Charlie).

A ``Person`` has the app's test client and a browser for the emulator's pages (with its own
cookies, so a second sign-in is silent). Every step goes through the product's URLs.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import requests
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from django.http import HttpRequest
from django.test import Client, RequestFactory

from accounts.models import Account
from connections.models import DynamicsConnection
from entra_emulator.testing import sign_in
from tests.demo import Demo

SIGNUP_URL = "/Dynamics/Signup"
CONNECTIONS_URL = "/settings/connections"


def signup_form(demo: Demo, **overrides: str) -> dict[str, str]:
    return {
        "company_name": "Contoso Ltd",
        "phone": "+1 (425) 555-0100",
        "website": "https://www.contoso.example",
        "client_id": demo.client_id,
        "credential_kind": "secret",
        "client_secret": demo.client_secret,
        "org_url": demo.org_url,
        **overrides,
    }


class Person:
    """Someone with a browser: ``client`` talks to the app, ``browser`` to Microsoft."""

    def __init__(self, demo: Demo, email: str | None = None, *, client: Client | None = None):
        self.demo = demo
        self.email = email or demo.admin
        self.client = client or Client()
        self.browser = requests.Session()
        self.account: Account | None = None
        self._session = SessionStore()  # for request(): lib/entra's own tests

    # --- Microsoft's side ---

    def at_microsoft(self, authorize_url: str, *, accept: bool = True) -> str:
        """Sign in (and consent) at the emulator; returns where it redirects back to."""
        return sign_in(self.browser, authorize_url, self.email, accept_consent=accept)

    def follow(self, url: str):
        """Deliver Entra ID's redirect to the app (the browser's last step)."""
        parts = urlsplit(url)
        assert url.startswith(f"{settings.PUBLIC_BASE_URL}/"), url
        return self.client.get(f"{parts.path}?{parts.query}")

    def _started(self, response) -> str:
        assert response.status_code == 302, response.content.decode()[:2000]
        return response["Location"]

    def request(self, url: str = "/") -> HttpRequest:
        """A request from this person's browser, with a session of its own: for driving
        lib/entra directly, below the product's views."""
        parts = urlsplit(url)
        request = RequestFactory().get(parts.path or "/", parse_qs(parts.query))
        request.session = self._session
        return request

    # --- Signup ---

    def submit_signup(self, **overrides: str) -> str:
        """Post the signup form; returns the Entra ID authorize URL it redirects to."""
        return self._started(self.client.post(SIGNUP_URL, signup_form(self.demo, **overrides)))

    def sign_up(self, *, accept: bool = True, **overrides: str):
        """The whole signup; returns the response to the /OAuth2 callback."""
        response = self.follow(self.at_microsoft(self.submit_signup(**overrides), accept=accept))
        if response.status_code == 302 and "/welcome" in response["Location"]:
            self.account = Account.objects.get(account_id=response["Location"].split("/")[2])
        return response

    # --- Sign in ---

    def start_sign_in(self, account: Account, **data: str) -> str:
        return self._started(self.client.post(f"/business/{account.account_id}/signin", data))

    def sign_in(self, account: Account, **data: str):
        """The whole sign-in; returns the response to the /OAuth2?identityOnly=true callback."""
        response = self.follow(self.at_microsoft(self.start_sign_in(account, **data)))
        if response.status_code == 302:
            self.account = account
        return response

    # --- Re-authorization (an admin, on the account they work in) ---

    @property
    def connection(self) -> DynamicsConnection:
        return DynamicsConnection.objects.select_related("account__entra_app").get(
            account=self.account
        )

    def reauthorize_url(self) -> str:
        return f"{CONNECTIONS_URL}/{self.connection.pk}/reauthorize"

    def submit_reauthorization(self, **fields: str):
        """Post the key icon's form; returns the response (a redirect to Entra ID, or the form)."""
        data = {
            "client_id": self.demo.client_id,
            "credential_kind": "secret",
            "client_secret": self.demo.second_client_secret,
            "org_url": self.demo.org_url,
            **fields,
        }
        return self.client.post(self.reauthorize_url(), data)

    def start_reauthorization(self, **fields: str) -> str:
        return self._started(self.submit_reauthorization(**fields))

    def reauthorize(self, **fields: str):
        """The whole re-authorization; returns the Connections page it ends on."""
        response = self.follow(self.at_microsoft(self.start_reauthorization(**fields)))
        assert response.status_code == 302 and response["Location"] == CONNECTIONS_URL
        return self.client.get(CONNECTIONS_URL)
