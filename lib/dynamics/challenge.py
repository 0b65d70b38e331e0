"""The org's Entra tenant, from the Web API's answer to a request without a token.

Dataverse answers 401 with ``WWW-Authenticate: Bearer authorization_uri=https://{authority}/
{tenant}/oauth2/authorize, resource_id={org}/`` (the handshake Microsoft's own SDKs use). It is
read strictly: one ``Bearer`` challenge, each parameter once, a GUID tenant, the configured
authority host (another host is another Microsoft cloud).
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

import requests
from django.conf import settings

from lib.dynamics.transport import API_VERSION, failure, get

_MAX_CHALLENGE = 1024
_CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?:"([^"\\]*)"|([^\s,"]*))\s*')
_AUTHORIZE_PATH = re.compile(r"^/([0-9a-fA-F-]{36})/oauth2/(?:v2\.0/)?authorize/?$")


def discover_tenant(org_url: str) -> str:
    """The Entra tenant id of the org, from ``GET {org}/api/data/v9.2/`` without a token:
    Dataverse answers 401 with ``WWW-Authenticate: Bearer authorization_uri=...``.

    Raises DynamicsError: ``other_cloud`` when the authority is not ENTRA_AUTHORITY_HOST, and
    a "does not answer as a Dynamics 365 org" error for anything else (no challenge, no
    tenant, a redirect, another status, a timeout); same address checks as ``who_am_i``."""
    not_an_org = (
        f"{org_url} does not answer as a Dynamics 365 org. Check the Application Id URL: open "
        "Dynamics 365 and copy the address up to and including .dynamics.com."
    )
    try:
        response = get(org_url, f"/api/data/{API_VERSION}/", headers={"Accept": "application/json"})
    except requests.Timeout:
        raise failure(not_an_org, "timeout", org_url, event="discovery") from None
    except requests.RequestException:
        raise failure(not_an_org, "unreachable", org_url, event="discovery") from None
    if response.status_code != 401:
        raise failure(not_an_org, f"http_{response.status_code}", org_url, event="discovery")
    params = bearer_challenge(response.headers.get("WWW-Authenticate", ""))
    parts = urlsplit(params.get("authorization_uri", "")) if params else None
    match = _AUTHORIZE_PATH.match(parts.path) if parts else None
    if not parts or not match or parts.scheme != "https" or parts.query or parts.fragment:
        raise failure(not_an_org, "no_tenant", org_url, event="discovery")
    try:
        tenant_id = str(uuid.UUID(match.group(1)))
    except ValueError:
        raise failure(not_an_org, "no_tenant", org_url, event="discovery") from None
    authority = f"https://{parts.netloc.lower().removesuffix(':443')}"
    if authority != settings.ENTRA_AUTHORITY_HOST.lower().rstrip("/"):
        raise failure(
            f"{org_url} is in another Microsoft cloud: it signs in at {authority}, and this "
            f"service signs in at {settings.ENTRA_AUTHORITY_HOST}. Use an org of the same cloud.",
            "other_cloud",
            org_url,
            event="discovery",
        )
    return tenant_id


def bearer_challenge(header: str) -> dict[str, str] | None:
    """The parameters of a single ``Bearer`` challenge (RFC 6750 3: quoted or not, any
    order), or None: another scheme, a second challenge, a parameter twice, junk, too long."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer" or len(header) > _MAX_CHALLENGE:
        return None
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        match = _CHALLENGE_PARAM.match(rest, position)
        if not match or match.end() == position:
            return None
        name = match.group(1).lower()
        if name in params:
            return None
        params[name] = match.group(2) if match.group(2) is not None else match.group(3)
        position = match.end()
        if position < len(rest):
            if rest[position] != ",":
                return None
            position += 1
    return params
