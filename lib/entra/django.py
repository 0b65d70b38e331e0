"""The ``/OAuth2`` view: every callback is completed here, once.

It pops the flow the callback answers, asks the handler of the flow's purpose for the
credentials to redeem it with, redeems the code (one token request), validates the id token,
and hands the handler a proven identity, or a typed failure. An admin-consent answer carries
no code: its handler is told that the tenant's admin approved, or why not. Handlers are
registered in the site's URL configuration; the purpose comes from the server-side flow, never
from the URL.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET

from lib.entra import flows
from lib.entra.errors import EntraError, FlowExpired
from lib.entra.types import AppCredentials, ProvenIdentity, Purpose, StoredFlow


class FlowHandler(Protocol):
    """What a purpose does with its callbacks; a new handler answers each callback, so it may
    keep what ``credentials`` found for ``completed``. ``flow`` is None in ``failed`` when the
    session no longer holds the flow (then a ``FlowExpired`` names its purpose and context)."""

    def credentials(self, request: HttpRequest, flow: StoredFlow) -> AppCredentials: ...

    def completed(
        self, request: HttpRequest, flow: StoredFlow, identity: ProvenIdentity
    ) -> HttpResponse: ...

    def failed(
        self, request: HttpRequest, flow: StoredFlow | None, error: EntraError
    ) -> HttpResponse: ...


class ConsentHandler(Protocol):
    """What the admin-consent purpose does with its answers (no code, no credentials)."""

    def consented(self, request: HttpRequest, flow: StoredFlow) -> HttpResponse: ...

    def failed(
        self, request: HttpRequest, flow: StoredFlow | None, error: EntraError
    ) -> HttpResponse: ...


def callback_view(
    handlers: Mapping[Purpose, Callable[[], FlowHandler | ConsentHandler]],
    *,
    unknown_flow: Callable[[HttpRequest, FlowExpired], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """The view for ``/OAuth2`` and ``/OAuth2?identityOnly=true``. ``unknown_flow`` answers a
    callback whose flow this session never held (or no longer remembers)."""

    @login_not_required
    @require_GET
    @never_cache
    @sensitive_variables()  # hides the client secret and tokens in every frame below this one
    def oauth2_callback(request: HttpRequest) -> HttpResponse:
        response = _complete(request)
        # The code is in this page's URL: no Referer may ever carry it on (RFC 9700 4.2.4).
        response["Referrer-Policy"] = "no-referrer"
        return response

    def _complete(request: HttpRequest) -> HttpResponse:
        try:
            flow = flows.pop(request, identity_only=request.GET.get("identityOnly") == "true")
        except FlowExpired as error:
            if error.purpose is None:
                return unknown_flow(request, error)
            return handlers[error.purpose]().failed(request, None, error)
        handler = handlers[flow.purpose]()
        if flow.purpose is Purpose.ADMIN_CONSENT:
            try:
                flows.admin_consent_answer(flow, request.GET)
            except EntraError as error:
                return handler.failed(request, flow, error)
            return handler.consented(request, flow)
        try:
            credentials = handler.credentials(request, flow)
            identity = flows.redeem(flow, request.GET, credentials=credentials)
        except EntraError as error:
            return handler.failed(request, flow, error)
        return handler.completed(request, flow, identity)

    return oauth2_callback


def context_of(flow: StoredFlow | None, error: EntraError) -> dict:
    """The failed flow's context: from the flow, or from the FlowExpired that named it."""
    if flow is not None:
        return flow.context
    return error.context if isinstance(error, FlowExpired) else {}
