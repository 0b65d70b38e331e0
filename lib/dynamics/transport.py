"""How every Dynamics Web API call travels, and how it fails: HTTPS only, no redirects, a
timeout, no proxy or netrc from the environment, and (outside the development allow-list)
only to the public address that was checked, connected to by that address (no second DNS
answer: DNS rebinding). ``DynamicsError`` says what went wrong; a 429 or a service-protection
error is ``throttled`` with the ``Retry-After``, a 5xx is Dynamics' trouble: neither is a
credential problem.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter

from lib.secret import Secret

logger = logging.getLogger("dynamics_connect.dynamics")

API_VERSION = "v9.2"


class DynamicsError(Exception):
    """A failed Web API call. ``code`` is loggable; ``message`` says what to do next;
    ``token_rejected`` means Dynamics refused the token (401); ``retry_after`` (seconds) means
    Dynamics is throttling (service protection) and said when to come back."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        token_rejected: bool = False,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.token_rejected = token_rejected
        self.retry_after = retry_after


# Service protection API limits: requests, execution time, concurrent requests.
_SERVICE_PROTECTION_CODES = {"0x80072322", "0x80072321", "0x80072326"}
_DEFAULT_RETRY_AFTER = 60
_MAX_RETRY_AFTER = 3600


def _retry_after(response: requests.Response) -> int:
    """The ``Retry-After`` of a throttled answer, in seconds (delta or HTTP date), bounded."""
    raw = response.headers.get("Retry-After", "").strip()
    seconds = _DEFAULT_RETRY_AFTER
    if raw.isdigit():
        seconds = int(raw)
    elif raw:
        try:
            seconds = int((parsedate_to_datetime(raw) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            seconds = _DEFAULT_RETRY_AFTER
    return min(max(seconds, 1), _MAX_RETRY_AFTER)


def throttled_or_down(response: requests.Response, org_url: str, event: str) -> None:
    """Raise for a 429 or a service-protection error (``throttled``, with ``retry_after``)
    and for a 5xx (``http_5xx``): neither is a credential problem."""
    if response.status_code < 400:
        return
    code = error_field(response, "code")
    if response.status_code == 429 or code in _SERVICE_PROTECTION_CODES:
        seconds = _retry_after(response)
        logger.warning(
            "Dynamics asked to wait",
            extra={"event": f"dynamics.{event}", "outcome": "throttled", "org": org_url},
        )
        raise DynamicsError(
            f"Dynamics 365 is busy and asked to wait {seconds} s (service protection limits). "
            "Nothing is wrong with the connection; it will be tried again after that.",
            code="throttled",
            retry_after=seconds,
        )
    if response.status_code >= 500:
        raise failure(
            "Dynamics 365 is having trouble right now. Nothing is wrong with the connection; "
            "try again later.",
            "http_5xx",
            org_url,
            event=event,
        )


def error_field(response: requests.Response, name: str) -> str:
    """``error.<name>`` of a Web API error body (``code``, ``message``), or ""."""
    try:
        return str(response.json()["error"][name])
    except (ValueError, KeyError, TypeError):
        return ""


def bearer_headers(access_token: Secret) -> dict[str, str]:
    """The headers of every Web API call made with an access token."""
    return {
        "Authorization": f"Bearer {access_token.reveal()}",
        "Accept": "application/json",
        "OData-MaxVersion": "4.0",
        "OData-Version": "4.0",
    }


def failure(
    message: str, code: str, org_url: str, *, token_rejected: bool = False, event: str = "who_am_i"
):
    logger.warning(
        "Dynamics %s failed",
        event,
        extra={"event": f"dynamics.{event}", "outcome": "failure", "code": code, "org": org_url},
    )
    return DynamicsError(message, code=code, token_rejected=token_rejected)


# Ranges Python 3.11 calls global that lead back inside: NAT64, 6to4, IPv4-compatible and


_EMBEDDING_NETWORKS = [
    ipaddress.ip_network(n)
    for n in ("64:ff9b::/96", "64:ff9b:1::/48", "2002::/16", "::/96", "::ffff:0:0/96", "2001::/32")
]


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and any(ip in n for n in _EMBEDDING_NETWORKS):
        return False
    return ip.is_global


class PinnedAdapter(HTTPAdapter):
    """Connects to the address that was checked, yet speaks TLS to the org's name: SNI and the
    certificate check use ``host``, so a second DNS answer (rebinding) is never asked for."""

    def __init__(self, host: str) -> None:
        self._host = host
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs) -> None:
        kwargs.update(server_hostname=self._host, assert_hostname=self._host)
        super().init_poolmanager(*args, **kwargs)


def get(org_url: str, path: str, *, headers: dict[str, str]) -> requests.Response:
    """GET a path of the org: https only, no redirects, a timeout, no proxy or netrc from the
    environment, and (outside the development allow-list) only to the public address checked."""
    session = requests.Session()
    session.trust_env = False
    url = f"{org_url}{path}"
    if org_url not in settings.DYNAMICS_EXTRA_ALLOWED_ORIGINS:
        parts = urlsplit(org_url)
        address = checked_address(org_url)
        literal = f"[{address}]" if ":" in address else address
        url = f"https://{literal}:{parts.port or 443}{path}"
        headers = {**headers, "Host": parts.netloc}
        session.mount("https://", PinnedAdapter(parts.hostname or ""))
    with session:
        return session.get(
            url,
            headers=headers,
            timeout=settings.DYNAMICS_HTTP_TIMEOUT,
            verify=settings.ENTRA_CA_BUNDLE or True,
            allow_redirects=False,
        )


def checked_address(org_url: str) -> str:
    """The org host's address to connect to, once every address it resolves to is public
    (SSRF); raises DynamicsError otherwise."""
    host = urlsplit(org_url).hostname or ""
    try:
        addresses = [info[4][0] for info in socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM)]
    except OSError:
        raise failure(
            f"The Dynamics org {org_url} was not found. Check the Application Id URL.",
            "dns",
            org_url,
        ) from None
    if not addresses or not all(_is_public(a) for a in addresses):
        raise failure(
            f"The Dynamics org {org_url} does not resolve to a public address, so it was not "
            "contacted. Check the Application Id URL.",
            "non_public_address",
            org_url,
        )
    return addresses[0].split("%")[0]
