"""Id-token validation, because MSAL 1.39 only decodes the id token (OIDC Core 3.1.3.7).

RS256 signature against the authority's JWKS (cached per process for at most a day, and
refetched at most once a minute for an unknown ``kid``: key rollover), ``aud`` and ``azp``
(our client id), ``iss`` (exactly ``{ENTRA_AUTHORITY_HOST}/{tid}/v2.0``), ``tid`` (the flow's
tenant, when the flow has one), ``exp``/``nbf``/``iat`` with a small skew, ``sub`` and ``oid``.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import requests
from django.conf import settings

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
    work tenant.
    """
    if not id_token:
        log_failure("id_token", "missing", client_id=client_id)
        raise InvalidIdToken(code="id_token_missing")
    try:
        unverified = jwt.api_jwt.decode_complete(id_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        log_failure("id_token", "malformed", client_id=client_id)
        raise InvalidIdToken(code="id_token_malformed") from None
    header, payload = unverified["header"], unverified["payload"]
    tid = str(payload.get("tid", "")) if isinstance(payload, dict) else ""
    if not is_tenant_id(tid):
        log_failure("id_token", "tid", client_id=client_id)
        raise InvalidIdToken(code="id_token_tid")
    if header.get("alg") != "RS256":
        log_failure("id_token", "alg", client_id=client_id)
        raise InvalidIdToken(code="id_token_alg")
    key = _signing_key(tenant, str(header.get("kid", "")))
    try:
        claims = jwt.decode(
            id_token,
            key=key,
            algorithms=["RS256"],
            audience=client_id,
            issuer=f"{settings.ENTRA_AUTHORITY_HOST}/{tid}/v2.0",
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["aud", "iss", "exp", "iat", "sub"]},
        )
    except jwt.InvalidAudienceError:
        _reject("aud", client_id)
    except jwt.InvalidIssuerError:
        _reject("iss", client_id)
    except jwt.ExpiredSignatureError:
        _reject("exp", client_id)
    except jwt.ImmatureSignatureError as exc:
        _reject("iat" if "(iat)" in str(exc) else "nbf", client_id)
    except jwt.InvalidSignatureError:
        _reject("signature", client_id)
    except jwt.PyJWTError:
        _reject("claims", client_id)
    if claims["aud"] != client_id or claims.get("azp", client_id) != client_id:
        _reject("aud", client_id)
    if not claims.get("oid"):
        _reject("oid", client_id)
    if is_tenant_id(tenant) and tid != tenant:
        log_failure("id_token", "tenant_mismatch", client_id=client_id, tenant=tid)
        raise WrongTenant(code="tenant_mismatch")
    return claims


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
