"""One renderer for a failed authorization, and the product's own refusals.

A ``Refused`` is a flow the product itself declined to complete (its pending request is gone, the
person may not complete it): it carries its own words. Every other failure gets its words from
``accounts/aadsts.py``, chosen for the reader.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.aadsts import Audience, Explanation, explain
from lib.entra.errors import EntraError, FlowRefused, Remedy


class Refused(FlowRefused):
    """The product declined a flow; ``message`` is for the person, ``code`` for the logs."""

    def __init__(self, message: str, *, code: str, remedy: Remedy = Remedy.START_AGAIN) -> None:
        super().__init__(code=code, remedy=remedy)
        self.message = message


def describe(error: EntraError, audience: Audience, **placeholders: str) -> Explanation:
    if isinstance(error, Refused):
        return Explanation(message=error.message, remedy=error.remedy, code=error.code)
    return explain(error, audience, **placeholders)


def render_failure(
    request: HttpRequest,
    error: EntraError,
    audience: Audience,
    *,
    retry_url: str = "/",
    **placeholders: str,
) -> HttpResponse:
    """The one friendly page for a failed authorization; "cancelled" is told apart."""
    return render_explanation(
        request, describe(error, audience, **placeholders), retry_url=retry_url
    )


def render_explanation(
    request: HttpRequest, explanation: Explanation, *, retry_url: str = "/"
) -> HttpResponse:
    """``render_failure`` for a caller that has explained the failure already."""
    return render(
        request,
        "accounts/auth_error.html",
        {"error": explanation, "cancelled": explanation.cancelled, "retry_url": retry_url},
        status=200 if explanation.cancelled else 400,
    )
