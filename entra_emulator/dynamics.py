"""The Dynamics 365 Web API (its service root and `WhoAmI`), for every seeded org at once.

All orgs are served by this one process, so the org is the request's `Host` header:
`https://127.0.0.1:8443` and `https://localhost:8443` can be two different orgs. A request
without a valid token gets 401 with the challenge Microsoft's own SDKs discover the org's
tenant from: `WWW-Authenticate: Bearer authorization_uri=https://{authority}/{tenant}/oauth2/
authorize, resource_id={org}/` (a `challenge` fault replaces that header, or drops it).
"""

from __future__ import annotations

import uuid

import jwt

from .seed import normalize_origin
from .state import EmulatorState
from .web import Request, Response, json_response

_ODATA_HEADERS = [("OData-Version", "4.0")]
_WHOAMI_CONTEXT = "api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse"


def service_root(emu: EmulatorState, req: Request) -> Response:
    """`GET /api/data/v9.2/`: the entity sets (none are listed here), for a valid token."""
    org, _, refused = _authenticated(emu, req)
    if refused is not None:
        return refused
    return json_response(
        200,
        {"@odata.context": f"{org.url}/api/data/v9.2/$metadata", "value": []},
        headers=_ODATA_HEADERS,
        content_type="application/json; odata.metadata=minimal",
    )


# Entity sets a connection check reads, with the entity and its privilege's name.
TABLES = {
    "leads": ("lead", "Lead", 4),
    "contacts": ("contact", "Contact", 2),
    "accounts": ("account", "Account", 1),
    "opportunities": ("opportunity", "Opportunity", 3),
    "campaigns": ("campaign", "Campaign", 4400),
}


def table_read(emu: EmulatorState, req: Request) -> Response:
    """`GET /api/data/v9.2/{entity set}?$top=1`: one row, or 403 naming the missing privilege
    for a member whose seed roles lack Read on that table (as Dataverse words it)."""
    org, claims, refused = _authenticated(emu, req)
    if refused is not None:
        return refused
    entity, label, otc = TABLES[req.route["entity_set"]]
    user = emu.directory.user(claims.get("oid", ""))
    if user is None or not user.is_one_of(org.members):
        return json_response(
            403,
            {
                "error": {
                    "code": "0x80072560",
                    "message": "The user is not a member of the organization.",
                }
            },
            outcome="0x80072560",
            headers=_ODATA_HEADERS,
        )
    if not org.may(user, f"prvRead{label}"):
        return json_response(
            403,
            {
                "error": {
                    "code": "0x80042f09",
                    "message": f"Principal user (Id={user.oid}, type=8, roleCount=1, "
                    f"accessMode=0), is missing prvRead{label} privilege on OTC={otc} for "
                    f"entity '{entity}'.",
                }
            },
            outcome="0x80042f09",
            headers=_ODATA_HEADERS,
        )
    row = {f"{entity}id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{org.url}#{entity}"))}
    return json_response(
        200,
        {
            "@odata.context": f"{org.url}/api/data/v9.2/$metadata#{req.route['entity_set']}",
            "value": [row],
        },
        headers=_ODATA_HEADERS,
        content_type="application/json; odata.metadata=minimal",
    )


def whoami(emu: EmulatorState, req: Request) -> Response:
    org, claims, refused = _authenticated(emu, req)
    if refused is not None:
        return refused
    user = emu.directory.user(claims["oid"])
    if user is None or not user.is_one_of(org.members):
        return json_response(
            403,
            {
                "error": {
                    "code": "0x80072560",
                    "message": "The user is not a member of the organization.",
                }
            },
            outcome="0x80072560",
            headers=_ODATA_HEADERS,
        )
    return json_response(
        200,
        {
            "@odata.context": f"{org.url}/{_WHOAMI_CONTEXT}",
            "BusinessUnitId": org.business_unit_id,
            "UserId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{org.url}#{user.oid}")),
            "OrganizationId": org.organization_id,
        },
        headers=_ODATA_HEADERS,
        content_type="application/json; odata.metadata=minimal",
    )


def _authenticated(emu: EmulatorState, req: Request):
    """The org the Host names and the bearer token's claims, or the answer refusing them
    (a `throttle` fault: 429 with Retry-After, as Dataverse's service protection answers)."""
    if req.fault is not None and req.fault.action == "throttle":
        throttled = json_response(
            429,
            {
                "error": {
                    "code": "0x80072322",
                    "message": "Number of requests exceeded the limit of 6000 over time window "
                    "of 300 seconds.",
                }
            },
            outcome="throttled",
            headers=[("Retry-After", str(req.fault.value))],
        )
        return None, None, throttled
    host = req.headers.get("Host", "")
    origin = normalize_origin(f"https://{host}")
    org = emu.directory.orgs.get(origin) if origin else None
    if org is None:
        return (
            None,
            None,
            json_response(
                404,
                {
                    "error": {
                        "code": "0x80040217",
                        "message": f"No Dynamics 365 organization is served at {origin or host}.",
                    }
                },
                outcome="unknown_org",
            ),
        )

    scheme, _, bearer = req.headers.get("Authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not bearer.strip():
            raise _MissingToken
        claims = emu.signer.verify(bearer.strip(), [org.url, f"{org.url}/"])
    except (jwt.InvalidTokenError, _MissingToken) as exc:
        challenge = (
            f"Bearer authorization_uri={emu.origin}/{org.tenant_id}/oauth2/authorize, "
            f"resource_id={org.url}/"
        )
        if req.fault is not None and req.fault.action == "challenge":
            challenge = req.fault.value
        headers = [("WWW-Authenticate", challenge)] if challenge is not None else []
        return org, None, Response(401, b"", headers, outcome=_reason(exc))
    return org, claims, None


class _MissingToken(Exception):
    pass


def _reason(exc: Exception) -> str:
    if isinstance(exc, _MissingToken):
        return "no_token"
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "expired_token"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong_audience"
    return "invalid_token"
