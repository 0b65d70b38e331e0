"""Writes and outbound calls for Dynamics connections: signup, re-authorization, tokens.

Nothing is written to an account or connection until Entra ID has issued tokens for the
submitted credentials and Dynamics' WhoAmI has accepted them; the credentials wait meanwhile
in an encrypted, expiring ``PendingAuthorization``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import entra
from accounts.entra import AppRegistration, SignInResult, StoredFlow
from accounts.models import Account, AuditEvent, Membership, User
from accounts.services import audit_record, user_from_identity
from bizible_site.sensitive import Secret
from connections import crypto, dynamics
from connections.models import DynamicsConnection, PendingAuthorization

logger = logging.getLogger("dynamics_connect.connections")

SIGNUP_RETRY_FIELDS = ("company_name", "phone", "website", "client_id", "org_url")


class AuthorizationFailed(Exception):
    """A signup or re-authorization that did not go through; nothing was changed.

    ``message`` is for the person (what happened, what to do); ``code`` is for logs and the
    audit trail; ``fields`` are the submitted values minus the secret, to fill the form again.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str,
        cancelled: bool = False,
        fields: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.cancelled = cancelled
        self.fields = fields or {}


@dataclass(frozen=True)
class SignupRequest:
    company_name: str
    phone: str
    website: str
    client_id: str
    client_secret: Secret = field(repr=False)
    org_url: str


def pending_signup_create(*, signup: SignupRequest) -> PendingAuthorization:
    """Keep the submitted signup (secret encrypted) until Entra ID has proven it."""
    pending = PendingAuthorization(
        purpose=PendingAuthorization.Purpose.SIGNUP,
        company_name=signup.company_name,
        phone=signup.phone,
        website=signup.website,
        client_id=signup.client_id,
        org_url=signup.org_url,
    )
    return _store_pending(pending, signup.client_secret)


def _store_pending(pending: PendingAuthorization, secret: Secret) -> PendingAuthorization:
    """Save a pending authorization with its secret encrypted; drop expired ones meanwhile."""
    PendingAuthorization.objects.filter(expires_at__lt=timezone.now()).delete()
    pending.client_secret_encrypted = crypto.encrypt(secret, context=pending.secret_context())
    pending.save()
    return pending


def signup_app_registration(signup: SignupRequest) -> AppRegistration:
    """Signup runs on /organizations: the customer's tenant is not known until they sign in."""
    return AppRegistration(signup.client_id, signup.client_secret, entra.ORGANIZATIONS)


@dataclass(frozen=True)
class SignupResult:
    account: Account
    user: User
    other_accounts_of_tenant: list[Account]


def account_create_from_signup(*, flow: StoredFlow, callback_params) -> SignupResult:
    """Complete a signup: tokens, WhoAmI, then account + connection + admin in ONE transaction.

    Raises AuthorizationFailed (with the form's values minus the secret) on any failure, in
    which case nothing is created.
    """
    pending = _claim_pending(flow, PendingAuthorization.Purpose.SIGNUP)
    fields = {name: getattr(pending, name) for name in SIGNUP_RETRY_FIELDS}
    try:
        proven = _prove_credentials(pending, flow, callback_params)
        with transaction.atomic():
            result = _create_account(pending, proven)
            pending.delete()
    except AuthorizationFailed as failure:
        failure.fields = fields
        pending.delete()
        raise
    logger.info(
        "signup completed",
        extra={
            "event": "signup",
            "outcome": "success",
            "account": result.account.account_id,
            "oid": proven.identity.object_id,
            "tenant": proven.identity.tenant_id,
        },
    )
    return result


def _claim_pending(flow: StoredFlow, purpose: str) -> PendingAuthorization:
    """The flow's pending authorization, claimed for this request alone.

    A reloaded or doubled callback may run twice at once; only the request that claims the
    row completes it, and the other says so without touching it.
    """
    pending = (
        PendingAuthorization.objects.select_related("connection__account")
        .filter(pk=flow.context.get("pending"), purpose=purpose)
        .first()
    )
    if pending is None:
        raise AuthorizationFailed(
            "This link was already used or has expired, so nothing was changed. Please submit "
            "the form again.",
            code="pending_missing",
        )
    claimed = PendingAuthorization.objects.filter(pk=pending.pk, consumed_at__isnull=True).update(
        consumed_at=timezone.now()
    )
    if not claimed:
        raise AuthorizationFailed(
            "This is already being completed in another tab or window. Check there.",
            code="pending_in_progress",
        )
    return pending


_CANCELLED = {
    PendingAuthorization.Purpose.SIGNUP: (
        "You cancelled at Microsoft's sign-in, so no account was created. Submit the form "
        "again when you are ready."
    ),
    PendingAuthorization.Purpose.REAUTHORIZE: (
        "You cancelled at Microsoft's sign-in. The connection was not changed."
    ),
}


