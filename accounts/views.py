import logging

from django.conf import settings
from django.contrib import auth, messages
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from accounts import entra, services
from accounts.access import (
    CURRENT_ACCOUNT_SESSION_KEY,
    current_membership,
    is_account_id,
    membership_for,
    start_session,
)
from accounts.models import Account, Membership
from bizible_site.ratelimit import rate_limited

logger = logging.getLogger("dynamics_connect.auth")

# Written by the signup callback: other accounts of the same tenant, to mention on welcome.
SIGNUP_OTHER_ACCOUNTS_SESSION_KEY = "signup.other_accounts"


@login_not_required
@require_GET
def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/landing.html")


@login_not_required
@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness and database reachability, for load balancers. No auth, no secrets."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except DatabaseError:
        database = "unreachable"
    status = 200 if database == "ok" else 503
    return JsonResponse(
        {"status": "ok" if status == 200 else "error", "database": database}, status=status
    )


def auth_error(
    request: HttpRequest, error: entra.EntraError | services.SignInRefused, *, retry_url: str = "/"
) -> HttpResponse:
    """The one friendly page for a failed authorization; "cancelled" is told apart."""
    cancelled = isinstance(error, entra.SignInCancelled)
    return render(
        request,
        "accounts/auth_error.html",
        {"error": error, "cancelled": cancelled, "retry_url": retry_url},
        status=200 if cancelled else 400,
    )


def _public_account(account_id: str) -> Account:
    if not is_account_id(account_id):
        raise Http404("No such account.")
    return get_object_or_404(
        Account.objects.select_related("dynamics_connection"), account_id=account_id
    )


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
@sensitive_variables()
def business_sign_in(request: HttpRequest, account_id: str) -> HttpResponse:
    """Start "Sign in with Active Directory" on the account's own app and tenant."""
    if request.user.is_authenticated:
        membership_for(request, account_id)
        return redirect("business", account_id=account_id)
    account = _public_account(account_id)
    retry_url = f"/business/{account.account_id}"
    try:
        app = account.dynamics_connection.app_registration()
        authorize_url = entra.start_flow(
            request,
            purpose=entra.Purpose.SIGN_IN,
            app=app,
            context={"account": account.account_id},
            next_url=_safe_next(request.POST.get("next"), account),
        )
    except entra.EntraError as error:
        return auth_error(request, error, retry_url=retry_url)
    return redirect(authorize_url)


# Codes that mean the account's stored app credentials no longer work at Entra ID.
_APP_CREDENTIAL_CODES = {"AADSTS7000215", "AADSTS7000222", "AADSTS7000218", "AADSTS700016"}


def complete_sign_in(request: HttpRequest, flow: entra.StoredFlow) -> HttpResponse:
    """The /OAuth2?identityOnly=true callback: identity only, no token is kept."""
    account = (
        Account.objects.select_related("dynamics_connection")
        .filter(account_id=flow.context.get("account", ""))
        .first()
    )
    if account is None:
        return auth_error(request, entra.FlowExpired(code="account_missing"))
    retry_url = f"/business/{account.account_id}"
    connection = account.dynamics_connection
    try:
        app = connection.app_registration()
        identity = entra.redeem(flow, request.GET, client_secret=app.client_secret)
        membership = services.member_sign_in(account=account, identity=identity)
    except entra.EntraError as error:
        _log_sign_in_failure(account, error.code)
        if error.credentials_rejected and error.code in _APP_CREDENTIAL_CODES:
            connection.mark_needs_reauthorization(code=error.code, message=error.message)
            error = entra.CredentialsUnavailable(
                "Microsoft rejected this account's app credentials "
                f"({error.code}: {error.message}) Ask an admin of your account to re-authorize "
                "the Dynamics connection in Settings > Connections.",
                code=error.code,
                correlation_id=error.correlation_id,
            )
        return auth_error(request, error, retry_url=retry_url)
    except services.SignInRefused as refused:
        _log_sign_in_failure(account, refused.code)
        return auth_error(request, refused, retry_url=retry_url)
    start_session(request, membership.user, account.account_id)
    return redirect(flow.next_url or retry_url)


def _log_sign_in_failure(account: Account, code: str) -> None:
    logger.warning(
        "sign-in failed",
        extra={
            "event": "sign_in",
            "outcome": "failure",
            "account": account.account_id,
            "code": code,
        },
    )


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
    tenant = request.user.tenant_id or entra.ORGANIZATIONS
    auth.logout(request)
    sign_in_again = f"/business/{account_id}" if account_id else "/"
    entra_sign_out = entra.sign_out_url(
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
