"""The /OAuth2 callback: finds the flow this redirect answers and hands it to the app that
owns the flow's purpose. The purpose comes from the server-side flow, never from the URL."""

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET

from accounts import entra
from accounts import views as account_views
from connections import views as connection_views

CALLBACKS = {
    entra.Purpose.SIGN_IN: account_views.complete_sign_in,
    entra.Purpose.SIGNUP: connection_views.complete_signup,
    entra.Purpose.REAUTHORIZE: connection_views.complete_reauthorization,
}


@login_not_required
@require_GET
@never_cache
@sensitive_variables()  # hides the client secret and tokens in every frame below this one
def oauth2_callback(request: HttpRequest) -> HttpResponse:
    try:
        flow = entra.pop_flow(request, identity_only=request.GET.get("identityOnly") == "true")
    except entra.FlowExpired as error:
        if error.purpose is entra.Purpose.REAUTHORIZE:
            return connection_views.reauthorization_flow_failed(request, error)
        return account_views.auth_error(request, error)
    return CALLBACKS[flow.purpose](request, flow)