@dataclass(frozen=True)
class _Proven:
    """Pending credentials that Entra ID and WhoAmI accepted: the identity and the secret."""

    identity: SignInResult
    client_secret: Secret = field(repr=False)


def _prove_credentials(pending: PendingAuthorization, flow: StoredFlow, callback_params) -> _Proven:
    """Redeem the code with the pending secret and call WhoAmI; AuthorizationFailed if not."""
    if pending.is_expired:
        raise AuthorizationFailed(
            f"This took longer than {settings.AUTH_FLOW_TTL_MINUTES} minutes, so it expired. "
            "Please submit the form again.",
            code="pending_expired",
        )
    try:
        secret = crypto.decrypt(pending.client_secret_encrypted, context=pending.secret_context())
        identity = entra.redeem(flow, callback_params, client_secret=secret)
        dynamics.who_am_i(pending.org_url, identity.access_token)
    except entra.SignInCancelled as cancelled:
        raise AuthorizationFailed(
            _CANCELLED[pending.purpose], code=cancelled.code, cancelled=True
        ) from None
    except entra.EntraError as error:
        raise AuthorizationFailed(error.message, code=error.code) from None
    except dynamics.DynamicsError as error:
        raise AuthorizationFailed(error.message, code=f"dynamics_{error.code}") from None
    except crypto.UndecryptableValue:
        raise AuthorizationFailed(
            "The request could not be completed. Please submit the form again.",
            code="undecryptable_pending",
        ) from None
    return _Proven(identity=identity, client_secret=secret)


def _create_account(pending: PendingAuthorization, proven: _Proven) -> SignupResult:
    identity = proven.identity
    other_accounts = list(Account.objects.filter(tenant_id=identity.tenant_id).order_by("id"))
    account = Account.objects.create(
        company_name=pending.company_name,
        phone=pending.phone,
        website=pending.website,
        tenant_id=identity.tenant_id,
    )
    now = timezone.now()
    connection = DynamicsConnection(
        account=account,
        client_id=pending.client_id,
        org_url=pending.org_url,
        tenant_id=identity.tenant_id,
        secret_set_at=now,
        secret_expires_on=pending.secret_expires_on,
        home_account_id=identity.home_account_id,
        connected_as=identity.username,
        status=DynamicsConnection.Status.CONNECTED,
        last_verified_at=now,
    )
    connection.client_secret_encrypted = crypto.encrypt(
        proven.client_secret, context=connection.secret_context()
    )
    connection.token_cache_encrypted = crypto.encrypt(
        identity.token_cache, context=connection.token_cache_context()
    )
    connection.save()
    user = user_from_identity(identity=identity)
    Membership.objects.create(account=account, user=user, role=Membership.Role.ADMIN)
    audit_record(
        account=account,
        actor=user,
        action="signup",
        outcome=AuditEvent.Outcome.SUCCESS,
        detail=f"Account created; Dynamics {pending.org_url} connected as {identity.username}.",
    )
    return SignupResult(account=account, user=user, other_accounts_of_tenant=other_accounts)


# --- Re-authorization -----------------------------------------------------------------------


@dataclass(frozen=True)
class ReauthorizationRequest:
    client_id: str
    client_secret: Secret = field(repr=False)
    org_url: str
    secret_expires_on: date | None = None


def pending_reauthorization_create(
    *, connection: DynamicsConnection, actor: User, request: ReauthorizationRequest
) -> PendingAuthorization:
    """Keep new credentials (secret encrypted) until Entra ID and WhoAmI have proven them.

    Records the connection's version: if the connection changes meanwhile (another admin's
    re-authorization), this one will not overwrite it.
    """
    pending = PendingAuthorization(
        purpose=PendingAuthorization.Purpose.REAUTHORIZE,
        connection=connection,
        requested_by=actor,
        client_id=request.client_id,
        org_url=request.org_url,
        secret_expires_on=request.secret_expires_on,
        connection_version=connection.version,
    )
    return _store_pending(pending, request.client_secret)


def reauthorization_app_registration(
    *, connection: DynamicsConnection, request: ReauthorizationRequest
) -> AppRegistration:
    """New credentials run on the connection's own tenant: a connection cannot move tenants."""
    return AppRegistration(request.client_id, request.client_secret, connection.tenant_id)


