import secrets
from dataclasses import dataclass
from datetime import date

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q
from django.utils import timezone

from lib import certificates, crypto
from lib.entra.types import AppCredentials

# The Connections page warns this many days before a credential expires.
EXPIRY_WARNING_DAYS = 30


def fit(model: type[models.Model], field: str, value: str) -> str:
    """``value`` cut to the field's ``max_length`` (display data and messages, never ids)."""
    return value[: model._meta.get_field(field).max_length]


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
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.company_name} ({self.account_id})"


@dataclass(frozen=True)
class CredentialExpiry:
    date: date
    days_left: int

    @property
    def expired(self) -> bool:
        return self.days_left < 0

    @property
    def warn(self) -> bool:
        return self.days_left <= EXPIRY_WARNING_DAYS


class EntraApp(models.Model):
    """The company's own app registration in Entra ID, on which every flow of the account runs.

    The credential is stored encrypted (``lib/crypto.py``, bound to the account id and field):
    a client secret, or the private key of a certificate the product generated (whose public
    certificate, kept beside it, tells its thumbprint and expiry exactly). ``credential_kind``
    names which; nothing outside this model branches on it. ``version`` increases on every
    credential change, so an edit made for one credential never lands on its successor. The
    credential a switch replaced is remembered until an admin has removed it from the app
    registration (``previous_credential``).
    """

    class CredentialKind(models.TextChoices):
        SECRET = "secret", "Client secret"
        CERTIFICATE = "certificate", "Certificate"

    account = models.OneToOneField(Account, on_delete=models.CASCADE, related_name="entra_app")
    client_id = models.CharField(max_length=36)
    tenant_id = models.CharField(max_length=36, db_index=True)
    credential_kind = models.CharField(
        max_length=16, choices=CredentialKind.choices, default=CredentialKind.SECRET
    )
    credential_encrypted = models.TextField()
    credential_set_at = models.DateTimeField()
    credential_expires_on = models.DateField(null=True, blank=True)
    certificate_pem = models.TextField(blank=True, default="")
    # What a switch replaced, for "remove it from the app registration" (no secret in it).
    previous_credential = models.CharField(max_length=200, blank=True, default="")
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Entra ID app {self.client_id} of {self.account.account_id}"

    def credential_context(self) -> str:
        field = "private_key" if self.credential_kind == self.CredentialKind.CERTIFICATE else ""
        return f"account:{self.account.account_id}:{field or 'client_secret'}"

    def credential_label(self) -> str:
        """The current credential as the Azure portal lists it (never the secret itself)."""
        if self.credential_kind == self.CredentialKind.CERTIFICATE:
            return f"certificate {certificates.load(self.certificate_pem).sha1_thumbprint}"
        return f"client secret set on {self.credential_set_at:%Y-%m-%d}"

    def store_credentials(self, credentials: AppCredentials, *, expires_on: date | None) -> None:
        """Encrypt new credentials into this (unsaved) row: a secret (its expiry as typed) or a
        certificate's key (its expiry from the certificate). A row that had a credential
        remembers it as the one to remove from the app registration."""
        if self.credential_encrypted:
            self.previous_credential = self.credential_label()
        if credentials.private_key is not None:
            certificate = certificates.load(credentials.certificate_pem)
            self.credential_kind = self.CredentialKind.CERTIFICATE
            self.certificate_pem = certificate.pem
            value, expires_on = credentials.private_key, certificate.not_after.date()
        else:
            self.credential_kind = self.CredentialKind.SECRET
            self.certificate_pem = ""
            value = credentials.client_secret
        self.credential_encrypted = crypto.encrypt(value, context=self.credential_context())
        self.credential_set_at = timezone.now()
        self.credential_expires_on = expires_on

    def credentials(self) -> AppCredentials:
        """The app's credentials for a token request; ``crypto.UndecryptableValue`` when no
        configured key opens the stored secret or key."""
        value = crypto.decrypt(self.credential_encrypted, context=self.credential_context())
        if self.credential_kind == self.CredentialKind.CERTIFICATE:
            return AppCredentials(
                self.client_id,
                self.tenant_id,
                private_key=value,
                certificate_pem=self.certificate_pem,
            )
        return AppCredentials(client_id=self.client_id, tenant=self.tenant_id, client_secret=value)

    def certificate(self) -> certificates.Certificate | None:
        """The current certificate (thumbprint, expiry), when the credential is one."""
        return certificates.load(self.certificate_pem) if self.certificate_pem else None

    def credential_expiry(self) -> CredentialExpiry | None:
        """The recorded expiry of the current credential, counted from today."""
        if self.credential_expires_on is None:
            return None
        days_left = (self.credential_expires_on - timezone.localdate()).days
        return CredentialExpiry(date=self.credential_expires_on, days_left=days_left)


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
    # An admin's choice: the e-mails about the account's Dynamics connection (on by default).
    connection_emails = models.BooleanField(default=True)
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


class RateLimitCounter(models.Model):
    """The counters ``lib/ratelimit.py`` keeps when no Redis is configured. It reads and
    writes this table with SQL, by its name, so that the leaf imports no app."""

    key = models.CharField(max_length=255, primary_key=True)
    hits = models.PositiveIntegerField()
    expires_at = models.FloatField(db_index=True)

    class Meta:
        db_table = "rate_limit_counter"

    def __str__(self) -> str:
        return f"{self.key}: {self.hits}"


class StartedFlow(models.Model):
    """The auth-code flows ``lib/entra/flows.py`` keeps between start and callback, a row
    each, keyed by the flow's state and bound to one browser's session (a hash of its
    binding). It reads and writes this table with SQL, by its name, so that the leaf imports
    no app; never shown in the admin (a row holds the flow's PKCE verifier)."""

    state = models.CharField(max_length=64, primary_key=True)
    binding = models.CharField(max_length=64)
    entry = models.TextField()
    expires_at = models.FloatField(db_index=True)

    class Meta:
        db_table = "entra_started_flow"

    def __str__(self) -> str:
        return "a started flow"
