"""Per-client limits: on the requests that start an Entra ID flow, and on failed admin logins.

Each start costs a database row (signup, re-authorization) and a trip to Microsoft; a client
that posts faster than a person could is refused with 429 and told when to try again. Counts
are atomic and shared by every app process: Redis ``INCR`` when ``CACHE_URL`` names a Redis
server, else one ``INSERT ... ON CONFLICT DO UPDATE SET hits = hits + 1`` on the
``rate_limit_counter`` table (created by the accounts app's migrations; this leaf speaks SQL to
it by name, so that it imports no app). Never a read followed by a write.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

logger = logging.getLogger("dynamics_connect.auth")

WINDOW_SECONDS = 60
# The counter table's statements (its name is fixed: accounts' migration creates it).
_SELECT = "SELECT hits FROM rate_limit_counter WHERE key = %s"
_UPSERT = (
    "INSERT INTO rate_limit_counter (key, hits, expires_at) VALUES (%s, %s, %s) "
    "ON CONFLICT (key) DO UPDATE SET hits = rate_limit_counter.hits + excluded.hits "
    "RETURNING hits"
)
_PURGE = "DELETE FROM rate_limit_counter WHERE expires_at < %s"
_REDIS_PREFIX = "dynamics_connect:ratelimit:"


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind TRUSTED_PROXY_COUNT proxies the address
    the outermost trusted proxy saw (never a value the client wrote itself). An IPv6 client is
    its /64: one customer's block, which it could otherwise rotate through."""
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    raw = forwarded[-proxies] if proxies and len(forwarded) >= proxies else ""
    raw = raw or request.META.get("REMOTE_ADDR", "")
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


@functools.lru_cache(maxsize=4)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _count(key: str, *, add: int, window: int) -> int:
    """Add to a counter of the current ``window`` seconds (0: just read it); its value."""
    number = int(time.time() // window)
    expires_at = (number + 2) * window
    key = f"{key}:{window}:{number}"
    if settings.CACHE_URL:
        client = _redis(settings.CACHE_URL)
        if not add:
            return int(client.get(_REDIS_PREFIX + key) or 0)
        pipe = client.pipeline(transaction=True)
        pipe.incrby(_REDIS_PREFIX + key, add)
        pipe.expireat(_REDIS_PREFIX + key, expires_at)
        return int(pipe.execute()[0])
    with connection.cursor() as cursor:
        if not add:
            cursor.execute(_SELECT, [key])
            row = cursor.fetchone()
            return row[0] if row else 0
        cursor.execute(_UPSERT, [key, add, expires_at])
        hits = cursor.fetchone()[0]
        if hits == add:  # a new window: forget the ones that ended
            cursor.execute(_PURGE, [time.time()])
    return hits


def hit(scope: str, key: str, *, window: int = WINDOW_SECONDS) -> int:
    """Count one more for ``key`` in ``scope`` this window; returns the new count."""
    return _count(f"{scope}:{key}", add=1, window=window)


def hits(scope: str, key: str, *, window: int = WINDOW_SECONDS) -> int:
    """How many ``key`` has in ``scope`` this window (counting nothing)."""
    return _count(f"{scope}:{key}", add=0, window=window)


def too_many(request: HttpRequest, *, scope: str, window: int = WINDOW_SECONDS) -> HttpResponse:
    """The plain 429 page, with when to try again."""
    retry_after = window - int(time.time()) % window
    logger.warning(
        "rate limit reached", extra={"event": "rate_limited", "scope": scope, "outcome": "failure"}
    )
    response = render(request, "429.html", {"retry_after": retry_after}, status=429)
    response["Retry-After"] = str(retry_after)
    return response


def rate_limited(scope: str) -> Callable:
    """Allow AUTH_RATE_LIMIT_PER_MINUTE POSTs per client address and scope (0: no limit)."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            limit = settings.AUTH_RATE_LIMIT_PER_MINUTE
            counted = request.method == "POST" and limit
            if counted and hit(scope, client_address(request)) > limit:
                return too_many(request, scope=scope)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