def connection_reauthorize(*, flow: StoredFlow, callback_params, actor: User) -> DynamicsConnection:
    """Complete a re-authorization: prove the new values, then swap them in atomically.

    On any failure the stored connection is left exactly as it was (same ciphertexts, same
    token cache), a failed audit event is written, and AuthorizationFailed is raised.
    """
    try:
        pending = _claim_pending(flow, PendingAuthorization.Purpose.REAUTHORIZE)
    except AuthorizationFailed as failure:
        if failure.code == "pending_missing":
            reauthorization_record_failure(
                connection_id=flow.context.get("connection"),
                actor=actor,
                code=failure.code,
                message=failure.message,
            )
        raise
    connection = pending.connection
    try:
        if pending.requested_by_id != actor.pk or not _is_active_admin(actor, connection):
            raise AuthorizationFailed(
                "Only the admin who started this re-authorization can complete it. Nothing "
                "was changed.",
                code="actor_mismatch",
            )
        proven = _prove_credentials(pending, flow, callback_params)
        if proven.identity.tenant_id != connection.tenant_id:
            raise AuthorizationFailed(
                "You signed in with an account of another Microsoft tenant. A connection stays "
                "in its organization's tenant; nothing was changed.",
                code="tenant_mismatch",
            )
        with transaction.atomic():
            locked = DynamicsConnection.objects.select_for_update().get(pk=connection.pk)
            if locked.version != pending.connection_version:
                raise AuthorizationFailed(
                    "Another admin changed this connection while you were signing in, so "
                    "your change was not applied. Check the connection and try again if "
                    "needed.",
                    code="changed_meanwhile",
                )
            _replace_credentials(locked, pending, proven)
            audit_record(
                account=connection.account,
                actor=actor,
                action="reauthorize",
                outcome=AuditEvent.Outcome.SUCCESS,
                detail=f"Re-authorized with Client Id {pending.client_id} for {pending.org_url} "
                f"as {proven.identity.username}.",
            )
            pending.delete()
    except AuthorizationFailed as failure:
        _audit_reauthorization_failure(
            connection, actor, failure, detail=f" with Client Id {pending.client_id}"
        )
        pending.delete()
        raise
    return locked


def reauthorization_record_failure(
    *, connection_id: int | None, actor: User, code: str, message: str
) -> None:
    """Audit a re-authorization that failed before its pending row was found (replayed or
    expired link), when the person is an admin of the connection's account."""
    connection = (
        DynamicsConnection.objects.select_related("account").filter(pk=connection_id).first()
    )
    if connection is not None and actor.is_authenticated and _is_active_admin(actor, connection):
        _audit_reauthorization_failure(
            connection, actor, AuthorizationFailed(message, code=code), detail=""
        )


def _audit_reauthorization_failure(
    connection: DynamicsConnection, actor: User, failure: AuthorizationFailed, *, detail: str
) -> None:
    audit_record(
        account=connection.account,
        actor=actor,
        action="reauthorize",
        outcome=AuditEvent.Outcome.FAILURE,
        detail=f"Re-authorization{detail} failed: {failure.message}",
        error_code=failure.code,
    )


def _is_active_admin(user: User, connection: DynamicsConnection) -> bool:
    return Membership.objects.filter(
        account_id=connection.account_id, user=user, role=Membership.Role.ADMIN, is_blocked=False
    ).exists()


def _replace_credentials(
    connection: DynamicsConnection, pending: PendingAuthorization, proven: _Proven
) -> None:
    now = timezone.now()
    identity = proven.identity
    connection.client_id = pending.client_id
    connection.client_secret_encrypted = crypto.encrypt(
        proven.client_secret, context=connection.secret_context()
    )
    connection.secret_set_at = now
    connection.secret_expires_on = pending.secret_expires_on
    connection.org_url = pending.org_url
    connection.token_cache_encrypted = crypto.encrypt(
        identity.token_cache, context=connection.token_cache_context()
    )
    connection.home_account_id = identity.home_account_id
    connection.connected_as = identity.username
    connection.status = DynamicsConnection.Status.CONNECTED
    connection.last_error_code = connection.last_error_message = ""
    connection.last_verified_at = now
    connection.version += 1
    connection.save()


# --- Tokens and health ----------------------------------------------------------------------


