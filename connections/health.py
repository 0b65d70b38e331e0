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
from lib.entra.errors import EntraError, Remedy
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


def undecryptable(what: str) -> EntraError:
    """No configured key opens the stored ``secret`` or ``token_cache``: only a new
    authorization can store it again."""
    return EntraError(code=f"undecryptable_{what}", remedy=Remedy.REAUTHORIZE)


def connection_record_failure(
    connection: DynamicsConnection, error: EntraError, *, client_id: str = ""
) -> str:
    """Record a failure of the connection's credentials or tokens in an admin's words: Needs
    re-authentication when they stopped working, else Error. Returns the words."""
    explanation = explain(error, Audience.ADMIN, client_id=client_id)
    status = Status.NEEDS_REAUTH if explanation.breaks_the_app_credentials else Status.ERROR
    connection_record_health(connection, status, code=error.code, message=explanation.message)
    return explanation.message


@receiver(app_credentials_rejected)
def _mark_needs_reauthorization(sender, *, app: EntraApp, error: EntraError, **kwargs) -> None:
    """Microsoft (or our key ring) rejected the account's app credentials during a sign-in."""
    connection = (
        DynamicsConnection.objects.select_related("account")
        .filter(account_id=app.account_id)
        .first()
    )
    if connection is not None:
        connection_record_failure(connection, error, client_id=app.client_id)


class ConnectionUnusable(Exception):
    """The connection cannot reach Dynamics now; its health has been recorded."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def connection_access_token(*, connection: DynamicsConnection) -> tuple[Secret, DynamicsConnection]:
    """A newly refreshed Dynamics access token (forced, so the app credentials and the refresh
    token are proven too, not a cached token) and the connection row it came from.

    The row is locked while refreshing, so processes refreshing the same connection take
    turns; the new token cache is saved (encrypted). Credentials or a refresh
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
                force_refresh=True,
            )
        except crypto.UndecryptableValue as problem:
            failure = undecryptable(
                "secret" if problem.context == app.credential_context() else "token_cache"
            )
        except EntraError as error:
            failure = error
        else:
            if token.token_cache is not None:
                locked.token_cache_encrypted = crypto.encrypt(
                    token.token_cache, context=locked.token_cache_context()
                )
                locked.save(update_fields=["token_cache_encrypted", "updated_at"])
            return token.access_token, locked
    # Outside the transaction, so that the health it records is not rolled back with it.
    message = connection_record_failure(locked, failure, client_id=app.client_id)
    raise ConnectionUnusable(message, code=failure.code)


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
    token, checked = connection_access_token(connection=connection)
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
