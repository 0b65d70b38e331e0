"""A connection's tokens and health: silent refresh, the WhoAmI check, "Test connection".

Health is written by ``connection_record_health`` only, on the version that was checked.
Stored credentials or tokens that stopped working mark the connection Needs
re-authentication, with the words an admin needs to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn

from django.conf import settings
from django.db import transaction
from django.db.models import Q
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
    retry_after: int | None = None,
    claims: str | None = None,
) -> None:
    """Record what a check found, on the version that was checked (a re-authorization
    committed meanwhile is left alone); a change to Needs re-authentication is audited.
    ``retry_after`` (Dynamics throttling) holds the next check back until then."""
    was = connection.status
    fields = {
        "status": status,
        "last_error_code": fit(DynamicsConnection, "last_error_code", code),
        "last_error_message": fit(DynamicsConnection, "last_error_message", message),
        "retry_after_until": (
            timezone.now() + timedelta(seconds=retry_after) if retry_after else None
        ),
    }
    if verified:
        fields["last_verified_at"] = timezone.now()
    if claims is not None:
        fields["claims_challenge"] = claims
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
    connection_record_health(
        connection,
        status,
        code=error.code,
        message=explanation.message,
        claims=error.claims or None,  # kept for the next re-authorization
    )
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
    """The connection cannot reach Dynamics now; its health has been recorded. ``busy``:
    Dynamics is throttling, nothing is broken."""

    def __init__(self, message: str, *, code: str, busy: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.busy = busy


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
        if locked.status == Status.DISCONNECTED:
            raise ConnectionUnusable(DISCONNECTED_WORDS, code="disconnected")
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
    busy: bool = False


def connection_check(*, connection: DynamicsConnection) -> CheckResult:
    """Prove the whole chain works now: a refresh (forced, so the app credentials and the
    refresh token are proven too, not only a cached access token) and a WhoAmI call."""
    try:
        checked = _who_am_i(connection, retry=True)
    except ConnectionUnusable as unusable:
        result = CheckResult(connection, False, unusable.message, unusable.code, unusable.busy)
    else:
        detail = f"WhoAmI answered for {checked.connected_as}."
        if checked.status == Status.WARNINGS:
            detail = f"{detail} {checked.last_error_message}"
        result = CheckResult(connection, True, detail)
    connection.refresh_from_db()
    return result


def _who_am_i(connection: DynamicsConnection, *, retry: bool) -> DynamicsConnection:
    """WhoAmI with a newly refreshed token, then one row of each table the product reads;
    health recorded either way. A token Dynamics refuses gets one more refresh before the
    connection needs re-authentication; throttling is Busy until its Retry-After, never a
    broken connection; a table the user may not read is a warning naming the fix."""
    token, checked = connection_access_token(connection=connection)
    try:
        dynamics.who_am_i(checked.org_url, token)
        missing = _unreadable_tables(checked.org_url, token)
    except dynamics.DynamicsError as error:
        if error.token_rejected and retry:
            return _who_am_i(connection, retry=False)
        _record_dynamics_failure(checked, error)
    if missing:
        words = " ".join(problem.message for problem in missing)
        codes = ",".join(problem.privilege for problem in missing)
        connection_record_health(checked, Status.WARNINGS, code=codes, message=words, verified=True)
    else:
        connection_record_health(checked, Status.CONNECTED, verified=True)
    return checked


def _unreadable_tables(org_url: str, token: Secret) -> list[dynamics.MissingPrivilege]:
    missing = []
    for table in settings.DYNAMICS_REQUIRED_TABLES:
        try:
            dynamics.read_one_row(org_url, token, table)
        except dynamics.MissingPrivilege as problem:
            missing.append(problem)
    return missing


def _record_dynamics_failure(
    connection: DynamicsConnection, error: dynamics.DynamicsError
) -> NoReturn:
    """Record what Dynamics answered (Busy with its Retry-After, Needs re-authentication for
    a refused token or a non-member, else Error) and raise ConnectionUnusable."""
    code = f"dynamics_{error.code}"
    if error.retry_after:
        connection_record_health(
            connection, Status.BUSY, code=code, message=error.message, retry_after=error.retry_after
        )
        raise ConnectionUnusable(error.message, code=code, busy=True) from None
    broken = error.token_rejected or error.code == "not_a_member"
    status = Status.NEEDS_REAUTH if broken else Status.ERROR
    connection_record_health(connection, status, code=code, message=error.message)
    raise ConnectionUnusable(error.message, code=code) from None


DISCONNECTED_WORDS = (
    "The Dynamics connection is disconnected: its tokens were deleted. Use the key icon to "
    "connect it again."
)


def connection_disconnect(*, connection: DynamicsConnection, actor: User) -> None:
    """Delete the connection's tokens (no ciphertext of them is kept), say Disconnected and
    audit it; checks and refreshes leave it alone from now on. The account's app registration
    stays, so members still sign in."""
    with transaction.atomic():
        locked = DynamicsConnection.objects.select_for_update().get(pk=connection.pk)
        locked.token_cache_encrypted = ""  # the tokens are gone, not a password: # nosec B105
        locked.home_account_id = ""
        locked.status = Status.DISCONNECTED
        locked.last_error_code = "disconnected"
        locked.last_error_message = DISCONNECTED_WORDS
        locked.retry_after_until = None
        locked.claims_challenge = ""
        locked.version += 1
        locked.save()
        audit_record(
            account=connection.account,
            actor=actor,
            action="disconnect",
            outcome=AuditEvent.Outcome.SUCCESS,
            detail=f"Dynamics {locked.org_url} disconnected; its tokens were deleted.",
        )
    connection.refresh_from_db()


def connection_claim_for_check(connection: DynamicsConnection, *, minutes: int = 5) -> bool:
    """Claim the connection for one check (``check_connections`` on many processes): a
    lease only one process wins; an abandoned one lapses after ``minutes``."""
    now = timezone.now()
    free = Q(check_claimed_until__isnull=True) | Q(check_claimed_until__lt=now)
    return bool(
        DynamicsConnection.objects.filter(free, pk=connection.pk).update(
            check_claimed_until=now + timedelta(minutes=minutes)
        )
    )


def connection_release_check(connection: DynamicsConnection) -> None:
    DynamicsConnection.objects.filter(pk=connection.pk).update(check_claimed_until=None)


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
