"""accounts/aadsts.py: the words for every Entra ID failure, chosen for the reader."""

from __future__ import annotations

import pytest

from accounts.aadsts import Audience, explain
from lib.entra.errors import (
    EntraUnavailable,
    FlowExpired,
    Remedy,
    SignInCancelled,
    error_from_response,
)


def token_error(aadsts: int, error: str = "invalid_request"):
    return error_from_response(
        {"error": error, "error_codes": [aadsts], "correlation_id": "c0ffee"},
        from_token_endpoint=True,
    )


def test_the_words_fill_in_what_the_admin_must_fix():
    redirect = explain(token_error(50011), Audience.ADMIN, redirect_uri="http://testserver/OAuth2")
    client = explain(token_error(700016, "unauthorized_client"), Audience.ADMIN, client_id="abc")

    assert "add exactly http://testserver/OAuth2" in redirect.message
    assert "Client Id abc was not found" in client.message
    assert client.remedy is Remedy.FIX_APP_CREDENTIALS
    assert client.breaks_the_app_credentials


@pytest.mark.parametrize("aadsts", [50076, 50079, 70008, 50173, 7000215, 700082])
def test_a_member_signing_in_is_never_told_to_re_authorize(aadsts):
    member = explain(token_error(aadsts), Audience.SIGNING_IN)
    admin = explain(token_error(aadsts), Audience.ADMIN)

    told_whom_to_ask = "ask an admin of your account to re-authorize"
    assert "re-authorize" not in member.message.lower().replace(told_whom_to_ask, "")
    assert "Re-authorize" in admin.message or "Value" in admin.message


def test_mfa_required_tells_the_member_to_sign_in_again_and_the_admin_to_reauthorize():
    member = explain(token_error(50076, "invalid_grant"), Audience.SIGNING_IN)
    admin = explain(token_error(50076, "invalid_grant"), Audience.ADMIN)

    assert "Sign in again" in member.message and "Entra ID admin" in member.message
    assert "Re-authorize to complete it" in admin.message
    assert admin.remedy is Remedy.REAUTHORIZE


def test_rejected_app_credentials_tell_a_member_whom_to_ask():
    member = explain(token_error(7000215, "invalid_client"), Audience.SIGNING_IN)

    assert "Ask an admin of your account to re-authorize" in member.message
    assert "AADSTS7000215" in member.message


def test_an_unknown_code_still_gives_words_with_the_code_and_the_protocols_remedy():
    unknown = explain(token_error(123456, "invalid_client"), Audience.ADMIN)

    assert unknown.code == "AADSTS123456"
    assert "AADSTS123456" in unknown.message
    assert unknown.remedy is Remedy.FIX_APP_CREDENTIALS


def test_failures_without_a_code_get_the_words_of_their_kind():
    assert "try again" in explain(EntraUnavailable(code="timeout"), Audience.ADMIN).message
    assert "start again" in explain(FlowExpired(code="state"), Audience.SIGNING_IN).message
    cancelled = explain(SignInCancelled(code="access_denied"), Audience.SIGNING_IN)
    assert cancelled.cancelled and "cancelled" in cancelled.message


def test_the_reference_carries_the_code_and_correlation_id_but_no_description():
    explanation = explain(token_error(7000215, "invalid_client"), Audience.ADMIN)

    assert (explanation.code, explanation.correlation_id) == ("AADSTS7000215", "c0ffee")
