"""Plain request and response values the endpoints work with (no sockets here)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from email.message import Message
from functools import cached_property
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, unquote

from .state import Fault


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: Message
    body: bytes
    secure: bool
    route: dict[str, str] = field(default_factory=dict)
    trace_id: str = ""
    correlation_id: str = ""
    fault: Fault | None = None

    @cached_property
    def params(self) -> dict[str, str]:
        """Query string and form body together (the body wins); the first of repeated keys."""
        merged = _first_values(self.query)
        if self.headers.get_content_type() == "application/x-www-form-urlencoded":
            merged.update(_first_values(self.body.decode("utf-8", "replace")))
        return merged

    @cached_property
    def cookies(self) -> dict[str, str]:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except CookieError:
            return {}
        return {name: morsel.value for name, morsel in jar.items()}

    def basic_credentials(self) -> tuple[str, str] | None:
        """client_secret_basic: `Authorization: Basic base64(urlencoded id:urlencoded secret)`."""
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        return (unquote(user), unquote(password)) if sep else None

    @property
    def client_id(self) -> str | None:
        basic = self.basic_credentials()
        return self.params.get("client_id") or (basic[0] if basic else None)

    def json(self) -> Any:
        """The JSON body; raises ValueError when it is not JSON."""
        return json.loads(self.body.decode("utf-8") or "null")


def _first_values(qs: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in parse_qsl(qs, keep_blank_values=True):
        values.setdefault(key, value)
    return values


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    outcome: str = "ok"


def json_response(
    status: int,
    payload: Any,
    *,
    outcome: str = "ok",
    headers: list[tuple[str, str]] | None = None,
    content_type: str = "application/json; charset=utf-8",
) -> Response:
    return Response(
        status,
        json.dumps(payload).encode(),
        [("Content-Type", content_type), *(headers or [])],
        outcome,
    )


def html_response(status: int, page: str, *, outcome: str = "ok") -> Response:
    return Response(
        status,
        page.encode(),
        [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Cache-Control", "no-store"),
            ("X-Frame-Options", "DENY"),
        ],
        outcome,
    )


def redirect(location: str, *, outcome: str = "ok") -> Response:
    return Response(302, b"", [("Location", location), ("Cache-Control", "no-store")], outcome)
