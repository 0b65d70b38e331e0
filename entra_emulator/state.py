"""The emulator's runtime state: sessions, codes, refresh tokens, consents, faults, the log."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .seed import Directory, User
from .tokens import Signer


@dataclass
class Session:
    """A browser's sign-in (the ESTSAUTH cookie)."""

    user: User
    sid: str = field(default_factory=lambda: str(uuid.uuid4()))
    authenticated_at: float = field(default_factory=time.time)


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    code_challenge: str | None
    code_challenge_method: str | None
    nonce: str | None
    user: User
    sid: str
    issued_at: float
    redeemed: bool = False
    # When the user last typed their credentials; in the id token when max_age was asked.
    auth_time: int | None = None


@dataclass
class RefreshToken:
    client_id: str
    user: User
    scopes: tuple[str, ...]
    sid: str
    issued_at: float
    expires_at: float
    revoked_at: float | None = None


@dataclass
class Fault:
    """One injected behaviour for the next `count` matching requests."""

    endpoint: str
    # aadsts | status | delay | body | claims | access_token_claims | response | challenge
    action: str
    value: Any
    count: int = 1
    error: str | None = None
    client_id: str | None = None
    grant_type: str | None = None

    def matches(self, endpoint: str, client_id: str | None, grant_type: str | None) -> bool:
        return (
            self.endpoint == endpoint
            and (self.client_id is None or self.client_id.lower() == (client_id or "").lower())
            and (self.grant_type is None or self.grant_type == grant_type)
        )


@dataclass
class Settings:
    """Global overrides set through the test API."""

    access_token_lifetime: int | None = None
    code_lifetime: int = 600
    refresh_token_lifetime: int = 90 * 24 * 3600


class EmulatorState:
    """Everything the endpoints share. Guard every use with `lock`."""

    def __init__(
        self,
        directory: Directory,
        *,
        signer: Signer,
        origin: str,
        browser_origin: str,
        test_api: bool,
    ) -> None:
        self.lock = threading.RLock()
        self.signer = signer
        self.origin = origin
        self.browser_origin = browser_origin
        self.test_api = test_api
        self.initial_directory = directory
        self.reset()

    def reset(self) -> None:
        """Back to the seed as loaded at start, with nobody signed in and nothing issued.

        A request still in flight (a delayed one whose client gave up) belongs to the old
        generation: it is neither logged nor answered into the new one."""
        self.generation = getattr(self, "generation", 0) + 1
        self.directory = self.initial_directory
        self.codes: dict[str, AuthCode] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.sessions: dict[str, Session] = {}
        self.consents: dict[tuple[str, str], set[str]] = {}
        # Tenant-wide consents an admin granted: (tenant id, client id) -> permissions.
        self.admin_consents: dict[tuple[str, str], set[str]] = {}
        self.faults: list[Fault] = []
        self.settings = Settings()
        self.log: list[dict[str, Any]] = []

    def take_fault(
        self, endpoint: str, client_id: str | None, grant_type: str | None
    ) -> Fault | None:
        for fault in self.faults:
            if fault.matches(endpoint, client_id, grant_type):
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def start_session(self, user: User) -> tuple[str, Session]:
        cookie = secrets.token_urlsafe(32)
        session = self.sessions[cookie] = Session(user)
        return cookie, session

    def issue_code(self, code: AuthCode) -> str:
        value = secrets.token_urlsafe(64)
        self.codes[value] = code
        return value

    def issue_refresh_token(
        self, *, client_id: str, user: User, scopes: tuple[str, ...], sid: str
    ) -> str:
        now = time.time()
        value = "1." + secrets.token_urlsafe(96)
        self.refresh_tokens[value] = RefreshToken(
            client_id=client_id,
            user=user,
            scopes=scopes,
            sid=sid,
            issued_at=now,
            expires_at=now + self.settings.refresh_token_lifetime,
        )
        return value

    def has_service_principal(self, client_id: str, tenant_id: str) -> bool:
        """A multi-tenant app gets one in a tenant when a user of it first consents."""
        if (tenant_id, client_id) in self.admin_consents:
            return True
        return any(
            app == client_id and self.directory.user(oid).tenant_id == tenant_id
            for oid, app in self.consents
            if self.directory.user(oid) is not None
        )

    def service_principal_id(self, client_id: str, tenant_id: str) -> str:
        """The app's enterprise application object id in a tenant (stable per pair)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tenant_id}:{client_id}"))

    def has_consent(self, user: User, client_id: str, permissions: Iterable[str]) -> bool:
        granted = self.consents.get((user.oid, client_id), set())
        granted = granted | self.admin_consents.get((user.tenant_id, client_id), set())
        return set(permissions) <= granted

    def grant_admin_consent(self, tenant_id: str, client_id: str, permissions: Iterable[str]):
        self.admin_consents.setdefault((tenant_id, client_id), set()).update(permissions)

    def grant_consent(self, user: User, client_id: str, permissions: Iterable[str]) -> None:
        self.consents.setdefault((user.oid, client_id), set()).update(permissions)

    def revoke(self, user: User) -> int:
        """Revoke every refresh token of a user (as "Revoke sessions" in the portal does)."""
        now = time.time()
        revoked = 0
        for token in self.refresh_tokens.values():
            if token.user.oid == user.oid and token.revoked_at is None:
                token.revoked_at = now
                revoked += 1
        return revoked
