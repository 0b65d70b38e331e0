"""RS256 JWTs shaped like Entra's: v2.0 id tokens and v1.0 access tokens."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

#: Microsoft Graph's application id: the audience of a token when only OIDC scopes are asked.
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_SCOPE = "User.Read profile openid email"
ID_TOKEN_LIFETIME = 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def client_info(oid: str, tid: str) -> str:
    """What Entra returns for `client_info=1`; MSAL builds `home_account_id` from it."""
    return b64url(json.dumps({"uid": oid, "utid": tid}, separators=(",", ":")).encode())


def pairwise_sub(client_id: str, oid: str) -> str:
    """Entra's `sub` is stable per (application, user) and differs between applications."""
    return b64url(hashlib.sha256(f"{client_id}{oid}".encode()).digest())


class Signer:
    """Signs tokens with the emulator's key and verifies the access tokens it issued."""

    def __init__(self, key: rsa.RSAPrivateKey, kid: str) -> None:
        self._key = key
        self.kid = kid

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(
            dict(claims), self._key, algorithm="RS256", headers={"typ": "JWT", "kid": self.kid}
        )

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        jwk = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.kid,
                    "alg": "RS256",
                    "n": jwk["n"],
                    "e": jwk["e"],
                }
            ]
        }

    def verify(self, token: str, audiences: list[str]) -> dict[str, Any]:
        """Decode a token we signed; raises `jwt.InvalidTokenError` on any problem."""
        return jwt.decode(
            token,
            self._key.public_key(),
            algorithms=["RS256"],
            audience=audiences,
            options={"require": ["exp", "aud", "oid", "tid"]},
        )


def with_overrides(claims: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge test overrides into claims; an override of `None` removes the claim."""
    for name, value in (overrides or {}).items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def id_token_claims(
    *,
    issuer: str,
    client_id: str,
    oid: str,
    tid: str,
    upn: str,
    name: str,
    sid: str,
    nonce: str | None,
    now: int,
    auth_time: int | None = None,
) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "aud": client_id,
        "iss": issuer,
        "iat": now,
        "nbf": now,
        "exp": now + ID_TOKEN_LIFETIME,
        "aio": _opaque(40),
        "name": name,
        "oid": oid,
        "preferred_username": upn,
        "rh": f"1.{_opaque(60)}.",
        "sid": sid,
        "sub": pairwise_sub(client_id, oid),
        "tid": tid,
        "uti": _opaque(16),
        "ver": "2.0",
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if auth_time is not None:
        claims["auth_time"] = auth_time
    return claims


def access_token_claims(
    *,
    audience: str,
    scp: str,
    client_id: str,
    oid: str,
    tid: str,
    upn: str,
    name: str,
    now: int,
    lifetime: int,
) -> dict[str, Any]:
    """A v1.0 access token, as Entra issues for Dataverse (`aud` is the org URL)."""
    return {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tid}/",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "acr": "1",
        "aio": _opaque(40),
        "amr": ["pwd"],
        "appid": client_id,
        "appidacr": "1",
        "name": name,
        "oid": oid,
        "puid": uuid.UUID(oid).hex[:16].upper(),
        "scp": scp,
        "sub": pairwise_sub(audience, oid),
        "tid": tid,
        "unique_name": upn,
        "upn": upn,
        "uti": _opaque(16),
        "ver": "1.0",
    }


def _opaque(nbytes: int) -> str:
    return b64url(secrets.token_bytes(nbytes))
