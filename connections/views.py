"""Signup and the Connections settings page: parse, call a service, render or redirect."""

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.aadsts import Audience, explain
from accounts.access import current_membership
from accounts.failures import describe
from accounts.models import AuditEvent, Membership
from accounts.services import entra_app_set_credential_expiry
from connections import certificate_views
from connections.access import admin_connection
from connections.consent import admin_consent_continue, admin_consent_waiting
from connections.forms import CERTIFICATE, ReauthorizeForm, SecretExpiryForm, SignupForm
from connections.health import connection_disconnect, connection_test
from connections.models import DynamicsConnection
from connections.preflight import SetupProblem
from connections.reauthorize import (
    REAUTHORIZE_CONSENT_SESSION_KEY,
    ReauthorizationRequest,
    reauthorization_start,
)
from connections.signup import (
    SIGNUP_CONSENT_SESSION_KEY,
    SIGNUP_RETRY_SESSION_KEY,
    SignupRequest,
    signup_start,
)
from lib.entra.errors import EntraError
from lib.entra.flows import flow_lifetime
from lib.entra.http import error_lookup_url
from lib.entra.types import Purpose, registered_redirect_uris
from lib.ratelimit import rate_limited


@login_not_required
@rate_limited("signup")
@sensitive_post_parameters("client_secret")
@sensitive_variables()
@require_http_methods(["GET", "POST"])
@never_cache
def signup(request: HttpRequest) -> HttpResponse:
    retry = {}
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid() and form.cleaned_data["credential_kind"] == CERTIFICATE:
            return certificate_views.signup_certificate_start(request, form.cleaned_data)
        if form.is_valid():
            fields, credential = form.submitted_secret()
            submitted = SignupRequest(**fields, credential=credential)
            try:
                return redirect(signup_start(request, signup=submitted))
            except SetupProblem as problem:
                form.add_error(problem.field, problem.message)
            except EntraError as error:
                explanation = explain(error, Audience.ADMIN, client_id=submitted.client_id)
                retry = {"message": explanation.message, "code": error.code, "aadsts": error.aadsts}
    else:
        retry = request.session.pop(SIGNUP_RETRY_SESSION_KEY, None) or {}
        form = SignupForm(initial=retry.get("fields"))
        if retry.get("admin_consent"):  # kept for the Continue button
            request.session[SIGNUP_CONSENT_SESSION_KEY] = retry["admin_consent"]
    return render(
        request,
        "connections/signup.html",
        {
            "form": form,
            "error": retry.get("message"),
            "error_code": retry.get("code", ""),
            "error_lookup_url": error_lookup_url(retry.get("aadsts")),
            "cancelled": retry.get("cancelled", False),
            "admin_consent": retry.get("admin_consent"),
            "flow_minutes": int(flow_lifetime().total_seconds() // 60),
            "redirect_uris": registered_redirect_uris(),
        },
    )


@login_not_required
@require_POST
@never_cache
def signup_continue_view(request: HttpRequest) -> HttpResponse:
    """ "An admin has approved": the signup that waited for it goes on to Microsoft."""
    offer = request.session.pop(SIGNUP_CONSENT_SESSION_KEY, None)
    if not offer:
        return redirect("signup")
    try:
        return redirect(admin_consent_continue(request, offer=offer, purpose=Purpose.SIGNUP))
    except EntraError as error:
        explanation = describe(error, Audience.ADMIN)
        request.session[SIGNUP_RETRY_SESSION_KEY] = {"message": explanation.message}
        return redirect("signup")


def _reauthorize_initial(connection: DynamicsConnection) -> dict:
    """The current Client Id and URI; the expiry date stays empty, as it belongs to the old
    secret."""
    return {"client_id": connection.account.entra_app.client_id, "org_url": connection.org_url}


@require_GET
def connections(request: HttpRequest) -> HttpResponse:
    admin, connection = admin_connection(request)
    app = connection.account.entra_app
    events = AuditEvent.objects.filter(account=admin.account).select_related("actor")[:20]
    return render(
        request,
        "connections/connections.html",
        {
            "account": admin.account,
            "connection": connection,
            "app": app,
            "form": ReauthorizeForm(initial=_reauthorize_initial(connection)),
            "events": events,
            "secret_expiry": app.credential_expiry(),
            "certificate": app.certificate(),
            "admin_membership": admin,
            "admin_consent": admin_consent_waiting(request, REAUTHORIZE_CONSENT_SESSION_KEY),
            "flow_minutes": int(flow_lifetime().total_seconds() // 60),
        },
    )


@require_POST
@never_cache
def reauthorize_continue(request: HttpRequest, connection_id: int) -> HttpResponse:
    """ "An admin has approved": the re-authorization that waited for it goes on to Microsoft."""
    _, connection = admin_connection(request, connection_id)
    offer = request.session.pop(REAUTHORIZE_CONSENT_SESSION_KEY, None)
    if not offer:
        return redirect("connections")
    try:
        resumed = admin_consent_continue(
            request, offer=offer, purpose=Purpose.REAUTHORIZE, connection=connection
        )
        return redirect(resumed)
    except EntraError as error:
        messages.error(request, describe(error, Audience.ADMIN).message)
        return redirect("connections")


@rate_limited("reauthorize")
@sensitive_post_parameters("client_secret")
@sensitive_variables()
@require_http_methods(["GET", "POST"])
@never_cache
def reauthorize(request: HttpRequest, connection_id: int) -> HttpResponse:
    """The key icon's form: in the modal, or as this page without JavaScript."""
    admin, connection = admin_connection(request, connection_id)
    error = None
    if request.method == "POST":
        form = ReauthorizeForm(request.POST)
        if form.is_valid() and form.cleaned_data["credential_kind"] == CERTIFICATE:
            return certificate_views.connection_certificate_start(
                request, admin=admin, connection=connection, data=form.cleaned_data
            )
        if form.is_valid():
            fields, credential = form.submitted_secret()
            submitted = ReauthorizationRequest(**fields, credential=credential)
            try:
                return redirect(
                    reauthorization_start(
                        request, connection=connection, actor=admin.user, submitted=submitted
                    )
                )
            except SetupProblem as problem:
                form.add_error(problem.field, problem.message)
            except EntraError as failure:
                error = explain(failure, Audience.ADMIN, client_id=submitted.client_id).message
    else:
        form = ReauthorizeForm(initial=_reauthorize_initial(connection))
    return render(
        request,
        "connections/reauthorize.html",
        {"account": admin.account, "connection": connection, "form": form, "error": error},
    )


@require_POST
def secret_expiry(request: HttpRequest, connection_id: int) -> HttpResponse:
    """Record the current secret's expiry date (from Certificates & secrets), for warnings."""
    admin, connection = admin_connection(request, connection_id)
    form = SecretExpiryForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter the expiry date as shown in Certificates & secrets.")
    elif entra_app_set_credential_expiry(
        app=connection.account.entra_app,
        expires_on=form.cleaned_data["secret_expires_on"],
        actor=admin.user,
    ):
        messages.success(request, "The client secret's expiry date was saved.")
    else:
        messages.error(request, "The connection changed meanwhile; check the date and save again.")
    return redirect("connections")


@require_POST
def test_connection(request: HttpRequest, connection_id: int) -> HttpResponse:
    """Run WhoAmI now (with a silent token refresh) and show the result."""
    admin, connection = admin_connection(request, connection_id)
    result = connection_test(connection=connection, actor=admin.user)
    if result.ok:
        messages.success(request, f"Connection test passed: {result.detail}")
    elif result.busy:
        messages.info(request, f"Dynamics is busy, not broken: {result.detail}")
    else:
        messages.error(request, f"Connection test failed: {result.detail}")
    return redirect("connections")


@require_POST
def connection_emails(request: HttpRequest) -> HttpResponse:
    """An admin turns the connection e-mails on or off, for themselves only."""
    admin = current_membership(request, admin=True)
    wanted = request.POST.get("connection_emails") == "on"
    Membership.objects.filter(pk=admin.pk).update(connection_emails=wanted)
    messages.success(
        request,
        "You will get e-mails about this connection."
        if wanted
        else "You will no longer get e-mails about this connection.",
    )
    return redirect("connections")


@require_http_methods(["GET", "POST"])
def disconnect(request: HttpRequest, connection_id: int) -> HttpResponse:
    """Disconnect Dynamics: a confirm page (GET), then the disconnect itself (POST)."""
    admin, connection = admin_connection(request, connection_id)
    if request.method == "POST":
        connection_disconnect(connection=connection, actor=admin.user)
        messages.success(
            request,
            "Dynamics was disconnected and its tokens deleted. Members can still sign in; use "
            "the key icon to connect again.",
        )
        return redirect("connections")
    return render(
        request,
        "connections/disconnect.html",
        {"account": admin.account, "connection": connection},
    )
