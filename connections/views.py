import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import entra
from accounts.access import current_membership, start_session
from accounts.models import AuditEvent
from accounts.views import SIGNUP_OTHER_ACCOUNTS_SESSION_KEY, auth_error
from bizible_site.ratelimit import rate_limited
from bizible_site.sensitive import Secret
from connections import services
from connections.forms import ReauthorizeForm, SecretExpiryForm, SignupForm
from connections.models import DynamicsConnection, PendingAuthorization

logger = logging.getLogger("dynamics_connect.connections")

SIGNUP_RETRY_SESSION_KEY = "signup.retry"


@login_not_required
@rate_limited("signup")
@sensitive_post_parameters("client_secret")
@sensitive_variables()
@require_http_methods(["GET", "POST"])
@never_cache
def signup(request: HttpRequest) -> HttpResponse:
    error, error_code, cancelled = None, "", False
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            submitted = services.SignupRequest(
                **{**form.cleaned_data, "client_secret": Secret(form.cleaned_data["client_secret"])}
            )
            pending = services.pending_signup_create(signup=submitted)
            try:
                return _redirect_to_entra(
                    request,
                    purpose=entra.Purpose.SIGNUP,
                    app=services.signup_app_registration(submitted),
                    pending=pending,
                )
            except entra.EntraError as failure:
                error, error_code = failure.message, failure.code
    else:
        retry = request.session.pop(SIGNUP_RETRY_SESSION_KEY, None) or {}
        form = SignupForm(initial=retry.get("fields"))
        error = retry.get("message")
        error_code = retry.get("code", "")
        cancelled = retry.get("cancelled", False)
    return render(
        request,
        "connections/signup.html",
        {
            "form": form,
            "error": error,
            "error_code": error_code,
            "error_lookup_url": entra.aadsts_lookup_url(error_code),
            "cancelled": cancelled,
            "redirect_uris": entra.registered_redirect_uris(),
        },
    )


def _redirect_to_entra(
    request: HttpRequest,
    *,
    purpose: entra.Purpose,
    app: entra.AppRegistration,
    pending: PendingAuthorization,
) -> HttpResponse:
    """Send the browser to Entra ID to prove pending credentials. If the flow cannot start
    (Entra ID unreachable), the pending row is dropped and the EntraError raised."""
    try:
        authorize_url = entra.start_flow(
            request,
            purpose=purpose,
            app=app,
            scopes=[entra.dynamics_scope(pending.org_url)],
            context={"pending": str(pending.pk), "connection": pending.connection_id},
        )
    except entra.EntraError:
        pending.delete()
        raise
    return redirect(authorize_url)


def complete_signup(request: HttpRequest, flow: entra.StoredFlow) -> HttpResponse:
    """The /OAuth2 callback for a signup flow."""
    try:
        result = services.account_create_from_signup(flow=flow, callback_params=request.GET)
    except services.AuthorizationFailed as failure:
        logger.warning(
            "signup failed",
            extra={"event": "signup", "outcome": "failure", "code": failure.code},
        )
        request.session[SIGNUP_RETRY_SESSION_KEY] = {
            "fields": failure.fields,
            "message": failure.message,
            "code": failure.code,
            "cancelled": failure.cancelled,
        }
        return redirect("signup")
    start_session(request, result.user, result.account.account_id)
    request.session[SIGNUP_OTHER_ACCOUNTS_SESSION_KEY] = [
        {"company_name": a.company_name, "account_id": a.account_id}
        for a in result.other_accounts_of_tenant
    ]
    return redirect("welcome", account_id=result.account.account_id)


# --- Connections settings page --------------------------------------------------------------


def _admin_connection(request: HttpRequest, connection_id: int | None = None):
    """The current account's admin membership and its Dynamics connection (404 otherwise)."""
    admin = current_membership(request, admin=True)
    connections = DynamicsConnection.objects.filter(account=admin.account)
    if connection_id is not None:
        connections = connections.filter(pk=connection_id)
    return admin, get_object_or_404(connections.select_related("account"))


def _reauthorize_initial(connection: DynamicsConnection) -> dict:
    """The current Client Id and URI; the expiry date stays empty, as it belongs to the old
    secret."""
    return {"client_id": connection.client_id, "org_url": connection.org_url}


