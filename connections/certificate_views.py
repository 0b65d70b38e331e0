"""The certificate pages: download the public certificate, upload it, Continue (or Switch).

Each step is a plain page and a plain form post; the private key is never in any of them.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.aadsts import Audience
from accounts.failures import describe
from accounts.models import EntraApp
from connections.access import admin_connection
from connections.certificate import (
    certificate_continue,
    certificate_for_connection,
    certificate_for_signup,
    certificate_of,
)
from connections.models import PendingAuthorization
from connections.pending import pending_waiting
from connections.preflight import SetupProblem
from lib.entra.errors import EntraError
from lib.entra.types import Purpose
from lib.ratelimit import rate_limited

SIGNUP_CERTIFICATE_SESSION_KEY = "signup.certificate"
CONNECTION_CERTIFICATE_SESSION_KEY = "connection.certificate"
NOT_UPLOADED = (
    "Microsoft does not know this certificate yet: upload it first (Certificates & secrets > "
    "Certificates > Upload certificate in your app registration), wait a minute, then press "
    "the button again."
)


def _download(pending: PendingAuthorization, fmt: str, name: str) -> HttpResponse:
    certificate = certificate_of(pending)
    if fmt == "der":
        response = HttpResponse(certificate.der, content_type="application/pkix-cert")
    else:
        response = HttpResponse(certificate.pem, content_type="application/x-pem-file")
    response["Content-Disposition"] = f'attachment; filename="{name}-{fmt}.cer"'
    return response


def _page(request, pending, *, error="", status=200, **context) -> HttpResponse:
    return render(
        request,
        "connections/certificate.html",
        {"pending": pending, "certificate": certificate_of(pending), "error": error, **context},
        status=status,
    )


def _continue_or_show(request, pending: PendingAuthorization, context: dict) -> HttpResponse:
    """The page (GET), or Continue (POST): the pre-flight, then off to Microsoft; a problem
    is shown on the page, with the download again."""
    if request.method != "POST":
        return _page(request, pending, **context)
    try:
        return redirect(certificate_continue(request, pending=pending))
    except SetupProblem as problem:
        words = NOT_UPLOADED if problem.field == "certificate" else problem.message
        return _page(request, pending, error=words, status=400, **context)
    except EntraError as error:
        message = describe(error, Audience.ADMIN).message
        return _page(request, pending, error=message, status=400, **context)


# --- Signup -----------------------------------------------------------------------------------


def _signup_waiting(request: HttpRequest) -> PendingAuthorization | None:
    return pending_waiting(
        request.session.get(SIGNUP_CERTIFICATE_SESSION_KEY), purpose=Purpose.SIGNUP
    )


def signup_certificate_start(request: HttpRequest, data: dict) -> HttpResponse:
    """The signup form chose a certificate: make it, keep it pending, show how to upload it."""
    pending = certificate_for_signup(
        company_name=data["company_name"],
        phone=data["phone"],
        website=data["website"],
        client_id=data["client_id"],
        org_url=data["org_url"],
    )
    request.session[SIGNUP_CERTIFICATE_SESSION_KEY] = str(pending.pk)
    return redirect("signup_certificate")


@login_not_required
@rate_limited("signup")
@require_http_methods(["GET", "POST"])
@never_cache
def signup_certificate(request: HttpRequest) -> HttpResponse:
    pending = _signup_waiting(request)
    if pending is None:
        return redirect("signup")
    context = {
        "download_url": reverse("signup_certificate_download"),
        "back_url": reverse("signup"),
        "continue_label": "Continue",
    }
    return _continue_or_show(request, pending, context)


@login_not_required
@require_GET
@never_cache
def signup_certificate_download(request: HttpRequest) -> HttpResponse:
    pending = _signup_waiting(request)
    if pending is None:
        raise Http404("No certificate is waiting for upload.")
    return _download(pending, request.GET.get("format", "pem"), "dynamics-connect")


# --- An existing connection: a new certificate, then Switch ---------------------------------


def connection_certificate_start(request, *, admin, connection, data: dict) -> HttpResponse:
    pending = certificate_for_connection(
        connection=connection,
        actor=admin.user,
        client_id=data["client_id"],
        org_url=data["org_url"],
    )
    request.session[CONNECTION_CERTIFICATE_SESSION_KEY] = str(pending.pk)
    return redirect("connection_certificate", connection_id=connection.pk)


@rate_limited("reauthorize")
@require_POST
def connection_certificate_new(request: HttpRequest, connection_id: int) -> HttpResponse:
    """ "Add a new certificate": for the current app and org, while the current one works."""
    admin, connection = admin_connection(request, connection_id)
    app = connection.account.entra_app
    data = {"client_id": app.client_id, "org_url": connection.org_url}
    return connection_certificate_start(request, admin=admin, connection=connection, data=data)


def _waiting_for(request, connection) -> PendingAuthorization | None:
    return pending_waiting(
        request.session.get(CONNECTION_CERTIFICATE_SESSION_KEY),
        purpose=Purpose.REAUTHORIZE,
        connection=connection,
    )


@rate_limited("reauthorize")
@require_http_methods(["GET", "POST"])
@never_cache
def connection_certificate(request: HttpRequest, connection_id: int) -> HttpResponse:
    _, connection = admin_connection(request, connection_id)
    pending = _waiting_for(request, connection)
    if pending is None:
        return redirect("connections")
    context = {
        "download_url": reverse("connection_certificate_download", args=[connection.pk]),
        "back_url": reverse("connections"),
        "continue_label": "Switch to this certificate",
        "connection": connection,
    }
    return _continue_or_show(request, pending, context)


@require_GET
@never_cache
def connection_certificate_download(request: HttpRequest, connection_id: int) -> HttpResponse:
    _, connection = admin_connection(request, connection_id)
    pending = _waiting_for(request, connection)
    if pending is None:
        raise Http404("No certificate is waiting for upload.")
    return _download(pending, request.GET.get("format", "pem"), "dynamics-connect")


@require_POST
def previous_credential_dismiss(request: HttpRequest, connection_id: int) -> HttpResponse:
    """The admin removed the replaced credential from the app registration: stop saying so."""
    _, connection = admin_connection(request, connection_id)
    EntraApp.objects.filter(account=connection.account).update(previous_credential="")
    return redirect("connections")
