"""Security headers Django does not set itself, the session's idle timeout, and the request's
start time for the auth events' durations."""

import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from bizible_site.logging import REQUEST_STARTED

# Everything from our own origin only: one stylesheet, one script, no inline code, no frames.
# (form-action is left out: Chromium applies it to the redirect to Entra ID after a form post.)
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)


class RequestTimingMiddleware:
    """Marks when the request began, so that each auth event's log line carries its
    ``duration_ms`` (``bizible_site/logging.py``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = REQUEST_STARTED.set(time.perf_counter())
        try:
            return self.get_response(request)
        finally:
            REQUEST_STARTED.reset(token)


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault(
            "Permissions-Policy", "camera=(), microphone=(), geolocation=()"
        )
        return response


class SessionIdleTimeoutMiddleware:
    """Ends a session unused for SESSION_IDLE_MINUTES, before anyone is authenticated from it.

    The last use is written at most once a minute, so a busy page costs no write per request.
    """

    SEEN_AT = "session.seen_at"
    WRITE_EVERY_SECONDS = 60

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = request.session
        now = time.time()
        seen_at = session.get(self.SEEN_AT)
        if seen_at is not None and now - seen_at > settings.SESSION_IDLE_MINUTES * 60:
            session.flush()
            seen_at = None
        response = self.get_response(request)
        if not session.is_empty() and (seen_at is None or now - seen_at > self.WRITE_EVERY_SECONDS):
            session[self.SEEN_AT] = now
        return response
