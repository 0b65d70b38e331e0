"""A person's steps through the product, driven with Django's test client and the emulator."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from django.test import Client

from entra_emulator.testing import sign_in

SIGNUP_URL = "/Dynamics/Signup"


def signup_form(demo, **overrides) -> dict[str, str]:
    return {
        "company_name": "Contoso Ltd",
        "phone": "+1 (425) 555-0100",
        "website": "https://www.contoso.example",
        "client_id": demo.client_id,
        "client_secret": demo.client_secret,
        "org_url": demo.org_url,
        **overrides,
    }


def submit_signup(client: Client, demo, **overrides) -> str:
    """Post the signup form; returns the Entra ID authorize URL it redirects to."""
    response = client.post(SIGNUP_URL, signup_form(demo, **overrides))
    assert response.status_code == 302, response.content.decode()[:2000]
    return response["Location"]


def follow_callback(client: Client, url: str):
    """Deliver Entra ID's redirect to the app (the browser's last step)."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "http://testserver", url
    return client.get(f"{parts.path}?{parts.query}")


def sign_up(client: Client, demo, *, email=None, accept=True, browser=None, **overrides):
    """The whole signup journey; returns the response to the /OAuth2 callback."""
    authorize_url = submit_signup(client, demo, **overrides)
    redirect = sign_in(
        browser or requests.Session(), authorize_url, email or demo.admin, accept_consent=accept
    )
    return follow_callback(client, redirect)
