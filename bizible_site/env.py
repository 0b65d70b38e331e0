"""Small, strict readers for settings that come from the environment.

Each helper returns a typed value or raises ``ImproperlyConfigured`` naming the variable, so a
typo in a deployment fails at start-up instead of silently turning into a default.
"""

import os
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of true/false/1/0/yes/no/on/off, not {raw!r}.")


def env_float(name: str, default: float, *, minimum: float = 0.0, maximum: float = 3600.0) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}.") from None
    if not minimum <= value <= maximum:
        raise ImproperlyConfigured(f"{name} must be between {minimum} and {maximum}, not {value}.")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    """A comma-separated list; blanks around items and empty items are dropped."""
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_origin(name: str, default: str = "", *, allow_path: bool = False) -> str:
    """An absolute http(s) URL without query, fragment or credentials, trailing slash removed."""
    raw = env_str(name, default)
    if not raw:
        return ""
    return parse_origin(raw, name=name, allow_path=allow_path)


def env_origin_list(name: str) -> list[str]:
    """A comma-separated list of origins, each checked like `env_origin`, lower-cased."""
    return [parse_origin(item, name=name).lower() for item in env_list(name)]


def parse_origin(raw: str, *, name: str, allow_path: bool = False) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ImproperlyConfigured(f"{name} must be an absolute http(s) URL, not {raw!r}.")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ImproperlyConfigured(f"{name} must not carry a query, fragment or credentials.")
    if parts.path not in {"", "/"} and not allow_path:
        raise ImproperlyConfigured(
            f"{name} must be an origin such as https://host:port, not {raw!r}."
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has an invalid port: {raw!r}.") from None
    return raw.rstrip("/")


def env_redis_url(name: str) -> str:
    """A ``redis://`` or ``rediss://`` URL, or "" when unset. Never quoted back: it may hold a
    password."""
    raw = env_str(name)
    if not raw:
        return ""
    parts = urlsplit(raw)
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has an invalid port.") from None
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise ImproperlyConfigured(f"{name} must be a redis:// or rediss:// URL with a host.")
    return raw
