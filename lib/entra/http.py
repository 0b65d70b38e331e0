"""One HTTP client and one ``http_cache`` for every MSAL application object of the process.

Confidential MSAL objects are built per call (as Microsoft's ``identity`` does): the shared
``http_cache`` keeps the discovery document, and they never outlive the request, so no object
shared between people ever holds a token. The public ones that only build authorize URLs are
kept per app and tenant (``authorize_application``): they never acquire a token. Every call
to MSAL goes through ``msal_errors``, the one place where MSAL's and requests' exceptions
become EntraErrors.
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import json
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

import msal
import requests
from django.conf import settings

from lib.entra.errors import (
    EntraRejected,
    EntraUnavailable,
    FlowExpired,
    InvalidIdToken,
    Remedy,
)
from lib.entra.types import ORGANIZATIONS, AppCredentials, authority_url

logger = logging.getLogger("dynamics_connect.auth")


class EntraHttpClient:
    """The ``http_client`` MSAL uses: one kept-alive session; CA bundle and timeout per request.

    The session does not read the environment on each call (``trust_env`` off: no netrc, no
    ``REQUESTS_CA_BUNDLE`` overriding the CA bundle, no proxy scan per request). An egress
    proxy still works: ``HTTPS_PROXY`` and ``NO_PROXY`` are read once per origin per process.
    Settings are read at call time.
    """

    def __init__(self) -> None:
        self._session = requests.Session()
        self._session.trust_env = False

    def _options(self, url: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        parts = urlsplit(url)
        kwargs["proxies"] = _environment_proxies(f"{parts.scheme}://{parts.netloc}")
        kwargs["timeout"] = settings.ENTRA_HTTP_TIMEOUT
        kwargs["verify"] = settings.ENTRA_CA_BUNDLE or True
        kwargs["allow_redirects"] = False
        return kwargs

    def get(self, url: str, params=None, headers=None, **kwargs):
        return self._session.get(url, params=params, headers=headers, **self._options(url, kwargs))

    def post(self, url: str, params=None, data=None, headers=None, **kwargs):
        return self._session.post(
            url, params=params, data=data, headers=headers, **self._options(url, kwargs)
        )

    def close(self) -> None:
        """Shared by every application object; never closed by one of them."""


@functools.lru_cache(maxsize=64)
def _environment_proxies(origin: str) -> dict[str, str]:
    """The proxy the environment names for this origin ({} when none, or NO_PROXY covers it)."""
    return requests.utils.get_environ_proxies(origin)


http_client = EntraHttpClient()
_http_cache: dict = {}
_discovery_documents: dict[str, tuple[float, dict[str, Any]]] = {}


def forget_documents() -> None:
    """Forget the discovery documents, throttling state and proxies MSAL and this module keep."""
    _http_cache.clear()
    _discovery_documents.clear()
    _environment_proxies.cache_clear()
    _authorize_application.cache_clear()


def log_failure(step: str, code: str, **fields: Any) -> None:
    logger.warning(
        "Entra ID %s failed",
        step,
        extra={"event": f"entra.{step}", "outcome": "failure", "code": code, **fields},
    )


def _instance_discovery() -> bool:
    """Instance discovery only helps on Microsoft's own hosts; elsewhere it would call out."""
    return settings.ENTRA_AUTHORITY_HOST == "https://login.microsoftonline.com"


@contextlib.contextmanager
def msal_errors(step: str, **log_fields: Any) -> Iterator[None]:
    """MSAL's and requests' exceptions, as EntraErrors (logged once, without secrets).

    MSAL raises ``ValueError`` for a state that does not match the flow and ``RuntimeError``
    for a nonce that does not (both: start again); ``JSONDecodeError`` (a ValueError too) and
    the lookup errors mean Entra ID answered something that is not OAuth.
    """
    try:
        yield
    except json.JSONDecodeError:
        log_failure(step, "invalid_json", **log_fields)
        raise EntraUnavailable(code="invalid_json") from None
    except requests.RequestException as exc:
        code = "timeout" if isinstance(exc, requests.Timeout) else "unreachable"
        log_failure(step, code, **log_fields)
        raise EntraUnavailable(code=code) from None
    except msal.exceptions.MsalServiceError:
        log_failure(step, "http_5xx", **log_fields)
        raise EntraUnavailable(code="http_5xx") from None
    except ValueError:
        log_failure(step, "state", **log_fields)
        raise FlowExpired(code="state") from None
    except RuntimeError as exc:
        code = "auth_time" if "max_age" in str(exc) else "nonce"  # MSAL's two id-token checks
        log_failure(step, code, **log_fields)
        raise InvalidIdToken(code=code) from None
    except (IndexError, KeyError, TypeError, binascii.Error):
        log_failure(step, "malformed_response", **log_fields)
        raise EntraUnavailable(code="malformed_response") from None


