"""`/_emulator/*`: what tests use to shape the emulator (only with `--test-api`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from .seed import SeedError, expand
from .state import EmulatorState, Fault, Settings
from .web import Request, Response, json_response

#: Which fault actions make sense where.
_BASIC_ACTIONS = frozenset({"status", "delay", "body"})
FAULT_ACTIONS: dict[str, frozenset[str]] = {
    "token": _BASIC_ACTIONS
    | {"aadsts", "claims", "access_token_claims", "response", "claims_challenge"},
    "authorize": _BASIC_ACTIONS | {"aadsts"},
    "adminconsent": _BASIC_ACTIONS | {"aadsts"},
    "discovery": _BASIC_ACTIONS | {"aadsts"},
    "jwks": _BASIC_ACTIONS,
    "whoami": _BASIC_ACTIONS | {"challenge", "throttle"},
    "webapi": _BASIC_ACTIONS | {"challenge", "throttle"},
    "tables": _BASIC_ACTIONS | {"throttle"},
}
_ALL_ACTIONS = (
    "aadsts",
    "status",
    "delay",
    "body",
    "claims",
    "access_token_claims",
    "response",
    "challenge",
    "throttle",
    "claims_challenge",
)


class BadRequest(ValueError):
    pass


def apps(emu: EmulatorState, req: Request) -> Response:
    app = _expanded(emu, req)
    emu.directory = emu.directory.merged({"apps": [app]})
    return json_response(201, {"client_id": app.get("client_id")})


def certificates(emu: EmulatorState, req: Request) -> Response:
    """Upload a public certificate to an app registration, as the customer does in the portal
    (Certificates & secrets > Certificates > Upload): `{"client_id": ..., "pem": ...}`."""
    body = _body(req)
    client_id = str(body.get("client_id", "")).lower()
    count = upload_certificate(emu, client_id, str(body.get("pem", "")))
    return json_response(201, {"client_id": client_id, "certificates": count})


def upload_certificate(emu: EmulatorState, client_id: str, pem: str) -> int:
    """Add a certificate to an app registration; how many it has now (SeedError if not PEM)."""
    apps = emu.directory.raw.get("apps", [])
    raw_app = next((a for a in apps if str(a.get("client_id")).lower() == client_id), None)
    if raw_app is None:
        raise BadRequest(f"no app with client_id {client_id!r}")
    listed = [*raw_app.get("certificates", []), {"pem": pem}]
    emu.directory = emu.directory.merged({"apps": [{**raw_app, "certificates": listed}]})
    return len(listed)


def seed(emu: EmulatorState, req: Request) -> Response:
    emu.directory = emu.directory.merged(_expanded(emu, req))
    directory = emu.directory
    return json_response(
        200,
        {
            "tenants": len(directory.tenants),
            "apps": len(directory.apps),
            "dynamics_orgs": len(directory.orgs),
        },
    )


def faults(emu: EmulatorState, req: Request) -> Response:
    fault = parse_fault(_body(req))
    emu.faults.append(fault)
    return json_response(201, dataclasses.asdict(fault))


def config(emu: EmulatorState, req: Request) -> Response:
    body = _body(req)
    names = {f.name for f in dataclasses.fields(Settings)}
    for name, value in body.items():
        if name not in names:
            raise BadRequest(f"unknown setting {name!r}; known: {', '.join(sorted(names))}")
        nullable = name == "access_token_lifetime"
        if not (_is_int(value) and value >= 1) and not (nullable and value is None):
            raise BadRequest(f"{name} must be a whole number of seconds >= 1")
    for name, value in body.items():
        setattr(emu.settings, name, value)
    return json_response(200, dataclasses.asdict(emu.settings))


def revoke(emu: EmulatorState, req: Request) -> Response:
    reference = _body(req).get("user")
    user = emu.directory.user(reference) if isinstance(reference, str) else None
    if user is None:
        raise BadRequest(f"no user {reference!r} (give a UPN or an object id)")
    return json_response(200, {"revoked": emu.revoke(user)})


def reset(emu: EmulatorState, req: Request) -> Response:
    emu.reset()
    return json_response(200, {})


def log(emu: EmulatorState, req: Request) -> Response:
    return json_response(200, emu.log)


def guarded(
    handler: Callable[[EmulatorState, Request], Response],
) -> Callable[[EmulatorState, Request], Response]:
    """Turn bad input into a 400 JSON answer that says what is wrong."""

    def run(emu: EmulatorState, req: Request) -> Response:
        try:
            return handler(emu, req)
        except (BadRequest, SeedError) as exc:
            return json_response(
                400, {"error": "bad_request", "message": str(exc)}, outcome="bad_request"
            )

    return run


def parse_fault(body: dict[str, Any]) -> Fault:
    allowed = {"endpoint", "count", "grant_type", "client_id", "error", *_ALL_ACTIONS}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown fault key(s) {', '.join(unknown)}")
    endpoint = body.get("endpoint")
    if endpoint not in FAULT_ACTIONS:
        raise BadRequest(f"endpoint must be one of {', '.join(FAULT_ACTIONS)}")
    actions = [a for a in _ALL_ACTIONS if a in body]
    if len(actions) != 1:
        raise BadRequest(f"give exactly one action of {', '.join(_ALL_ACTIONS)}")
    action = actions[0]
    if action not in FAULT_ACTIONS[endpoint]:
        raise BadRequest(f"{action!r} is not a fault the {endpoint} endpoint can have")
    value = body[action]
    checks: dict[str, tuple[bool, str]] = {
        "aadsts": (_is_int(value) and value > 0, "an AADSTS number such as 7000215"),
        "status": (_is_int(value) and 400 <= value <= 599, "an HTTP status from 400 to 599"),
        "delay": (_is_number(value) and 0 < value <= 60, "seconds, more than 0 and at most 60"),
        "body": (isinstance(value, str), "a string"),
        "claims": (isinstance(value, dict), "an object of claims"),
        "access_token_claims": (isinstance(value, dict), "an object of claims"),
        "response": (isinstance(value, dict), "an object of token-response fields"),
        "throttle": (_is_int(value) and 1 <= value <= 3600, "the Retry-After, 1 to 3600 s"),
        "claims_challenge": (isinstance(value, str) and value, "the claims JSON, as a string"),
        "challenge": (
            value is None or isinstance(value, str),
            "the WWW-Authenticate header to send (a string), or null for none",
        ),
    }
    ok, expected = checks[action]
    if not ok:
        raise BadRequest(f"{action} must be {expected}")
    if "error" in body and (action != "aadsts" or not isinstance(body["error"], str)):
        raise BadRequest("error (a string) only goes with aadsts")
    count = body.get("count", 1)
    if not (_is_int(count) and count >= 1):
        raise BadRequest("count must be a whole number >= 1")
    for key in ("grant_type", "client_id"):
        if not isinstance(body.get(key, ""), str):
            raise BadRequest(f"{key} must be a string")
    return Fault(
        endpoint=endpoint,
        action=action,
        value=value,
        count=count,
        error=body.get("error"),
        client_id=body.get("client_id"),
        grant_type=body.get("grant_type"),
    )


def _body(req: Request) -> dict[str, Any]:
    try:
        body = req.json()
    except ValueError as exc:
        raise BadRequest("the body must be JSON") from exc
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _expanded(emu: EmulatorState, req: Request) -> dict[str, Any]:
    return expand(_body(req), emulator_url=emu.origin, where="body")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
