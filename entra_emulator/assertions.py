"""Client assertions (RFC 7523) at the token endpoint, checked as Entra ID checks them.

`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer` with a JWT
signed RS256 or PS256 by the private key of a certificate uploaded to the app registration,
named by `x5t#S256` (or the legacy SHA-1 `x5t`). Its claims: `iss` = `sub` = the client id
(AADSTS700021 otherwise), `aud` the token endpoint it is posted to (700023), `exp` and `nbf`
around now (700024), a `jti`. An unknown certificate or a bad signature is AADSTS700027. As
Entra does, an assertion may be used again until it expires: MSAL keeps one per application
object for several minutes.
"""

from __future__ import annotations

import base64
import binascii
import json
import time

import jwt

from .errors import AadstsError
from .seed import App, UploadedCertificate

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_SKEW = 300


def _b64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _named_certificate(app: App, header: dict) -> UploadedCertificate | None:
    try:
        if "x5t#S256" in header:
            wanted, attribute = _b64(str(header["x5t#S256"])), "sha256"
        elif "x5t" in header:
            wanted, attribute = _b64(str(header["x5t"])), "sha1"
        else:
            return None
    except (binascii.Error, ValueError):
        return None
    return next((c for c in app.certificates if getattr(c, attribute) == wanted), None)


def authenticate_assertion(app: App, assertion: str, *, token_endpoint: str) -> None:
    """Return when `assertion` authenticates `app` at `token_endpoint`; raise as Entra does."""
    try:
        header = json.loads(_b64(assertion.split(".")[0]))
    except (ValueError, IndexError, binascii.Error):
        raise AadstsError(700027, client_id=app.client_id) from None
    if not isinstance(header, dict) or header.get("alg") not in ("RS256", "PS256"):
        raise AadstsError(700027, client_id=app.client_id)
    certificate = _named_certificate(app, header)
    if certificate is None:
        raise AadstsError(700027, client_id=app.client_id)
    try:
        claims = jwt.decode(
            assertion,
            key=certificate.public_key,
            algorithms=[header["alg"]],
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_aud": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError:
        raise AadstsError(700027, client_id=app.client_id) from None
    if claims.get("iss") != app.client_id or claims.get("sub") != app.client_id:
        raise AadstsError(700021, client_id=app.client_id)
    if claims.get("aud") != token_endpoint:
        raise AadstsError(700023, audience=str(claims.get("aud", "")), expected=token_endpoint)
    now = time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf", claims.get("iat", now))
    if not isinstance(exp, int | float) or not isinstance(nbf, int | float):
        raise AadstsError(700024)
    if exp < now - CLOCK_SKEW or nbf > now + CLOCK_SKEW:
        raise AadstsError(700024)
    if not claims.get("jti"):
        raise AadstsError(700027, client_id=app.client_id)
