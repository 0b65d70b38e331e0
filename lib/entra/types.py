"""The values that cross lib/entra's edge: purposes, app credentials, flows, identities."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from django.conf import settings

from lib.secret import Secret

ORGANIZATIONS = "organizations"
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Purpose(StrEnum):
    """Why a flow was started; chooses the redirect URI and the handler of its callback."""

    SIGNUP = "signup"
    SIGN_IN = "sign_in"
    REAUTHORIZE = "reauthorize"
    # The tenant-wide approval an Entra ID admin gives at /v2.0/adminconsent, for a signup or
    # re-authorization waiting on it. No code, no token: it proves nothing by itself.
    ADMIN_CONSENT = "admin_consent"

    @property
    def identity_only(self) -> bool:
        """Sign-in proves who the person is and keeps no token (``?identityOnly=true``)."""
        return self is Purpose.SIGN_IN


def is_tenant_id(value: str) -> bool:
    return bool(_GUID.match(value or ""))


def authority_url(tenant: str) -> str:
    return f"{settings.ENTRA_AUTHORITY_HOST}/{tenant}"


def redirect_uri(*, identity_only: bool) -> str:
    """One of the two redirect URIs a customer registers; built from settings, never the Host."""
    base = f"{settings.PUBLIC_BASE_URL}/OAuth2"
    return f"{base}?identityOnly=true" if identity_only else base


def registered_redirect_uris() -> list[str]:
    return [redirect_uri(identity_only=False), redirect_uri(identity_only=True)]


@dataclass(frozen=True)
class AppCredentials:
    """A confidential client: the app registration's id, its tenant and its credential, a
    client secret or a certificate's private key (with the public certificate, PEM).

    The secret or key stays wrapped until the token request (``lib/entra/flows.py``,
    ``lib/entra/tokens.py``) reveals it for MSAL. With a certificate MSAL 1.39 signs a client
    assertion (RFC 7523) with PS256 and names the certificate by ``x5t#S256`` (and sends it in
    ``x5c``); the assertion is reused for several minutes by the same application object.
    """

    client_id: str
    tenant: str
    client_secret: Secret | None = field(default=None, repr=False)
    private_key: Secret | None = field(default=None, repr=False)
    certificate_pem: str = ""

    def msal_credential(self) -> str | dict[str, str]:
        if self.private_key is not None:
            return {
                "private_key": self.private_key.reveal(),
                "public_certificate": self.certificate_pem,
            }
        if self.client_secret is None:
            raise ValueError("credentials without a secret or a private key")
        return self.client_secret.reveal()


@dataclass(frozen=True)
class StoredFlow:
    """A flow taken out of the flow store: what it was started for, on which app and tenant.

    ``context`` is the small, JSON-serializable value the starter gave (identifiers only).
    ``same_browser`` is False only for an admin consent answered in another browser (the
    admin's): such an answer may be taken there, but resumes nothing there.
    """

    purpose: Purpose
    client_id: str
    tenant: str
    scopes: tuple[str, ...]
    next_url: str
    context: dict[str, Any]
    msal_flow: dict[str, Any] = field(repr=False)
    same_browser: bool = True


@dataclass(frozen=True)
class ProvenIdentity:
    """What a completed flow proved: a validated id token's identity and, for flows that keep
    tokens, the access token for the flow's scopes and the serialized MSAL token cache."""

    tenant_id: str
    object_id: str
    username: str
    display_name: str
    email: str
    home_account_id: str = ""
    access_token: Secret | None = None
    token_cache: Secret | None = None
