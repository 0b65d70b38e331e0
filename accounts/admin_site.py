"""The operators' admin site, with failed logins limited per client address and per user name."""

from __future__ import annotations

import hashlib

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache

from lib import ratelimit

FAILED_LOGINS_ALLOWED = 5
FAILED_LOGIN_WINDOW_SECONDS = 15 * 60


def _counters(request: HttpRequest) -> list[tuple[str, str]]:
    """The address, and the user name tried (hashed: the table keeps no names)."""
    name = request.POST.get("username", "").strip().lower()
    return [
        ("admin_login_address", ratelimit.client_address(request)),
        ("admin_login_user", hashlib.sha256(name.encode()).hexdigest()),
    ]


class ThrottledAdminSite(admin.AdminSite):
    """After FAILED_LOGINS_ALLOWED wrong passwords from one address, or for one user name, in
    a quarter of an hour, the login page answers 429 until the window ends: a guessing
    attacker gets a few tries, not thousands."""

    @method_decorator(never_cache)
    @login_not_required
    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if request.method != "POST":
            return super().login(request, extra_context)
        counters = _counters(request)
        window = FAILED_LOGIN_WINDOW_SECONDS
        if any(
            ratelimit.hits(scope, key, window=window) >= FAILED_LOGINS_ALLOWED
            for scope, key in counters
        ):
            return ratelimit.too_many(request, scope="admin_login", window=window)
        response = super().login(request, extra_context)
        if not request.user.is_authenticated:
            for scope, key in counters:
                ratelimit.hit(scope, key, window=window)
        return response


class ThrottledAdminConfig(AdminConfig):
    """Django's admin, on the site above (INSTALLED_APPS names this instead of the admin)."""

    default = False
    default_site = "accounts.admin_site.ThrottledAdminSite"
