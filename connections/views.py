from django.contrib import auth
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods

from accounts import entra
from accounts.access import CURRENT_ACCOUNT_SESSION_KEY
from accounts.views import SIGNUP_OTHER_ACCOUNTS_SESSION_KEY
from bizible_site.sensitive import Secret
from connections import services
from connections.forms import SignupForm

SIGNUP_RETRY_SESSION_KEY = "signup.retry"


@login_not_required
@sensitive_post_parameters("client_secret")
@sensitive_variables()
@require_http_methods(["GET", "POST"])
@never_cache
def signup(request: HttpRequest) -> HttpResponse:
    error, cancelled = None, False
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            submitted = services.SignupRequest(
                **{**form.cleaned_data, "client_secret": Secret(form.cleaned_data["client_secret"])}
            )
            pending = services.pending_signup_create(signup=submitted)
            try:
                authorize_url = entra.start_flow(
                    request,
                    purpose=entra.Purpose.SIGNUP,
                    app=services.signup_app_registration(submitted),
                    scopes=[entra.dynamics_scope(submitted.org_url)],
                    context={"pending": str(pending.pk)},
                )
            except entra.EntraError as failure:
                pending.delete()
                error = failure.message
            else:
                return redirect(authorize_url)
    else:
        retry = request.session.pop(SIGNUP_RETRY_SESSION_KEY, None) or {}
        form = SignupForm(initial=retry.get("fields"))
        error = retry.get("message")
        cancelled = retry.get("cancelled", False)
    return render(
        request,
        "connections/signup.html",
        {
            "form": form,
            "error": error,
            "cancelled": cancelled,
            "redirect_uris": entra.registered_redirect_uris(),
        },
    )


def complete_signup(request: HttpRequest, flow: entra.StoredFlow) -> HttpResponse:
    """The /OAuth2 callback for a signup flow."""
    try:
        result = services.account_create_from_signup(flow=flow, callback_params=request.GET)
    except services.AuthorizationFailed as failure:
        request.session[SIGNUP_RETRY_SESSION_KEY] = {
            "fields": failure.fields,
            "message": failure.message,
            "cancelled": failure.cancelled,
        }
        return redirect("signup")
    auth.login(request, result.user, backend="django.contrib.auth.backends.ModelBackend")
    request.session[CURRENT_ACCOUNT_SESSION_KEY] = result.account.account_id
    request.session[SIGNUP_OTHER_ACCOUNTS_SESSION_KEY] = [
        {"company_name": a.company_name, "account_id": a.account_id}
        for a in result.other_accounts_of_tenant
    ]
    return redirect("welcome", account_id=result.account.account_id)
