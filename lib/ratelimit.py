"""A per-client-address limit on the requests that start an Entra ID flow.

Each start costs a database row (signup, re-authorization) and a trip to Microsoft; a client
that posts faster than a person could is refused with 429 and told when to try again. Counts
live in Django's cache, which is the database by default, so every app process shares them.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

logger = logging.getLogger("dynamics_connect.auth")

WINDOW_SECONDS = 60


def client_address(request: HttpRequest) -> str:
    """The client's address: REMOTE_ADDR, or behind TRUSTED_PROXY_COUNT proxies the address
    the outermost trusted proxy saw (never a value the client wrote itself)."""
    proxies = settings.TRUSTED_PROXY_COUNT
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if proxies and len(forwarded) >= proxies:
        return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR", "")


def rate_limited(scope: str) -> Callable:
    """Allow AUTH_RATE_LIMIT_PER_MINUTE POSTs per client address and scope (0: no limit)."""

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            limit = settings.AUTH_RATE_LIMIT_PER_MINUTE
            if request.method == "POST" and limit:
                window = int(time.time() // WINDOW_SECONDS)
                key = f"ratelimit:{scope}:{client_address(request)}:{window}"
                cache.add(key, 0, timeout=WINDOW_SECONDS * 2)
                if cache.incr(key) > limit:
                    retry_after = WINDOW_SECONDS - int(time.time()) % WINDOW_SECONDS
                    logger.warning(
                        "rate limit reached",
                        extra={"event": "rate_limited", "scope": scope, "outcome": "failure"},
                    )
                    response = render(request, "429.html", {"retry_after": retry_after}, status=429)
                    response["Retry-After"] = str(retry_after)
                    return response
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
