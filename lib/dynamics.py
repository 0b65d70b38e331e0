"""The Dynamics 365 (Dataverse) Web API: the only module that builds Dynamics URLs.

``normalize_org_url`` decides which "Application Id URL" values are Dynamics orgs;
``dynamics_scope`` is the delegated scope to ask Entra ID for; ``discover_tenant`` finds the
org's Entra tenant from the Web API's 401 challenge (the handshake Microsoft's own SDKs use);
``who_am_i`` proves that an access token works against the org. Every call has a timeout,
follows no redirect, refuses hosts that resolve to private or loopback addresses (unless the
development allow-list names the origin), and connects to the very address it checked, so a
customer-typed URL cannot point the server at an internal service, not even by DNS rebinding.
Failures raise ``DynamicsError`` with a plain-language message.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import uuid
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from lib.secret import Secret

logger = logging.getLogger("dynamics_connect.dynamics")

API_VERSION = "v9.2"
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


class DynamicsError(Exception):
    """A failed Web API call. ``code`` is loggable; ``message`` says what to do next;
    ``token_rejected`` means Dynamics refused the token (401)."""

    def __init__(self, message: str, *, code: str, token_rejected: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.token_rejected = token_rejected


def who_am_i(org_url: str, access_token: Secret) -> None:
    """Call ``GET {org}/api/data/v9.2/WhoAmI``: proof that the token works for this org.

    Returns only when the org answered 200 with WhoAmI's three ids; raises DynamicsError
    otherwise."""
    try:
        response = _get(
            org_url,
            f"/api/data/{API_VERSION}/WhoAmI",
            headers={
                "Authorization": f"Bearer {access_token.reveal()}",
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
            },
        )
    except requests.Timeout:
        raise _failure(
            "Dynamics 365 did not answer in time. Nothing was changed; try again in a minute.",
            "timeout",
            org_url,
        ) from None
    except requests.RequestException:
        raise _failure(
            f"Dynamics 365 at {org_url} could not be reached. Check the Application Id URL, "
            "then try again.",
            "unreachable",
            org_url,
        ) from None
    if response.status_code == 200:
        return _check_who_am_i(response, org_url)
    if response.status_code == 401:
        raise _failure(
            "Dynamics 365 refused the sign-in token. Check that the Application Id URL is "
            "your org's URL and that the app has the Dynamics CRM user_impersonation "
            "permission, then re-authorize.",
            "http_401",
            org_url,
            token_rejected=True,
        )
    if response.status_code == 403:
        code = _error_code(response)
        if code == NOT_A_MEMBER:
            raise _failure(
                "Your Microsoft account is not a user of this Dynamics 365 org (or has no "
                "security role there). Ask your Dynamics admin to add you, or sign in with "
                "an account that is.",
                "not_a_member",
                org_url,
            )
        raise _failure(
            "Your account lacks a permission in this Dynamics 365 org. Ask your Dynamics "
            "admin for a security role.",
            f"http_403_{code or 'forbidden'}",
            org_url,
        )
    if response.status_code in (301, 302, 303, 307, 308, 404):
        raise _failure(
            f"{org_url} does not answer like a Dynamics 365 org. Check the Application Id URL.",
            f"http_{response.status_code}",
            org_url,
        )
    raise _failure(
        "Dynamics 365 is having trouble right now. Nothing was changed; try again later.",
        f"http_{response.status_code}",
        org_url,
    )


# An unauthenticated Web API request's challenge, as Dataverse sends it:
# Bearer authorization_uri=https://login.microsoftonline.com/{tenant}/oauth2/authorize, ...
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
        response = _get(
            org_url, f"/api/data/{API_VERSION}/", headers={"Accept": "application/json"}
        )
    except requests.Timeout:
        raise _failure(not_an_org, "timeout", org_url, event="discovery") from None
    except requests.RequestException:
        raise _failure(not_an_org, "unreachable", org_url, event="discovery") from None
    if response.status_code != 401:
        raise _failure(not_an_org, f"http_{response.status_code}", org_url, event="discovery")
    params = _bearer_challenge(response.headers.get("WWW-Authenticate", ""))
    parts = urlsplit(params.get("authorization_uri", "")) if params else None
    match = _AUTHORIZE_PATH.match(parts.path) if parts else None
    if not parts or not match or parts.scheme != "https" or parts.query or parts.fragment:
        raise _failure(not_an_org, "no_tenant", org_url, event="discovery")
    try:
        tenant_id = str(uuid.UUID(match.group(1)))
    except ValueError:
        raise _failure(not_an_org, "no_tenant", org_url, event="discovery") from None
    authority = f"https://{parts.netloc.lower().removesuffix(':443')}"
    if authority != settings.ENTRA_AUTHORITY_HOST.lower().rstrip("/"):
        raise _failure(
            f"{org_url} is in another Microsoft cloud: it signs in at {authority}, and this "
            f"service signs in at {settings.ENTRA_AUTHORITY_HOST}. Use an org of the same cloud.",
            "other_cloud",
            org_url,
            event="discovery",
        )
    return tenant_id


def _bearer_challenge(header: str) -> dict[str, str] | None:
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


def _check_who_am_i(response: requests.Response, org_url: str) -> None:
    """A 200 proves nothing unless it is WhoAmI's answer (some other server may say 200)."""
    try:
        body = response.json()
        for key in ("UserId", "BusinessUnitId", "OrganizationId"):
            uuid.UUID(body[key])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _failure(
            f"{org_url} answered, but not like Dynamics 365. Check the Application Id URL.",
            "invalid_response",
            org_url,
        ) from None


