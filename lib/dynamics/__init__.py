"""The Dynamics 365 (Dataverse) Web API: the only module that builds Dynamics URLs.

``normalize_org_url`` decides which "Application Id URL" values are Dynamics orgs;
``dynamics_scope`` is the delegated scope to ask Entra ID for; ``discover_tenant`` finds the
org's Entra tenant from the Web API's 401 challenge (the handshake Microsoft's own SDKs use);
``who_am_i`` proves that an access token works against the org. Every call has a timeout,
follows no redirect, refuses hosts that resolve to private or loopback addresses (unless the
development allow-list names the origin), and connects to the very address it checked, so a
customer-typed URL cannot point the server at an internal service, not even by DNS rebinding.
Failures raise ``DynamicsError`` with a plain-language message (``transport.py``); the
tenant's challenge is read in ``challenge.py``. ``read_one_row`` proves the connected user can
read a table the product needs, naming the missing privilege when it cannot.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from urllib.parse import urlsplit

import requests
from django.conf import settings

from lib.dynamics.challenge import bearer_challenge, discover_tenant
from lib.dynamics.transport import (
    API_VERSION,
    DynamicsError,
    PinnedAdapter,
    bearer_headers,
    error_field,
    failure,
    get,
    throttled_or_down,
)
from lib.secret import Secret

__all__ = [
    "ORG_URL_HELP",
    "DynamicsError",
    "InvalidOrgUrl",
    "PinnedAdapter",
    "bearer_challenge",
    "discover_tenant",
    "dynamics_app_scope",
    "dynamics_scope",
    "normalize_org_url",
    "read_one_row",
    "who_am_i",
]

NOT_A_MEMBER = "0x80072560"

# Dynamics 365 org hosts: {org}.crm[N].dynamics.com (and their .api. hosts), Germany, US
# Government (GCC High, DoD) and China. From the Power Platform datacenter region list.
_DYNAMICS_HOST = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.(?:api\.)?"
    r"(?:crm\d{0,2}\.dynamics\.com|crm\.microsoftdynamics\.(?:de|us)|crm\.dynamics\.cn"
    r"|crm\.appsplatform\.us)$"
)

ORG_URL_HELP = (
    "Your Dynamics 365 org URL, such as https://contoso.crm.dynamics.com: open Dynamics 365 "
    "and copy the address up to and including .dynamics.com."
)


def dynamics_scope(org_url: str) -> str:
    """The delegated Dynamics scope for an org URL (MSAL's cache works best with this one)."""
    return f"{org_url.rstrip('/')}/user_impersonation"


def dynamics_app_scope(org_url: str) -> str:
    """The app-only (client-credentials) scope for an org URL: its ``.default``."""
    return f"{org_url.rstrip('/')}/.default"


class InvalidOrgUrl(ValueError):
    """The text is not the URL of a Dynamics 365 org; ``str()`` says why in plain words."""


def normalize_org_url(raw: str) -> str:
    """``https://<org host>`` in lower case, or raise InvalidOrgUrl explaining what is wrong."""
    text = raw.strip()
    if not text:
        raise InvalidOrgUrl("Enter your Dynamics 365 org URL.")
    if "\\" in text or any(ord(c) < 33 or ord(c) > 126 for c in text):
        raise InvalidOrgUrl("The URL contains characters a Dynamics org URL never has.")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidOrgUrl("That is not a valid URL.") from None
    if parts.scheme.lower() != "https":
        raise InvalidOrgUrl("The Dynamics org URL must start with https://.")
    if parts.username or parts.password or "@" in parts.netloc:
        raise InvalidOrgUrl("Remove the user name or password from the URL.")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidOrgUrl(
            "Enter only the org address, without a path or query: for example "
            "https://contoso.crm.dynamics.com, not https://contoso.crm.dynamics.com/main.aspx."
        )
    host = (parts.hostname or "").lower()
    origin = f"https://{host}" + (f":{port}" if port else "")
    if origin in settings.DYNAMICS_EXTRA_ALLOWED_ORIGINS:
        return origin
    if _is_ip_address(host) or host == "localhost" or host.endswith(".localhost"):
        raise InvalidOrgUrl(
            "Enter your Dynamics org's name, such as https://contoso.crm.dynamics.com, not an "
            "IP address or localhost."
        )
    if port not in (None, 443):
        raise InvalidOrgUrl("A Dynamics org URL has no port number.")
    if not _DYNAMICS_HOST.match(host):
        raise InvalidOrgUrl(
            "That is not a Dynamics 365 org URL. It looks like https://contoso.crm.dynamics.com "
            "(or crm4, crm11, ... for other regions)."
        )
    return f"https://{host}"


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def who_am_i(org_url: str, access_token: Secret) -> None:
    """Call ``GET {org}/api/data/v9.2/WhoAmI``: proof that the token works for this org.

    Returns only when the org answered 200 with WhoAmI's three ids; raises DynamicsError
    otherwise."""
    try:
        response = get(
            org_url,
            f"/api/data/{API_VERSION}/WhoAmI",
            headers=bearer_headers(access_token),
        )
    except requests.Timeout:
        raise failure(
            "Dynamics 365 did not answer in time. Nothing was changed; try again in a minute.",
            "timeout",
            org_url,
        ) from None
    except requests.RequestException:
        raise failure(
            f"Dynamics 365 at {org_url} could not be reached. Check the Application Id URL, "
            "then try again.",
            "unreachable",
            org_url,
        ) from None
    throttled_or_down(response, org_url, "who_am_i")
    if response.status_code == 200:
        return _check_who_am_i(response, org_url)
    if response.status_code == 401:
        raise failure(
            "Dynamics 365 refused the sign-in token. Check that the Application Id URL is "
            "your org's URL and that the app has the Dynamics CRM user_impersonation "
            "permission, then re-authorize.",
            "http_401",
            org_url,
            token_rejected=True,
        )
    if response.status_code == 403:
        code = error_field(response, "code")
        if code == NOT_A_MEMBER:
            raise failure(
                "Your Microsoft account is not a user of this Dynamics 365 org (or has no "
                "security role there). Ask your Dynamics admin to add you, or sign in with "
                "an account that is.",
                "not_a_member",
                org_url,
            )
        raise failure(
            "Your account lacks a permission in this Dynamics 365 org. Ask your Dynamics "
            "admin for a security role.",
            f"http_403_{code or 'forbidden'}",
            org_url,
        )
    if response.status_code in (301, 302, 303, 307, 308, 404):
        raise failure(
            f"{org_url} does not answer like a Dynamics 365 org. Check the Application Id URL.",
            f"http_{response.status_code}",
            org_url,
        )
    raise failure(
        "Dynamics 365 is having trouble right now. Nothing was changed; try again later.",
        f"http_{response.status_code}",
        org_url,
    )


# An unauthenticated Web API request's challenge, as Dataverse sends it:


def _check_who_am_i(response: requests.Response, org_url: str) -> None:
    """A 200 proves nothing unless it is WhoAmI's answer (some other server may say 200)."""
    try:
        body = response.json()
        for key in ("UserId", "BusinessUnitId", "OrganizationId"):
            uuid.UUID(body[key])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise failure(
            f"{org_url} answered, but not like Dynamics 365. Check the Application Id URL.",
            "invalid_response",
            org_url,
        ) from None


# The entity sets the product reads, with the entity (for its id column and its privilege).
ENTITIES = {
    "leads": ("lead", "Lead", "Leads"),
    "contacts": ("contact", "Contact", "Contacts"),
    "accounts": ("account", "Account", "Accounts"),
    "opportunities": ("opportunity", "Opportunity", "Opportunities"),
    "campaigns": ("campaign", "Campaign", "Campaigns"),
}
_MISSING_PRIVILEGE = re.compile(r"missing (prv[A-Za-z]+) privilege")


class MissingPrivilege(DynamicsError):
    """The connected user may not read a table: ``privilege`` is Dataverse's name for it."""

    def __init__(self, message: str, *, table: str, privilege: str) -> None:
        super().__init__(message, code=f"missing_{privilege}")
        self.table = table
        self.privilege = privilege


def read_one_row(org_url: str, access_token: Secret, entity_set: str) -> None:
    """``GET {org}/api/data/v9.2/{entity_set}?$top=1&$select={id}``: whether the connected
    user can read the table. Raises ``MissingPrivilege`` for a 403 naming a privilege, and
    DynamicsError for the rest (throttling and 5xx included)."""
    entity, label, plural = ENTITIES[entity_set]
    try:
        response = get(
            org_url,
            f"/api/data/{API_VERSION}/{entity_set}?$top=1&$select={entity}id",
            headers=bearer_headers(access_token),
        )
    except requests.RequestException:
        raise failure(
            "Dynamics 365 did not answer. Try again in a minute.",
            "unreachable",
            org_url,
            event="read",
        ) from None
    throttled_or_down(response, org_url, "read")
    if response.status_code == 200:
        return
    if response.status_code == 403:
        match = _MISSING_PRIVILEGE.search(error_field(response, "message"))
        privilege = match.group(1) if match else f"prvRead{label}"
        raise MissingPrivilege(
            f"Connected, but the connected user cannot read {plural}: give them a security "
            f"role with Read on {label} in Dynamics 365 (missing {privilege}).",
            table=entity_set,
            privilege=privilege,
        )
    raise failure(
        f"Dynamics 365 refused to read {plural} ({response.status_code}).",
        f"http_{response.status_code}",
        org_url,
        event="read",
    )