class ConnectionUnusable(Exception):
    """The connection cannot reach Dynamics now. ``connection`` is the row as it was read;
    ``needs_reauthorization`` says it has been marked so (only a new sign-in can fix it)."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        connection: DynamicsConnection,
        needs_reauthorization: bool,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.connection = connection
        self.needs_reauthorization = needs_reauthorization


@dataclass(frozen=True)
class ConnectionToken:
    """A Dynamics access token and the connection row (org URL, version) it belongs to."""

    access_token: Secret
    connection: DynamicsConnection


def connection_access_token(
    *, connection: DynamicsConnection, force_refresh: bool = False
) -> ConnectionToken:
    """A Dynamics access token from the connection's token cache, refreshed when needed.

    The row is locked while refreshing, so processes refreshing the same connection take
    turns; the cache is saved (encrypted) only when MSAL changed it. A refresh token or app
    credentials that no longer work mark the connection Needs re-authentication.
    """
    with transaction.atomic():
        locked = (
            DynamicsConnection.objects.select_for_update()
            .select_related("account")
            .get(pk=connection.pk)
        )
        try:
            token = _silent_token(locked, force_refresh=force_refresh)
        except (crypto.UndecryptableValue, entra.EntraError) as error:
            failure = error
        else:
            failure = None
            if token.token_cache:
                locked.token_cache_encrypted = crypto.encrypt(
                    token.token_cache, context=locked.token_cache_context()
                )
                locked.save(update_fields=["token_cache_encrypted", "updated_at"])
    if failure is None:
        return ConnectionToken(access_token=token.access_token, connection=locked)
    if isinstance(failure, crypto.UndecryptableValue):
        message, code, rejected = str(failure), "undecryptable_token_cache", True
    else:
        message, code, rejected = failure.message, failure.code, failure.credentials_rejected
    if rejected:
        locked.mark_needs_reauthorization(code=code, message=message)
    raise ConnectionUnusable(message, code=code, connection=locked, needs_reauthorization=rejected)


def _silent_token(connection: DynamicsConnection, *, force_refresh: bool) -> entra.SilentToken:
    cache = crypto.decrypt(
        connection.token_cache_encrypted, context=connection.token_cache_context()
    )
    return entra.acquire_token_silently(
        connection.app_registration(),
        token_cache=cache.reveal(),
        scopes=[entra.dynamics_scope(connection.org_url)],
        home_account_id=connection.home_account_id,
        force_refresh=force_refresh,
    )


@dataclass(frozen=True)
class CheckResult:
    connection: DynamicsConnection
    ok: bool
    detail: str
    code: str = ""


def connection_check(*, connection: DynamicsConnection) -> CheckResult:
    """Prove the connection works now: a (silently refreshed) token and a WhoAmI call.

    Updates the status, the last error and, on success, the last verified time, on the row
    version the token came from (a re-authorization committed meanwhile is left alone). A
    WhoAmI 401 gets one forced refresh before the connection needs re-authentication.
    """
    try:
        token = connection_access_token(connection=connection)
        try:
            dynamics.who_am_i(token.connection.org_url, token.access_token)
        except dynamics.DynamicsError as error:
            if not error.token_rejected:
                raise
            token = connection_access_token(connection=connection, force_refresh=True)
            dynamics.who_am_i(token.connection.org_url, token.access_token)
    except ConnectionUnusable as unusable:
        if not unusable.needs_reauthorization:
            _set_status(
                unusable.connection,
                DynamicsConnection.Status.ERROR,
                unusable.code,
                unusable.message,
            )
        result = CheckResult(connection, False, unusable.message, unusable.code)
    except dynamics.DynamicsError as error:
        code = f"dynamics_{error.code}"
        if error.token_rejected or error.code == "not_a_member":
            token.connection.mark_needs_reauthorization(code=code, message=error.message)
        else:
            _set_status(token.connection, DynamicsConnection.Status.ERROR, code, error.message)
        result = CheckResult(connection, False, error.message, code)
    else:
        _set_status(token.connection, DynamicsConnection.Status.CONNECTED, "", "", verified=True)
        result = CheckResult(
            connection, True, f"WhoAmI answered for {token.connection.connected_as}."
        )
    connection.refresh_from_db()
    return result


def _set_status(
    snapshot: DynamicsConnection, status: str, code: str, message: str, *, verified: bool = False
) -> None:
    """Update only the health fields, and only on the version that was checked."""
    fields = {"status": status, "last_error_code": code[:64], "last_error_message": message[:1000]}
    if verified:
        fields["last_verified_at"] = timezone.now()
    DynamicsConnection.objects.filter(pk=snapshot.pk, version=snapshot.version).update(
        **fields, updated_at=timezone.now()
    )


def connection_set_secret_expiry(
    *, connection: DynamicsConnection, expires_on: date | None, actor: User
) -> bool:
    """Record the current secret's expiry date. False if the connection was re-authorized
    since it was shown (the date would then describe another secret)."""
    saved = DynamicsConnection.objects.filter(pk=connection.pk, version=connection.version).update(
        secret_expires_on=expires_on, updated_at=timezone.now()
    )
    if saved:
        audit_record(
            account=connection.account,
            actor=actor,
            action="secret_expiry",
            outcome=AuditEvent.Outcome.SUCCESS,
            detail=f"Client secret expiry date set to {expires_on or 'none'}.",
        )
    return bool(saved)


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
