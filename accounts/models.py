import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q


def new_account_id() -> str:
    """A random, URL-safe, unguessable account id (96 bits), e.g. ``x3Jm0Qk-pW2rT8aZ``."""
    return secrets.token_urlsafe(12)


class User(AbstractUser):
    """A person. Entra ID users are keyed on ``(tenant_id, object_id)``, never on e-mail;
    display name and e-mail are display data refreshed at each sign-in. Operators created with
    ``createsuperuser`` have no Entra identity."""

    tenant_id = models.CharField(max_length=36, blank=True, default="")
    object_id = models.CharField(max_length=36, blank=True, default="")
    display_name = models.CharField(max_length=256, blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["tenant_id", "object_id"],
                condition=~Q(object_id=""),
                name="user_unique_entra_identity",
            )
        ]

    def __str__(self) -> str:
        return self.display_name or self.email or self.username


class Account(models.Model):
    """A customer company. ``account_id`` is the public identifier in ``/business/<id>``."""

    account_id = models.CharField(
        max_length=32, unique=True, default=new_account_id, editable=False
    )
    company_name = models.CharField(max_length=200)
    phone = models.CharField(max_length=32)
    website = models.URLField(max_length=500)
    tenant_id = models.CharField(max_length=36, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.company_name} ({self.account_id})"


class Membership(models.Model):
    class Role(models.TextChoices):
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    is_blocked = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "user"], name="membership_unique_user")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.account.account_id} as {self.role}"

    @property
    def is_admin(self) -> bool:
        return self.role == self.Role.ADMIN


class AuditEvent(models.Model):
    """Who did what to an account, and how it ended. Never holds a secret or token."""

    class Outcome(models.TextChoices):
        SUCCESS = "success", "Succeeded"
        FAILURE = "failure", "Failed"

    account = models.ForeignKey(
        Account, on_delete=models.CASCADE, related_name="audit_events", null=True, blank=True
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    action = models.CharField(max_length=64)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    detail = models.CharField(max_length=500, blank=True, default="")
    error_code = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.action} {self.outcome}"