def application(
    client_id: str,
    tenant: str,
    *,
    credentials: AppCredentials | None = None,
    token_cache: msal.TokenCache | None = None,
    identity_only: bool = False,
) -> msal.ClientApplication:
    """An MSAL application on this tenant's authority: public without credentials (enough to
    build an authorize URL), confidential with them (token requests). ``identity_only`` keeps
    MSAL from asking for ``offline_access``: a sign-in keeps no refresh token to ask for."""
    log_fields = {"client_id": client_id, "tenant": tenant}
    options = {
        "authority": authority_url(tenant),
        "http_client": http_client,
        "http_cache": _http_cache,
        "instance_discovery": _instance_discovery(),
        "token_cache": token_cache,
        "exclude_scopes": ["offline_access"] if identity_only else None,
    }
    with msal_errors("discovery", **log_fields):
        try:
            if credentials is None:
                return msal.PublicClientApplication(client_id, **options)
            return msal.ConfidentialClientApplication(
                client_id, client_credential=credentials.msal_credential(), **options
            )
        except ValueError as exc:
            if isinstance(exc, json.JSONDecodeError):
                raise
            # The constructor's ValueError: the authority's discovery answered 4xx.
            log_failure("discovery", "AADSTS90002", **log_fields)
            raise EntraRejected(code="AADSTS90002", aadsts=90002, remedy=Remedy.ASK_ADMIN) from None


def authorize_application(
    client_id: str, tenant: str, *, identity_only: bool
) -> msal.PublicClientApplication:
    """The public application that builds this app's authorize URLs, made once per process
    for each app, tenant and authority (it is never given a token, so sharing it is safe)."""
    return _authorize_application(
        client_id, tenant, identity_only, authority_url(tenant), _instance_discovery()
    )


@functools.lru_cache(maxsize=256)
def _authorize_application(
    client_id: str, tenant: str, identity_only: bool, authority: str, instance_discovery: bool
) -> msal.PublicClientApplication:
    return application(client_id, tenant, identity_only=identity_only)


def discovery_document(tenant: str) -> dict[str, Any]:
    """The authority's OpenID configuration, fetched once per process (MSAL keeps its own copy
    for the flows; this one serves browser-facing links). ``{}`` when unreachable, and then not
    asked again for a minute, so pages that only link to Entra ID stay fast."""
    authority = authority_url(tenant)
    fetched_at, document = _discovery_documents.get(authority, (0.0, None))
    if document is None or (not document and time.time() - fetched_at > 60):
        try:
            response = http_client.get(f"{authority}/v2.0/.well-known/openid-configuration")
            response.raise_for_status()
            document = dict(response.json())
        except (requests.RequestException, ValueError, TypeError):
            log_failure("discovery", "openid_configuration")
            document = {}
        _discovery_documents[authority] = (time.time(), document)
    return document


def sign_out_url(tenant: str, post_logout_redirect_uri: str) -> str:
    """Entra ID's end-session URL for this tenant, from its discovery document."""
    endpoint = discovery_document(tenant).get("end_session_endpoint") or (
        f"{authority_url(tenant)}/oauth2/v2.0/logout"  # right for Entra ID itself
    )
    return f"{endpoint}?{urlencode({'post_logout_redirect_uri': post_logout_redirect_uri})}"


def error_lookup_url(aadsts: int | None) -> str:
    """Microsoft's own page about an AADSTS code, on the authority's browser-facing origin."""
    if aadsts is None:
        return ""
    sign_in_page = discovery_document(ORGANIZATIONS).get("authorization_endpoint", "")
    parts = urlsplit(str(sign_in_page))
    origin = f"{parts.scheme}://{parts.netloc}" if parts.netloc else settings.ENTRA_AUTHORITY_HOST
    return f"{origin}/error?code={aadsts}"