@require_GET
def connections(request: HttpRequest) -> HttpResponse:
    admin, connection = _admin_connection(request)
    events = AuditEvent.objects.filter(account=admin.account).select_related("actor")[:20]
    return render(
        request,
        "connections/connections.html",
        {
            "account": admin.account,
            "connection": connection,
            "form": ReauthorizeForm(initial=_reauthorize_initial(connection)),
            "events": events,
            "secret_expiry": connection.secret_expiry(),
        },
    )


@rate_limited("reauthorize")
@sensitive_post_parameters("client_secret")
@sensitive_variables()
@require_http_methods(["GET", "POST"])
@never_cache
def reauthorize(request: HttpRequest, connection_id: int) -> HttpResponse:
    """The key icon's form: in the modal, or as this page without JavaScript."""
    admin, connection = _admin_connection(request, connection_id)
    error = None
    if request.method == "POST":
        form = ReauthorizeForm(request.POST)
        if form.is_valid():
            submitted = services.ReauthorizationRequest(
                **{**form.cleaned_data, "client_secret": Secret(form.cleaned_data["client_secret"])}
            )
            pending = services.pending_reauthorization_create(
                connection=connection, actor=admin.user, request=submitted
            )
            try:
                return _redirect_to_entra(
                    request,
                    purpose=entra.Purpose.REAUTHORIZE,
                    app=services.reauthorization_app_registration(
                        connection=connection, request=submitted
                    ),
                    pending=pending,
                )
            except entra.EntraError as failure:
                error = failure.message
    else:
        form = ReauthorizeForm(initial=_reauthorize_initial(connection))
    return render(
        request,
        "connections/reauthorize.html",
        {"account": admin.account, "connection": connection, "form": form, "error": error},
    )


def complete_reauthorization(request: HttpRequest, flow: entra.StoredFlow) -> HttpResponse:
    """The /OAuth2 callback for a re-authorization: outcome shown on the Connections page."""
    if not request.user.is_authenticated:
        return auth_error(request, entra.FlowExpired(code="signed_out"))
    try:
        connection = services.connection_reauthorize(
            flow=flow, callback_params=request.GET, actor=request.user
        )
    except services.AuthorizationFailed as failure:
        if failure.cancelled:
            messages.info(request, failure.message)
        else:
            messages.error(request, f"Re-authorization failed: {failure.message}")
    else:
        messages.success(
            request,
            f"The Dynamics connection was re-authorized and works: connected to "
            f"{connection.org_url} as {connection.connected_as}.",
        )
    return redirect("connections")


@require_POST
def secret_expiry(request: HttpRequest, connection_id: int) -> HttpResponse:
    """Record the current secret's expiry date (from Certificates & secrets), for warnings."""
    admin, connection = _admin_connection(request, connection_id)
    form = SecretExpiryForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter the expiry date as shown in Certificates & secrets.")
    elif services.connection_set_secret_expiry(
        connection=connection, expires_on=form.cleaned_data["secret_expires_on"], actor=admin.user
    ):
        messages.success(request, "The client secret's expiry date was saved.")
    else:
        messages.error(request, "The connection changed meanwhile; check the date and save again.")
    return redirect("connections")


def reauthorization_flow_failed(request: HttpRequest, error: entra.FlowExpired) -> HttpResponse:
    """A re-authorization callback whose flow is gone (link used twice, or too old): nothing
    changed; say so on the Connections page and in the audit trail."""
    if not request.user.is_authenticated:
        return auth_error(request, error)
    services.reauthorization_record_failure(
        connection_id=error.context.get("connection"),
        actor=request.user,
        code=error.code,
        message=error.message,
    )
    messages.error(request, f"Re-authorization failed: {error.message}")
    return redirect("connections")


@require_POST
@sensitive_variables()
def test_connection(request: HttpRequest, connection_id: int) -> HttpResponse:
    """Run WhoAmI now (with a silent token refresh) and show the result."""
    admin, connection = _admin_connection(request, connection_id)
    result = services.connection_test(connection=connection, actor=admin.user)
    if result.ok:
        messages.success(request, f"Connection test passed: {result.detail}")
    else:
        messages.error(request, f"Connection test failed: {result.detail}")
    return redirect("connections")
