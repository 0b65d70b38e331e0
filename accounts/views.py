import secrets

from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth.decorators import login_not_required
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from accounts import services
from accounts.aadsts import Audience
from accounts.access import (
    CURRENT_ACCOUNT_SESSION_KEY,
    SIGNUP_OTHER_ACCOUNTS_SESSION_KEY,
    current_membership,
    is_account_id,
    membership_for,
)
from accounts.failures import render_failure
from accounts.models import Account, Membership
from lib.entra import flows
from lib.entra.errors import EntraError, FlowExpired
from lib.entra.http import sign_out_url
from lib.entra.types import ORGANIZATIONS, Purpose
from lib.ratelimit import rate_limited


@login_not_required
@require_GET
def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/landing.html")


@login_not_required
@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness, the database and the shared cache, for load balancers. No auth, no secrets;
    503 names what failed."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except DatabaseError:
        database = "unreachable"
    try:
        probe = secrets.token_hex(8)
        cache.set("healthz", probe, timeout=10)
        cache_state = "ok" if cache.get("healthz") == probe else "not_storing"
    except Exception:
        cache_state = "unreachable"
    healthy = database == cache_state == "ok"
    return JsonResponse(
        {"status": "ok" if healthy else "error", "database": database, "cache": cache_state},
        status=200 if healthy else 503,
    )


def _public_account(account_id: str) -> Account:
    if not is_account_id(account_id):
        raise Http404("No such account.")
    return get_object_or_404(Account.objects.select_related("entra_app"), account_id=account_id)


def _safe_next(candidate: str | None, account: Account) -> str:
    """A local path of this account to return to after sign-in, or "" (validated once, then
    carried inside the flow)."""
    if not candidate or not url_has_allowed_host_and_scheme(
        candidate, allowed_hosts=set(), require_https=False
    ):
        return ""
    allowed = (f"/business/{account.account_id}", "/settings/")
    return candidate if candidate.startswith(allowed) else ""


@login_not_required
@require_GET
def business(request: HttpRequest, account_id: str) -> HttpResponse:
    """A visitor sees the account's sign-in page; a member sees the account's home."""
    if request.user.is_authenticated:
        membership = membership_for(request, account_id)
        if request.session.get(CURRENT_ACCOUNT_SESSION_KEY) != account_id:
            request.session[CURRENT_ACCOUNT_SESSION_KEY] = account_id
        return render(
            request, "accounts/home.html", {"membership": membership, "account": membership.account}
        )
    account = _public_account(account_id)
    return render(
        request,
        "accounts/sign_in.html",
        {"account": account, "next": _safe_next(request.GET.get("next"), account)},
    )


@login_not_required
@rate_limited("sign_in")
@require_POST
def business_sign_in(request: HttpRequest, account_id: str) -> HttpResponse:
    """Start "Sign in with Active Directory" on the account's own app and tenant."""
    if request.user.is_authenticated:
        membership_for(request, account_id)
        return redirect("business", account_id=account_id)
    account = _public_account(account_id)
    app = account.entra_app
    try:
        authorize_url = flows.start(
            request,
            purpose=Purpose.SIGN_IN,
            client_id=app.client_id,
            tenant=app.tenant_id,
            context={"account": account.account_id},
            next_url=_safe_next(request.POST.get("next"), account),
        )
    except EntraError as error:
        return render_failure(
            request, error, Audience.SIGNING_IN, retry_url=f"/business/{account.account_id}"
        )
    return redirect(authorize_url)


def unknown_flow(request: HttpRequest, error: FlowExpired) -> HttpResponse:
    """A callback whose flow this session never started, or no longer remembers."""
    return render_failure(request, error, Audience.SIGNING_IN)


@require_GET
def welcome(request: HttpRequest, account_id: str) -> HttpResponse:
    """Shown once after signup: the account id and the sign-in URL to share."""
    membership = membership_for(request, account_id)
    account = membership.account
    return render(
        request,
        "accounts/welcome.html",
        {
            "account": account,
            "sign_in_url": f"{settings.PUBLIC_BASE_URL}/business/{account.account_id}",
            "public_base_url": settings.PUBLIC_BASE_URL,
            "other_accounts": request.session.pop(SIGNUP_OTHER_ACCOUNTS_SESSION_KEY, []),
        },
    )


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    """End the app session; offer Entra ID's sign-out too (a link: it is the user's choice)."""
    account_id = request.session.get(CURRENT_ACCOUNT_SESSION_KEY, "")
    tenant = request.user.tenant_id or ORGANIZATIONS
    auth.logout(request)
    sign_in_again = f"/business/{account_id}" if account_id else "/"
    entra_sign_out = sign_out_url(
        tenant, post_logout_redirect_uri=f"{settings.PUBLIC_BASE_URL}{sign_in_again}"
    )
    return render(
        request,
        "accounts/signed_out.html",
        {"sign_in_again": sign_in_again, "entra_sign_out": entra_sign_out},
    )


@require_GET
def members(request: HttpRequest) -> HttpResponse:
    admin = current_membership(request, admin=True)
    account_members = (
        Membership.objects.filter(account=admin.account)
        .select_related("user")
        .order_by("is_blocked", "role", "user__display_name")
    )
    return render(
        request,
        "accounts/members.html",
        {"account": admin.account, "admin": admin, "members": account_members},
    )


@require_POST
def member_change(request: HttpRequest, membership_id: int) -> HttpResponse:
    admin = current_membership(request, admin=True)
    target = get_object_or_404(Membership, pk=membership_id, account=admin.account)
    action = request.POST.get("action", "")
    try:
        changed = services.membership_change(admin=admin, target=target, action=action)
    except services.MembershipChangeRefused as refused:
        messages.error(request, refused.message)
    else:
        messages.success(request, f"{changed.user} was {services.MEMBERSHIP_ACTIONS[action]}.")
    return redirect("members")
