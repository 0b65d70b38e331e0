"""Writes for accounts, users and the audit trail. Keyword-only, each under a transaction."""

from __future__ import annotations

import logging
from datetime import date

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.utils import timezone

from accounts.aadsts import Audience, explain
from accounts.failures import Refused
from accounts.models import Account, AuditEvent, EntraApp, Membership, User, fit
from lib.entra.errors import Remedy, WrongTenant
from lib.entra.types import ProvenIdentity

logger = logging.getLogger("dynamics_connect.auth")


def _display_data(identity: ProvenIdentity) -> tuple[str, str]:
    """The display name and e-mail an id token gives, cut to fit the user's columns."""
    email = identity.email or (identity.username if "@" in identity.username else "")
    return fit(User, "display_name", identity.display_name), fit(User, "email", email)


def _refresh_display_data(user: User, identity: ProvenIdentity) -> None:
    display_name, email = _display_data(identity)
    if (user.display_name, user.email) != (display_name, email):
        user.display_name, user.email = display_name, email
        user.save(update_fields=["display_name", "email"])


def user_from_identity(*, identity: ProvenIdentity) -> User:
    """The user with this Entra identity ``(tid, oid)``, created on first sight.

    Display name and e-mail are display data: refreshed from the id token at every sign-in,
    never used to find the user.
    """
    display_name, email = _display_data(identity)
    with transaction.atomic():
        user, created = User.objects.select_for_update().get_or_create(
            tenant_id=identity.tenant_id,
            object_id=identity.object_id,
            defaults={
                "username": f"{identity.object_id}.{identity.tenant_id}",
                "password": make_password(None),  # Entra ID users never have a password here
                "display_name": display_name,
                "email": email,
            },
        )
        if not created:
            _refresh_display_data(user, identity)
    return user


def audit_record(
    *,
    account: Account | None,
    actor: User | None,
    action: str,
    outcome: str,
    detail: str = "",
    error_code: str = "",
) -> AuditEvent:
    """Write an audit event and the matching structured log line. ``detail`` is shown to the
    account's admins: identifiers and plain words only, never a secret or token."""
    event = AuditEvent.objects.create(
        account=account,
        actor=actor,
        action=action,
        outcome=outcome,
        detail=fit(AuditEvent, "detail", detail),
        error_code=fit(AuditEvent, "error_code", error_code),
    )
    logger.info(
        "audit %s %s",
        action,
        outcome,
        extra={
            "event": action,
            "outcome": outcome,
            "account": account.account_id if account else "",
            "oid": actor.object_id if actor else "",
            "code": error_code,
        },
    )
    return event


class SignInRefused(Refused):
    """Entra ID vouched for the person, but this account does not let them in."""


def member_sign_in(*, account: Account, identity: ProvenIdentity) -> Membership:
    """The membership a verified identity signs in with; a first sign-in makes a member.

    ``account`` comes with its ``entra_app``: the identity must be of the app's tenant.
    """
    if identity.tenant_id != account.entra_app.tenant_id:
        wrong_tenant = explain(WrongTenant(code="tenant_mismatch"), Audience.SIGNING_IN)
        raise SignInRefused(wrong_tenant.message, code="tenant_mismatch", remedy=Remedy.ASK_ADMIN)
    # A returning member: one query finds the membership with its user (unique: no ORDER BY).
    returning = Membership.objects.select_related("user").filter(
        account=account, user__tenant_id=identity.tenant_id, user__object_id=identity.object_id
    )
    membership = next(iter(returning[:1]), None)
    created = membership is None
    if created:
        user = user_from_identity(identity=identity)
        membership, created = Membership.objects.get_or_create(
            account=account, user=user, defaults={"role": Membership.Role.MEMBER}
        )
    else:
        user = membership.user
        _refresh_display_data(user, identity)
    if membership.is_blocked:
        audit_record(
            account=account,
            actor=user,
            action="sign_in",
            outcome=AuditEvent.Outcome.FAILURE,
            detail=f"{user} was refused: their access was removed.",
            error_code="blocked",
        )
        raise SignInRefused(
            f"An admin of {account.company_name} removed your access. Ask them to restore it.",
            code="blocked",
            remedy=Remedy.ASK_ADMIN,
        )
    if created:
        audit_record(
            account=account,
            actor=user,
            action="member_joined",
            outcome=AuditEvent.Outcome.SUCCESS,
            detail=f"{user} signed in for the first time.",
        )
    logger.info(
        "signed in",
        extra={
            "event": "sign_in",
            "outcome": "success",
            "account": account.account_id,
            "oid": user.object_id,
            "role": membership.role,
        },
    )
    return membership


class MembershipChangeRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


MEMBERSHIP_ACTIONS = {
    "promote": "made an admin",
    "demote": "made a member",
    "block": "removed",
    "restore": "restored",
}


def membership_change(*, admin: Membership, target: Membership, action: str) -> Membership:
    """Promote, demote, block (remove) or restore a member of the admin's own account.

    The account always keeps at least one active admin, so nobody locks everyone out.
    """
    if action not in MEMBERSHIP_ACTIONS:
        raise MembershipChangeRefused("Unknown action.")
    with transaction.atomic():
        memberships = Membership.objects.select_for_update().filter(account=admin.account)
        target = memberships.select_related("user").get(pk=target.pk)
        if action in {"demote", "block"} and target.is_admin and not target.is_blocked:
            other_admins = memberships.filter(role=Membership.Role.ADMIN, is_blocked=False)
            if not other_admins.exclude(pk=target.pk).exists():
                raise MembershipChangeRefused(
                    "The account needs at least one admin. Make someone else an admin first."
                )
        if action == "promote":
            target.role = Membership.Role.ADMIN
        elif action == "demote":
            target.role = Membership.Role.MEMBER
        else:
            target.is_blocked = action == "block"
        target.save(update_fields=["role", "is_blocked"])
        audit_record(
            account=admin.account,
            actor=admin.user,
            action=f"member_{action}",
            outcome=AuditEvent.Outcome.SUCCESS,
            detail=f"{target.user} was {MEMBERSHIP_ACTIONS[action]} by {admin.user}.",
        )
    return target


def entra_app_set_credential_expiry(*, app: EntraApp, expires_on: date | None, actor: User) -> bool:
    """Record the current client secret's expiry date. False if the credential changed since
    it was shown (the date would then describe another secret)."""
    saved = EntraApp.objects.filter(pk=app.pk, version=app.version).update(
        credential_expires_on=expires_on, updated_at=timezone.now()
    )
    if saved:
        audit_record(
            account=app.account,
            actor=actor,
            action="secret_expiry",
            outcome=AuditEvent.Outcome.SUCCESS,
            detail=f"Client secret expiry date set to {expires_on or 'none'}.",
        )
    return bool(saved)