def _error_code(response: requests.Response) -> str:
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


def _failure(
    message: str, code: str, org_url: str, *, token_rejected: bool = False, event: str = "who_am_i"
):
    logger.warning(
        "Dynamics %s failed",
        event,
        extra={"event": f"dynamics.{event}", "outcome": "failure", "code": code, "org": org_url},
    )
    return DynamicsError(message, code=code, token_rejected=token_rejected)


# Ranges Python 3.11 calls global that lead back inside: NAT64, 6to4, IPv4-compatible and
# IPv4-mapped addresses embed an IPv4 address that may be private; Teredo tunnels to one.
_EMBEDDING_NETWORKS = [
    ipaddress.ip_network(n)
    for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "::/96", "::ffff:0:0/96", "2001::/32")
]


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and any(ip in n for n in _EMBEDDING_NETWORKS):
        return False
    return ip.is_global


class _PinnedAdapter(HTTPAdapter):
    """Connects to the address that was checked, yet speaks TLS to the org's name: SNI and the
    certificate check use ``host``, so a second DNS answer (rebinding) is never asked for."""

    def __init__(self, host: str) -> None:
        self._host = host
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs) -> None:
        kwargs.update(server_hostname=self._host, assert_hostname=self._host)
        super().init_poolmanager(*args, **kwargs)


def _get(org_url: str, path: str, *, headers: dict[str, str]) -> requests.Response:
    """GET a path of the org: https only, no redirects, a timeout, no proxy or netrc from the
    environment, and (outside the development allow-list) only to the public address checked."""
    session = requests.Session()
    session.trust_env = False
    url = f"{org_url}{path}"
    if org_url not in settings.DYNAMICS_EXTRA_ALLOWED_ORIGINS:
        parts = urlsplit(org_url)
        address = _checked_address(org_url)
        literal = f"[{address}]" if ":" in address else address
        url = f"https://{literal}:{parts.port or 443}{path}"
        headers = {**headers, "Host": parts.netloc}
        session.mount("https://", _PinnedAdapter(parts.hostname or ""))
    with session:
        return session.get(
            url,
            headers=headers,
            timeout=settings.DYNAMICS_HTTP_TIMEOUT,
            verify=settings.ENTRA_CA_BUNDLE or True,
            allow_redirects=False,
        )


def _checked_address(org_url: str) -> str:
    """The org host's address to connect to, once every address it resolves to is public
    (SSRF); raises DynamicsError otherwise."""
    host = urlsplit(org_url).hostname or ""
    try:
        addresses = [info[4][0] for info in socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)]
    except OSError:
        raise _failure(
            f"The Dynamics org {org_url} was not found. Check the Application Id URL.",
            "dns",
            org_url,
        ) from None
    if not addresses or not all(_is_public(a) for a in addresses):
        raise _failure(
            f"The Dynamics org {org_url} does not resolve to a public address, so it was not "
            "contacted. Check the Application Id URL.",
            "non_public_address",
            org_url,
        )
    return addresses[0].split("%")[0]
