"""Admin consent: when Entra ID says an admin must approve the app (AADSTS65001, 90094, 90095,
650057), or the person came back with ``access_denied`` (Microsoft's "Need admin approval"
page sends people back that way too), the page offers the tenant's admin-consent link.

The waiting signup or re-authorization keeps its pending row until the consent flow ends or
expires. The admin's answer comes back to /OAuth2 bound to its stored flow; in the asker's
browser it resumes what waited (a new authorization, which is the real proof), in the admin's
own browser it only says thank you.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from accounts.aadsts import Audience
from accounts.failures import Refused, render_failure
from connections.models import PendingAuthorization
from connections.pending import pending_flow_resume, pending_of, pending_reopen, pending_waiting
from lib.dynamics import dynamics_scope
from lib.entra import flows
from lib.entra.errors import EntraError, SignInCancelled
from lib.entra.flows import flow_lifetime
from lib.entra.types import Purpose, StoredFlow

logger = logging.getLogger("dynamics_connect.connections")

ADMIN_CONSENT_CODES = frozenset({65001, 90094, 90095, 650057})


def needs_admin_consent(error: EntraError) -> bool:
    """Whether an admin's approval may be what is missing."""
    return isinstance(error, SignInCancelled) or error.aadsts in ADMIN_CONSENT_CODES


def admin_consent_offer(
    request: HttpRequest, *, pending: PendingAuthorization, tenant: str
) -> dict[str, str]:
    """Keep ``pending`` for the consent flow's lifetime and start that flow: the link to
    copy or follow, and what to resume once an admin has approved."""
    pending_reopen(pending, for_=flow_lifetime())
    url = flows.start_admin_consent(
        request,
        client_id=pending.client_id,
        tenant=tenant,
        scope=dynamics_scope(pending.org_url),
        context={"pending": str(pending.pk)},
    )
    return {"url": url, "pending": str(pending.pk), "tenant": tenant}


def admin_consent_waiting(request: HttpRequest, session_key: str) -> dict[str, str] | None:
    """The offer this session keeps under ``session_key`` while its pending row lives (an
    expired one is forgotten)."""
    offer = request.session.get(session_key)
    if offer and pending_waiting(offer.get("pending")) is None:
        del request.session[session_key]
        return None
    return offer


_EXPIRED_WHILE_WAITING = {
    Purpose.SIGNUP: "This signup expired while it waited for an admin's approval. Please "
    "submit the form again.",
    Purpose.REAUTHORIZE: "This re-authorization expired while it waited for an admin's "
    "approval. Use the key icon to start it again.",
}


def admin_consent_continue(
    request: HttpRequest, *, offer: dict, purpose: Purpose, connection: object | None = None
) -> str:
    """ "An admin has approved" (in their own browser): the authorization of what waited, as
    the offer named it; raises Refused when it is gone."""
    pending = pending_waiting(offer.get("pending"), purpose=purpose, connection=connection)
    if pending is None:
        raise Refused(_EXPIRED_WHILE_WAITING[purpose], code="pending_expired")
    return pending_flow_resume(request, pending=pending, tenant=offer["tenant"])


def _waiting_page(purpose: str) -> str:
    return reverse("signup") if purpose == Purpose.SIGNUP else reverse("connections")


class AdminConsentHandler:
    """The admin-consent flow's handler for ``/OAuth2``, one per answer."""

    def consented(self, request: HttpRequest, flow: StoredFlow) -> HttpResponse:
        if not flow.same_browser:
            # The admin's own browser: nothing of the asker's is resumed or shown here.
            return render(request, "connections/consent_recorded.html")
        waiting = pending_waiting(flow.context.get("pending"))
        if waiting is None:
            pending = pending_of(flow.context)  # expired, or gone: back where it started
            retry_url = _waiting_page(pending.purpose) if pending else reverse("signup")
            return render(
                request,
                "connections/consent_recorded.html",
                {"expired": True, "retry_url": retry_url},
            )
        return redirect(pending_flow_resume(request, pending=waiting, tenant=flow.tenant))

    def failed(
        self, request: HttpRequest, flow: StoredFlow | None, error: EntraError
    ) -> HttpResponse:
        """A refusal (or a forged, replayed or mismatched answer) changes nothing; the
        pending row simply expires."""
        pending = pending_of(flow.context) if flow else None
        retry_url = _waiting_page(pending.purpose) if pending else reverse("signup")
        logger.warning(
            "admin consent failed",
            extra={"event": "admin_consent", "outcome": "failure", "code": error.code},
        )
        return render_failure(request, error, Audience.ADMIN, retry_url=retry_url)
