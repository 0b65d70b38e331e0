"""Id-token validation, because MSAL 1.39 only decodes the id token (OIDC Core 3.1.3.7).

The token is parsed once. RS256 signature (PyJWT's RSA algorithm, over the parsed bytes)
against the authority's JWKS (cached per process for at most a day, and refetched at most once
a minute for an unknown ``kid``: key rollover), ``aud`` and ``azp`` (our client id), ``iss``
(exactly ``{ENTRA_AUTHORITY_HOST}/{tid}/v2.0``), ``tid`` (the flow's tenant, when the flow has
one), ``exp``/``nbf``/``iat`` with a small skew, ``sub`` and ``oid``.
"""

from __future__ import annotations

import binascii
import json
import re
import time
from typing import Any

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from django.conf import settings
from jwt.algorithms import RSAAlgorithm
from jwt.utils import base64url_decode

from lib.entra.errors import EntraUnavailable, InvalidIdToken, WrongTenant
from lib.entra.http import http_client, log_failure
from lib.entra.types import authority_url, is_tenant_id

CLOCK_SKEW_SECONDS = 120
# A kid we have not seen triggers one JWKS refetch (key rollover), at most this often.
_JWKS_MIN_REFETCH_SECONDS = 60
# A key set is trusted this long: a key Microsoft withdraws stops verifying within a day.
JWKS_MAX_AGE_SECONDS = 24 * 3600
_jwks: dict[str, tuple[float, dict[str, jwt.PyJWK]]] = {}


def forget_keys() -> None:
    _jwks.clear()


def validate_id_token(id_token: str, *, client_id: str, tenant: str) -> dict[str, Any]:
    """The claims of a valid id token for this client; InvalidIdToken (or WrongTenant) if not.

    ``tenant`` is the flow's tenant: a GUID pins ``tid`` to it; ``organizations`` accepts any
    work tenant. The token is parsed once: its header names the key, its ``tid`` the issuer,
    and the signature is then checked over the very bytes that were parsed.
    """
    if not id_token:
        log_failure("id_token", "missing", client_id=client_id)
        raise InvalidIdToken(code="id_token_missing")
    header, claims, signing_input, signature = _parse(id_token, client_id)
    tid = str(claims.get("tid", ""))
    if not is_tenant_id(tid):
        log_failure("id_token", "tid", client_id=client_id)
        raise InvalidIdToken(code="id_token_tid")
    if header.get("alg") != "RS256":
        log_failure("id_token", "alg", client_id=client_id)
        raise InvalidIdToken(code="id_token_alg")
    key = _signing_key(tenant, str(header.get("kid", "")))
    public_key = key.key
    if not isinstance(public_key, RSAPublicKey) or not _RS256.verify(
        signing_input, public_key, signature
    ):
        _reject("signature", client_id)
    issuer = f"{settings.ENTRA_AUTHORITY_HOST}/{tid}/v2.0"
    _check_claims(claims, client_id=client_id, issuer=issuer)
    if is_tenant_id(tenant) and tid != tenant:
        log_failure("id_token", "tenant_mismatch", client_id=client_id, tenant=tid)
        raise WrongTenant(code="tenant_mismatch")
    return claims


_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_RS256 = RSAAlgorithm(RSAAlgorithm.SHA256)


def _parse(id_token: str, client_id: str) -> tuple[dict, dict[str, Any], bytes, bytes]:
    """Header, claims, signed bytes and signature of a compact JWS (RFC 7515 7.1), or
    InvalidIdToken: three unpadded base64url segments, the first two JSON objects."""
    segments = id_token.split(".")
    if len(segments) != 3 or not all(_SEGMENT.fullmatch(part) for part in segments):
        log_failure("id_token", "malformed", client_id=client_id)
        raise InvalidIdToken(code="id_token_malformed")
    try:
        header, claims = (json.loads(base64url_decode(part)) for part in segments[:2])
        signature = base64url_decode(segments[2])
    except (ValueError, binascii.Error):
        header = claims = None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        log_failure("id_token", "malformed", client_id=client_id)
        raise InvalidIdToken(code="id_token_malformed")
    return header, claims, f"{segments[0]}.{segments[1]}".encode(), signature


def _check_claims(claims: dict[str, Any], *, client_id: str, issuer: str) -> None:
    """OIDC Core 3.1.3.7: ``aud`` is exactly our client (one audience: a token also meant for
    another client is refused, and so is an ``azp`` of another), ``iss`` the tenant's issuer,
    ``exp``/``nbf``/``iat`` numbers within CLOCK_SKEW_SECONDS, ``sub`` and ``oid`` present."""
    times = [claims.get(name) for name in ("exp", "iat")] + [claims.get("nbf", 0)]
    if any(isinstance(t, bool) or not isinstance(t, int | float) for t in times):
        _reject("claims", client_id)
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        _reject("claims", client_id)
    if claims.get("aud") != client_id or claims.get("azp", client_id) != client_id:
        _reject("aud", client_id)
    if claims.get("iss") != issuer:
        _reject("iss", client_id)
    now = time.time()
    if claims["exp"] <= now - CLOCK_SKEW_SECONDS:
        _reject("exp", client_id)
    if claims.get("nbf", 0) > now + CLOCK_SKEW_SECONDS:
        _reject("nbf", client_id)
    if claims["iat"] > now + CLOCK_SKEW_SECONDS:
        _reject("iat", client_id)
    if not claims.get("oid"):
        _reject("oid", client_id)


def _reject(claim: str, client_id: str) -> None:
    log_failure("id_token", claim, client_id=client_id)
    raise InvalidIdToken(code=f"id_token_{claim}")


def _signing_key(tenant: str, kid: str) -> jwt.PyJWK:
    """The JWKS key with this ``kid``; refetches the key set once if the kid is new (rotation)."""
    jwks_uri = f"{authority_url(tenant)}/discovery/v2.0/keys"
    fetched_at, keys = _jwks.get(jwks_uri, (0.0, {}))
    age = time.time() - fetched_at
    if age > JWKS_MAX_AGE_SECONDS or (kid not in keys and age > _JWKS_MIN_REFETCH_SECONDS):
        keys = _fetch_jwks(jwks_uri)
        _jwks[jwks_uri] = (time.time(), keys)
    if kid not in keys:
        log_failure("id_token", "unknown_kid")
        raise InvalidIdToken(code="id_token_kid")
    return keys[kid]


def _fetch_jwks(jwks_uri: str) -> dict[str, jwt.PyJWK]:
    try:
        response = http_client.get(jwks_uri)
        response.raise_for_status()
        key_set = jwt.PyJWKSet.from_dict(response.json())
    except requests.RequestException as exc:
        log_failure("jwks", "timeout" if isinstance(exc, requests.Timeout) else "unreachable")
        raise EntraUnavailable(code="jwks_unreachable") from None
    except (ValueError, jwt.PyJWTError):
        log_failure("jwks", "invalid_jwks")
        raise EntraUnavailable(code="jwks_invalid") from None
    return {key.key_id: key for key in key_set.keys if key.key_id}
