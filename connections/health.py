"""A connection's tokens and health: silent refresh, the WhoAmI check, "Test connection".

Health is written by ``connection_record_health`` only, on the version that was checked.
Stored credentials or tokens that stopped working mark the connection Needs
re-authentication, with the words an admin needs to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction
from django.dispatch import receiver
from django.utils import timezone

from accounts.aadsts import Audience, explain
from accounts.models import AuditEvent, EntraApp, User, fit
from accounts.services import audit_record
from accounts.signals import app_credentials_rejected
from connections.models import DynamicsConnection
from lib import crypto, dynamics
from lib.entra.errors import EntraError
from lib.entra.tokens import acquire_token_silently
from lib.secret import Secret

Status = DynamicsConnection.Status


def connection_record_health(
    connection: DynamicsConnection,
    status: str,
    *,
    code: str = "",
    message: str = "",
    verified: bool = False,
) -> None:
    """Record what a check found, on the version that was checked (a re-authorization
    committed meanwhile is left alone); a change to Needs re-authentication is audited."""
    was = connection.status
    fields = {
        "status": status,
        "last_error_code": fit(DynamicsConnection, "last_error_code", code),
        "last_error_message": fit(DynamicsConnection, "last_error_message", message),
    }
    if verified:
        fields["last_verified_at"] = timezone.now()
    if connection.write_health(fields) and status == Status.NEEDS_REAUTH and was != status:
        audit_record(
            account=connection.account,
            actor=None,
            action="connection_needs_reauth",
            outcome=AuditEvent.Outcome.FAILURE,
            detail=f"The Dynamics connection stopped working: {message}",
            error_code=code,
        )


def undecryptable_message(problem: crypto.UndecryptableValue) -> str:
    return f"{problem} Re-authorize the connection to store it again."


@receiver(app_credentials_rejected)
def _mark_needs_reauthorization(sender, *, app: EntraApp, error: EntraError, **kwargs) -> None:
    """Microsoft (or our key ring) rejected the account's app credentials during a sign-in."""
    connection = (
        DynamicsConnection.objects.select_related("account")
        .filter(account_id=app.account_id)
        .first()
    )
    if connection is not None:
        explanation = explain(error, Audience.ADMIN, client_id=app.client_id)
        connection_record_health(
            connection, Status.NEEDS_REAUTH, code=error.code, message=explanation.message
        )


class ConnectionUnusable(Exception):
    """The connection cannot reach Dynamics now; its health has been recorded."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def connection_access_token(
    *, connection: DynamicsConnection, force_refresh: bool = False
) -> tuple[Secret, DynamicsConnection]:
    """A Dynamics access token from the connection's token cache, refreshed when needed, and
    the row it came from.

    The row is locked while refreshing, so processes refreshing the same connection take
    turns; the cache is saved (encrypted) only when MSAL changed it. Credentials or a refresh
    token that no longer work mark the connection Needs re-authentication; anything else
    marks it Error. Either way ``ConnectionUnusable`` is raised.
    """
    with transaction.atomic():
        locked = (
            DynamicsConnection.objects.select_for_update(of=("self",))
            .select_related("account__entra_app")
            .get(pk=connection.pk)
        )
        app = locked.account.entra_app
        try:
            token = acquire_token_silently(
                app.credentials(),
                token_cache=crypto.decrypt(
                    locked.token_cache_encrypted, context=locked.token_cache_context()
                ),
                scopes=(dynamics.dynamics_scope(locked.org_url),),
                home_account_id=locked.home_account_id,
                force_refresh=force_refresh,
            )
        except crypto.UndecryptableValue as problem:
            what = "secret" if problem.context == app.credential_context() else "token_cache"
            failure = (undecryptable_message(problem), f"undecryptable_{what}", True)
        except EntraError as error:
            explanation = explain(error, Audience.ADMIN, client_id=app.client_id)
            failure = (explanation.message, error.code, explanation.breaks_the_app_credentials)
        else:
            if token.token_cache is not None:
                locked.token_cache_encrypted = crypto.encrypt(
                    token.token_cache, context=locked.token_cache_context()
                )
                locked.save(update_fields=["token_cache_encrypted", "updated_at"])
            return token.access_token, locked
    message, code, needs_reauthorization = failure
    connection_record_health(
        locked,
        Status.NEEDS_REAUTH if needs_reauthorization else Status.ERROR,
        code=code,
        message=message,
    )
    raise ConnectionUnusable(message, code=code)


@dataclass(frozen=True)
class CheckResult:
    connection: DynamicsConnection
    ok: bool
    detail: str
    code: str = ""


def connection_check(*, connection: DynamicsConnection) -> CheckResult:
    """Prove the whole chain works now: a refresh (forced, so the app credentials and the
    refresh token are proven too, not only a cached access token) and a WhoAmI call."""
    try:
        checked = _who_am_i(connection, retry=True)
    except ConnectionUnusable as unusable:
        result = CheckResult(connection, False, unusable.message, unusable.code)
    else:
        result = CheckResult(connection, True, f"WhoAmI answered for {checked.connected_as}.")
    connection.refresh_from_db()
    return result


def _who_am_i(connection: DynamicsConnection, *, retry: bool) -> DynamicsConnection:
    """WhoAmI with a newly refreshed token, health recorded either way. A token Dynamics
    refuses gets one more refresh before the connection needs re-authentication."""
    token, checked = connection_access_token(connection=connection, force_refresh=True)
    try:
        dynamics.who_am_i(checked.org_url, token)
    except dynamics.DynamicsError as error:
        if error.token_rejected and retry:
            return _who_am_i(connection, retry=False)
        code = f"dynamics_{error.code}"
        broken = error.token_rejected or error.code == "not_a_member"
        status = Status.NEEDS_REAUTH if broken else Status.ERROR
        connection_record_health(checked, status, code=code, message=error.message)
        raise ConnectionUnusable(error.message, code=code) from None
    connection_record_health(checked, Status.CONNECTED, verified=True)
    return checked


def connection_test(*, connection: DynamicsConnection, actor: User) -> CheckResult:
    """An admin's "Test connection": the check, recorded in the account's audit trail."""
    result = connection_check(connection=connection)
    audit_record(
        account=connection.account,
        actor=actor,
        action="connection_test",
        outcome=AuditEvent.Outcome.SUCCESS if result.ok else AuditEvent.Outcome.FAILURE,
        detail=result.detail,
        error_code=result.code,
    )
    return result
