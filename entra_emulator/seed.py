"""The seed: tenants, users, app registrations and Dynamics orgs, with its schema and checks."""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .errors import AadstsError

#: Tenant path segments that mean "any work or school account".
MULTI_TENANT_SEGMENTS = frozenset({"organizations", "common"})
DYNAMICS_PERMISSION = "dynamics_crm/user_impersonation"
SIGN_IN_AUDIENCES = ("AzureADMyOrg", "AzureADMultipleOrgs")

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MISSING: Any = object()


class SeedError(ValueError):
    """A seed file or fragment that cannot be used; the message names the offending place."""


# --- Loading ------------------------------------------------------------------------------------


def load_seed(
    path: Path, *, emulator_url: str, environ: Mapping[str, str] | None = None
) -> Directory:
    """Read, expand and validate a seed file."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SeedError(f"cannot read seed file {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise SeedError(f"seed file {path} is not valid JSON: {exc}") from exc
    return Directory(expand(raw, emulator_url=emulator_url, environ=environ))


def expand(
    value: Any, *, emulator_url: str, environ: Mapping[str, str] | None = None, where: str = "seed"
) -> Any:
    """Replace `${NAME}` in every string; `${EMULATOR_URL}` is the emulator's https origin."""
    env = os.environ if environ is None else environ
    if isinstance(value, dict):
        return {
            k: expand(v, emulator_url=emulator_url, environ=env, where=f"{where}.{k}")
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            expand(v, emulator_url=emulator_url, environ=env, where=f"{where}[{i}]")
            for i, v in enumerate(value)
        ]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "EMULATOR_URL":
            return emulator_url
        if name not in env:
            raise SeedError(f"{where}: environment variable {name} is not set")
        return env[name]

    return _VARIABLE.sub(substitute, value)


def normalize_origin(url: str) -> str | None:
    """`scheme://host[:port]` with a lowercase host and no default port, or None if not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    scheme = parts.scheme.lower()
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None or (scheme, port) in (("https", 443), ("http", 80)):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def origin_of(url: str) -> str | None:
    """The origin of any absolute http(s) URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return normalize_origin(f"{parts.scheme}://{parts.netloc}")


# --- The directory ------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    oid: str
    upn: str
    name: str
    tenant_id: str
    # A Global Administrator (or any role that may grant tenant-wide admin consent).
    admin: bool = False

    def is_one_of(self, references: Iterable[str]) -> bool:
        """References are UPNs or object ids, compared case-insensitively."""
        return not {self.oid, self.upn.lower()}.isdisjoint(r.lower() for r in references)


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    domain: str
    users: tuple[User, ...]
    # Entra's "Users can consent to apps" setting; off: only an admin's consent will do.
    users_can_consent: bool = True


@dataclass(frozen=True)
class Secret:
    id: str
    value: str
    expires: datetime


@dataclass(frozen=True)
class UploadedCertificate:
    """A public certificate uploaded to an app registration, by the thumbprints that name it."""

    sha1: bytes
    sha256: bytes
    public_key: Any = field(repr=False, compare=False)
    not_before: datetime = field(compare=False)
    not_after: datetime = field(compare=False)


@dataclass(frozen=True)
class App:
    client_id: str
    tenant_id: str
    name: str
    sign_in_audience: str
    secrets: tuple[Secret, ...]
    redirect_uris: tuple[str, ...]
    assignment_required: bool
    assigned_users: tuple[str, ...]
    api_permissions: tuple[str, ...]
    access_token_lifetime: int
    # Uploaded under Certificates & secrets > Certificates: what client assertions name.
    certificates: tuple[UploadedCertificate, ...] = ()

    @property
    def multi_tenant(self) -> bool:
        return self.sign_in_audience == "AzureADMultipleOrgs"


@dataclass(frozen=True)
class DynamicsOrg:
    url: str
    tenant_id: str
    name: str
    organization_id: str
    business_unit_id: str
    members: tuple[str, ...]
    # A member listed here has only these privileges (e.g. "prvReadLead"); others have all.
    roles: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def may(self, user: User, privilege: str) -> bool:
        for reference, privileges in self.roles:
            if user.is_one_of([reference]):
                return privilege in privileges
        return True


