"""The EntraError family: a code, a correlation id and a Remedy; never a sentence.

``code`` is short and loggable (``AADSTS7000215``, ``access_denied``, ``state``, ``timeout``);
``aadsts`` is the number when Entra ID named one. ``remedy`` is what the protocol alone says
should happen next; the product's table of AADSTS codes (words per reader) may know better.
``from_token_endpoint`` tells an answer of Entra ID's token endpoint, which proves something
about the credentials, from an error that came back through the browser, where anyone can
write it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from lib.entra.types import Purpose

_AADSTS = re.compile(r"AADSTS(\d+)")
_CORRELATION = re.compile(r"Correlation ID: ([0-9a-fA-F-]{36})")


class Remedy(StrEnum):
    START_AGAIN = "start_again"
    FIX_APP_CREDENTIALS = "fix_app_credentials"
    REAUTHORIZE = "reauthorize"
    ASK_ADMIN = "ask_admin"
    RETRY = "retry"


class EntraError(Exception):
    """A flow, a refresh or a token request that did not work."""

    default_remedy = Remedy.START_AGAIN

    def __init__(
        self,
        *,
        code: str,
        correlation_id: str = "",
        remedy: Remedy | None = None,
        aadsts: int | None = None,
        from_token_endpoint: bool = False,
        claims: str = "",
    ) -> None:
        super().__init__(code)
        self.code = code
        self.correlation_id = correlation_id
        self.remedy = remedy or self.default_remedy
        self.aadsts = aadsts
        self.from_token_endpoint = from_token_endpoint
        # A Conditional Access claims challenge: to send with the next authorization.
        self.claims = claims


class FlowExpired(EntraError):
    """No usable flow for this callback: lost session, replay, forged or stale state.

    ``purpose`` and ``context`` say which flow it was when the session still knows it (expired,
    already used, or answered on the wrong redirect URI).
    """

    def __init__(
        self,
        *,
        code: str,
        purpose: Purpose | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(code=code)
        self.purpose = purpose
        self.context = dict(context or {})


class SignInCancelled(EntraError):
    """The person cancelled at Microsoft (``access_denied``, or declined consent)."""


class EntraRejected(EntraError):
    """Entra ID answered with an error (usually an AADSTS code)."""


class EntraUnavailable(EntraError):
    """Entra ID did not answer, answered 5xx, or answered something that is not OAuth."""

    default_remedy = Remedy.RETRY


class InvalidIdToken(EntraError):
    """The id token failed validation (signature, aud, iss, tid, times, oid)."""


class WrongTenant(InvalidIdToken):
    """The id token is valid but from another tenant than the flow's."""

    default_remedy = Remedy.ASK_ADMIN


class FlowRefused(EntraError):
    """The relying party declined to complete the flow (raised by a purpose's handler, for
    reasons of its own: its pending request is gone, or the person may not complete it)."""


# What the OAuth ``error`` alone says about the next step (RFC 6749 5.2, OIDC 3.1.2.6).
_REMEDY_OF_OAUTH_ERROR = {
    "invalid_client": Remedy.FIX_APP_CREDENTIALS,
    "unauthorized_client": Remedy.FIX_APP_CREDENTIALS,
    "invalid_grant": Remedy.REAUTHORIZE,
    "consent_required": Remedy.ASK_ADMIN,
}


def error_from_response(response: Mapping[str, Any], *, from_token_endpoint: bool) -> EntraError:
    """An Entra ID error (redirect parameters or token-endpoint JSON) as an EntraError."""
    error = str(response.get("error", ""))
    description = str(response.get("error_description", ""))
    codes = response.get("error_codes")
    if not isinstance(codes, list) or not codes:
        codes = _AADSTS.findall(description)[:1]
    try:
        aadsts = int(codes[0]) if codes else None
    except (TypeError, ValueError):
        aadsts = None
    correlation = str(response.get("correlation_id", "")) or next(
        iter(_CORRELATION.findall(description)), ""
    )
    if error == "access_denied" and aadsts in (None, 65004):
        return SignInCancelled(code="access_denied", correlation_id=correlation)
    if error in {"temporarily_unavailable", "server_error"}:
        return EntraUnavailable(code=error, correlation_id=correlation, aadsts=aadsts)
    claims = response.get("claims")
    return EntraRejected(
        code=f"AADSTS{aadsts}" if aadsts else (error or "unknown_error"),
        correlation_id=correlation,
        remedy=_REMEDY_OF_OAUTH_ERROR.get(error, Remedy.START_AGAIN),
        aadsts=aadsts,
        from_token_endpoint=from_token_endpoint,
        claims=claims if isinstance(claims, str) and len(claims) <= 4000 else "",
    )
