"""Writes and outbound calls for Dynamics connections: signup and (later) re-authorization.

Nothing is written to an account or connection until Entra ID has issued tokens for the
submitted credentials and Dynamics' WhoAmI has accepted them; the credentials wait meanwhile
in an encrypted, expiring ``PendingAuthorization``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

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
    PendingAuthorization.objects.filter(expires_at__lt=timezone.now()).delete()
    pending = PendingAuthorization(
        purpose=PendingAuthorization.Purpose.SIGNUP,
        company_name=signup.company_name,
        phone=signup.phone,
        website=signup.website,
        client_id=signup.client_id,
        org_url=signup.org_url,
    )
    pending.client_secret_encrypted = crypto.encrypt(
        signup.client_secret, context=pending.secret_context()
    )
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
    pending = PendingAuthorization.objects.filter(
        pk=flow.context.get("pending"), purpose=PendingAuthorization.Purpose.SIGNUP
    ).first()
    if pending is None or pending.consumed_at is not None:
        raise AuthorizationFailed(
            "This signup link was already used or has expired. Please fill in the form again.",
            code="pending_missing",
        )
    fields = {name: getattr(pending, name) for name in SIGNUP_RETRY_FIELDS}
    try:
        identity = _prove_credentials(pending, flow, callback_params)
        with transaction.atomic():
            locked = (
                PendingAuthorization.objects.select_for_update()
                .filter(pk=pending.pk, consumed_at__isnull=True)
                .first()
            )
            if locked is None:
                raise AuthorizationFailed(
                    "This signup was already completed in another tab. Sign in instead.",
                    code="pending_consumed",
                )
            result = _create_account(locked, identity)
            locked.delete()
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
            "oid": identity.object_id,
            "tenant": identity.tenant_id,
        },
    )
    return result


def _prove_credentials(
    pending: PendingAuthorization, flow: StoredFlow, callback_params
) -> SignInResult:
    """Redeem the code with the pending secret and call WhoAmI; AuthorizationFailed if not."""
    if pending.is_expired:
        raise AuthorizationFailed(
            "The signup took longer than 15 minutes, so it expired. Please submit the form again.",
            code="pending_expired",
        )
    try:
        secret = crypto.decrypt(pending.client_secret_encrypted, context=pending.secret_context())
        identity = entra.redeem(flow, callback_params, client_secret=secret)
        dynamics.who_am_i(pending.org_url, identity.access_token)
    except entra.SignInCancelled as cancelled:
        raise AuthorizationFailed(
            "You cancelled at Microsoft's sign-in, so no account was created. Submit the form "
            "again when you are ready.",
            code=cancelled.code,
            cancelled=True,
        ) from None
    except entra.EntraError as error:
        raise AuthorizationFailed(error.message, code=error.code) from None
    except dynamics.DynamicsError as error:
        raise AuthorizationFailed(error.message, code=f"dynamics_{error.code}") from None
    except crypto.UndecryptableValue:
        raise AuthorizationFailed(
            "The signup could not be completed. Please submit the form again.",
            code="undecryptable_pending",
        ) from None
    return identity


def _create_account(pending: PendingAuthorization, identity: SignInResult) -> SignupResult:
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
    secret = crypto.decrypt(pending.client_secret_encrypted, context=pending.secret_context())
    connection.client_secret_encrypted = crypto.encrypt(secret, context=connection.secret_context())
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