class Directory:
    """A validated, immutable view of a (merged) seed."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        top = _Obj(raw, "seed", {"tenants", "apps", "dynamics_orgs"})
        self.tenants: dict[str, Tenant] = {}
        self._users: dict[str, User] = {}
        for i, item in enumerate(top.items("tenants")):
            tenant = _tenant(item, f"tenants[{i}]")
            self._add_tenant(tenant, f"tenants[{i}]")
        self.apps: dict[str, App] = {}
        for i, item in enumerate(top.items("apps")):
            app = self._app(item, f"apps[{i}]")
            if app.client_id in self.apps:
                raise SeedError(f"apps[{i}]: duplicate client_id {app.client_id}")
            self.apps[app.client_id] = app
        self.orgs: dict[str, DynamicsOrg] = {}
        for i, item in enumerate(top.items("dynamics_orgs")):
            org = self._org(item, f"dynamics_orgs[{i}]")
            if org.url in self.orgs:
                raise SeedError(f"dynamics_orgs[{i}]: duplicate url {org.url}")
            self.orgs[org.url] = org

    def resolve_tenant(self, segment: str) -> Tenant | None:
        """The tenant a path segment names; None for organizations/common; AADSTS90002 if none."""
        wanted = segment.lower()
        if wanted in MULTI_TENANT_SEGMENTS:
            return None
        for tenant in self.tenants.values():
            if wanted in (tenant.id, tenant.domain):
                return tenant
        raise AadstsError(90002, tenant=segment)

    def user(self, reference: str) -> User | None:
        """A user by UPN or object id (case-insensitive)."""
        return self._users.get(reference.strip().lower())

    def merged(self, fragment: Any) -> Directory:
        """A new directory with the fragment merged in.

        Apps and orgs replace those with the same client_id or url. A tenant with a known id is
        updated: the fragment's users are added (or replace those with the same oid), so a test
        can add one user to an existing tenant.
        """
        _Obj(fragment, "fragment", {"tenants", "apps", "dynamics_orgs"})
        raw = copy.deepcopy(self.raw)
        for section, key in (("tenants", "id"), ("apps", "client_id"), ("dynamics_orgs", "url")):
            items = copy.deepcopy(fragment.get(section, []))
            if not isinstance(items, list):
                raise SeedError(f"fragment.{section}: expected a list")
            current = raw.setdefault(section, [])
            for item in items:
                replaced = _upsert(current, item, key)
                if section == "tenants" and isinstance(replaced, dict) and isinstance(item, dict):
                    users = list(replaced.get("users", []))
                    new_users = item.get("users", [])
                    for user in new_users if isinstance(new_users, list) else []:
                        _upsert(users, user, "oid")
                    item.update({**replaced, **item, "users": users})
        return Directory(raw)

    def _add_tenant(self, tenant: Tenant, where: str) -> None:
        if tenant.id in self.tenants:
            raise SeedError(f"{where}: duplicate tenant id {tenant.id}")
        if any(t.domain == tenant.domain for t in self.tenants.values()):
            raise SeedError(f"{where}: duplicate tenant domain {tenant.domain}")
        for user in tenant.users:
            for ref in (user.oid, user.upn.lower()):
                if ref in self._users:
                    raise SeedError(f"{where}: user {ref} appears twice in the seed")
                self._users[ref] = user
        self.tenants[tenant.id] = tenant

    def _tenant_ref(self, obj: _Obj, key: str) -> str:
        tenant_id = obj.guid(key)
        if tenant_id not in self.tenants:
            raise SeedError(f"{obj.where}.{key}: no tenant with id {tenant_id}")
        return tenant_id

    def _user_refs(self, obj: _Obj, key: str) -> tuple[str, ...]:
        refs = obj.texts(key)
        for ref in refs:
            if self.user(ref) is None:
                raise SeedError(f"{obj.where}.{key}: no user {ref!r} in any tenant")
        return tuple(refs)

    def _app(self, raw: Any, where: str) -> App:
        obj = _Obj(
            raw,
            where,
            {
                "client_id",
                "tenant",
                "name",
                "sign_in_audience",
                "secrets",
                "redirect_uris",
                "assignment_required",
                "assigned_users",
                "api_permissions",
                "access_token_lifetime",
                "certificates",
            },
        )
        audience = obj.text("sign_in_audience", "AzureADMyOrg")
        if audience not in SIGN_IN_AUDIENCES:
            choices = ", ".join(SIGN_IN_AUDIENCES)
            raise SeedError(f"{where}.sign_in_audience: must be one of {choices}")
        redirect_uris = tuple(obj.texts("redirect_uris"))
        if not redirect_uris:
            raise SeedError(f"{where}.redirect_uris: at least one redirect URI is needed")
        for j, uri in enumerate(redirect_uris):
            if origin_of(uri) is None or "#" in uri:
                raise SeedError(f"{where}.redirect_uris[{j}]: {uri!r} is not an absolute URL")
        lifetime = obj.integer("access_token_lifetime", 3599)
        if lifetime < 1:
            raise SeedError(f"{where}.access_token_lifetime: must be at least 1 second")
        return App(
            client_id=obj.guid("client_id"),
            tenant_id=self._tenant_ref(obj, "tenant"),
            name=obj.text("name", "Application"),
            sign_in_audience=audience,
            secrets=tuple(
                _secret(s, f"{where}.secrets[{j}]") for j, s in enumerate(obj.items("secrets"))
            ),
            redirect_uris=redirect_uris,
            assignment_required=obj.flag("assignment_required", False),
            assigned_users=self._user_refs(obj, "assigned_users"),
            api_permissions=tuple(obj.texts("api_permissions")),
            access_token_lifetime=lifetime,
            certificates=tuple(
                _certificate(c, f"{where}.certificates[{j}]")
                for j, c in enumerate(obj.items("certificates"))
            ),
        )

    def _org(self, raw: Any, where: str) -> DynamicsOrg:
        obj = _Obj(
            raw,
            where,
            {
                "url",
                "tenant",
                "name",
                "organization_id",
                "business_unit_id",
                "members",
                "roles",
            },
        )
        url = normalize_origin(obj.text("url"))
        if url is None or not url.startswith("https://"):
            raise SeedError(
                f"{where}.url: must be an https origin such as https://contoso.crm.dynamics.com"
            )
        return DynamicsOrg(
            url=url,
            tenant_id=self._tenant_ref(obj, "tenant"),
            name=obj.text("name", url),
            organization_id=obj.guid("organization_id"),
            business_unit_id=obj.guid("business_unit_id"),
            members=self._user_refs(obj, "members"),
            roles=_roles(raw.get("roles", {}), f"{where}.roles"),
        )


def _roles(raw: Any, where: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """`{"<upn or oid>": ["prvReadLead", ...]}`: what each listed member may do."""
    if not isinstance(raw, dict) or not all(
        isinstance(v, list) and all(isinstance(p, str) for p in v) for v in raw.values()
    ):
        raise SeedError(f"{where}: expected an object of user -> list of privilege names")
    return tuple((str(user), tuple(privileges)) for user, privileges in raw.items())


def _tenant(raw: Any, where: str) -> Tenant:
    obj = _Obj(raw, where, {"id", "name", "domain", "users", "users_can_consent"})
    tenant_id = obj.guid("id")
    users = []
    for j, item in enumerate(obj.items("users")):
        u = _Obj(item, f"{where}.users[{j}]", {"oid", "upn", "name", "admin"})
        upn = u.text("upn")
        if "@" not in upn:
            raise SeedError(f"{u.where}.upn: {upn!r} is not a user principal name")
        users.append(
            User(
                oid=u.guid("oid"),
                upn=upn,
                name=u.text("name", upn),
                tenant_id=tenant_id,
                admin=u.flag("admin", False),
            )
        )
    return Tenant(
        id=tenant_id,
        name=obj.text("name"),
        domain=obj.text("domain").lower(),
        users=tuple(users),
        users_can_consent=obj.flag("users_can_consent", True),
    )


def _certificate(raw: Any, where: str) -> UploadedCertificate:
    obj = _Obj(raw, where, {"pem"})
    try:
        cert = x509.load_pem_x509_certificate(obj.text("pem").encode())
    except ValueError:
        raise SeedError(f"{where}.pem: not a PEM certificate") from None
    return UploadedCertificate(
        sha1=cert.fingerprint(hashes.SHA1()),  # noqa: S303  # nosec B303
        sha256=cert.fingerprint(hashes.SHA256()),
        public_key=cert.public_key(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
    )


def _secret(raw: Any, where: str) -> Secret:
    obj = _Obj(raw, where, {"id", "value", "expires"})
    try:
        expires = datetime.fromisoformat(obj.text("expires"))
    except ValueError as exc:
        raise SeedError(f"{where}.expires: not an ISO 8601 date-time") from exc
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    return Secret(id=obj.guid("id"), value=obj.text("value"), expires=expires)


def _upsert(items: list[Any], new: Any, key: str) -> Any:
    """Replace the item with the same key, or append; return the replaced item, if any."""
    ident = _merge_key(new, key)
    for i, old in enumerate(items):
        if ident is not None and _merge_key(old, key) == ident:
            items[i] = new
            return old
    items.append(new)
    return None


def _merge_key(item: Any, key: str) -> str | None:
    value = item.get(key) if isinstance(item, dict) else None
    if not isinstance(value, str):
        return None
    if key == "url":
        return normalize_origin(value) or value.lower()
    return value.lower()


class _Obj:
    """One JSON object of a seed, read with messages that name the offending place."""

    def __init__(self, value: Any, where: str, allowed: set[str]) -> None:
        if not isinstance(value, dict):
            raise SeedError(f"{where}: expected an object")
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise SeedError(f"{where}: unknown key(s) {', '.join(unknown)}")
        self.value = value
        self.where = where

    def _get(self, key: str, default: Any, kind: type | tuple[type, ...], noun: str) -> Any:
        if key not in self.value:
            if default is _MISSING:
                raise SeedError(f"{self.where}.{key}: required")
            return default
        value = self.value[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SeedError(f"{self.where}.{key}: expected {noun}")
        return value

    def text(self, key: str, default: Any = _MISSING) -> str:
        value = self._get(key, default, str, "a string")
        if not value.strip():
            raise SeedError(f"{self.where}.{key}: must not be empty")
        return value

    def guid(self, key: str) -> str:
        value = self.text(key)
        if not _GUID.match(value):
            raise SeedError(f"{self.where}.{key}: {value!r} is not a GUID")
        return value.lower()

    def flag(self, key: str, default: bool) -> bool:
        return self._get(key, default, bool, "true or false")

    def integer(self, key: str, default: int) -> int:
        return self._get(key, default, int, "an integer")

    def items(self, key: str) -> list[Any]:
        return self._get(key, [], list, "a list")

    def texts(self, key: str) -> list[str]:
        items = self.items(key)
        if not all(isinstance(i, str) and i.strip() for i in items):
            raise SeedError(f"{self.where}.{key}: expected a list of non-empty strings")
        return items
