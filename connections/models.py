import uuid
from dataclasses import dataclass
from datetime import date, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts import entra
from accounts.models import Account, AuditEvent
from accounts.services import audit_record
from connections import crypto

# The Connections page warns this many days before the client secret expires.
EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class SecretExpiry:
    date: date
    days_left: int

    @property
    def expired(self) -> bool:
        return self.days_left < 0

    @property
    def warn(self) -> bool:
        return self.days_left <= EXPIRY_WARNING_DAYS


class DynamicsConnection(models.Model):
    """An account's connection to its Dynamics 365 org through its own Entra ID app.

    The client secret and the MSAL token cache are stored encrypted (connections/crypto.py,
    bound to the account id and field name). ``version`` increases on every credential change,
    so two re-authorizations racing each other cannot interleave their halves.
    """

    class Status(models.TextChoices):
        CONNECTED = "connected", "Connected"
        NEEDS_REAUTH = "needs_reauth", "Needs re-authentication"
        ERROR = "error", "Error"
        PENDING = "pending", "Pending"

    account = models.OneToOneField(
        Account, on_delete=models.CASCADE, related_name="dynamics_connection"
    )
    client_id = models.CharField(max_length=36)
    client_secret_encrypted = models.TextField()
    secret_set_at = models.DateTimeField()
    secret_expires_on = models.DateField(null=True, blank=True)
    org_url = models.URLField(max_length=300)
    tenant_id = models.CharField(max_length=36)
    token_cache_encrypted = models.TextField(blank=True, default="")
    home_account_id = models.CharField(max_length=200, blank=True, default="")
    connected_as = models.CharField(max_length=256, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    last_error_code = models.CharField(max_length=64, blank=True, default="")
    last_error_message = models.CharField(max_length=1000, blank=True, default="")
    last_verified_at = models.DateTimeField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Dynamics {self.org_url} for {self.account.account_id}"

    def secret_context(self) -> str:
        return f"account:{self.account.account_id}:client_secret"

    def token_cache_context(self) -> str:
        return f"account:{self.account.account_id}:token_cache"

    def secret_expiry(self) -> SecretExpiry | None:
        """The recorded expiry of the current client secret, counted from today."""
        if self.secret_expires_on is None:
            return None
        days_left = (self.secret_expires_on - timezone.localdate()).days
        return SecretExpiry(date=self.secret_expires_on, days_left=days_left)

    def app_registration(self) -> entra.AppRegistration:
        """The account's Entra ID app, for flows on its own tenant.

        Raises ``entra.CredentialsUnavailable`` (and marks the connection) when no configured
        key opens the stored secret.
        """
        try:
            secret = crypto.decrypt(self.client_secret_encrypted, context=self.secret_context())
        except crypto.UndecryptableValue as problem:
            self.mark_needs_reauthorization(code="undecryptable_secret", message=str(problem))
            raise entra.CredentialsUnavailable(
                code="undecryptable_secret", credentials_rejected=True
            ) from None
        return entra.AppRegistration(self.client_id, secret, self.tenant_id)

    def mark_needs_reauthorization(self, *, code: str, message: str) -> None:
        """Record that the stored credentials or tokens stopped working (they are kept).

        Applies only if the connection is still the version that was read, so a
        re-authorization that committed meanwhile is never flagged by a stale check; audited
        when the status changes.
        """
        was = self.status
        fields = {
            "status": self.Status.NEEDS_REAUTH,
            "last_error_code": code[:64],
            "last_error_message": message[:1000],
        }
        current = DynamicsConnection.objects.filter(pk=self.pk, version=self.version)
        if not current.update(**fields, updated_at=timezone.now()):
            return
        for name, value in fields.items():
            setattr(self, name, value)
        if was != self.Status.NEEDS_REAUTH:
            audit_record(
                account=self.account,
                actor=None,
                action="connection_needs_reauth",
                outcome=AuditEvent.Outcome.FAILURE,
                detail=f"The Dynamics connection stopped working: {message}"[:500],
                error_code=code,
            )


def _pending_expiry():
    return timezone.now() + timedelta(minutes=settings.AUTH_FLOW_TTL_MINUTES)


class PendingAuthorization(models.Model):
    """Credentials waiting to be proven at Entra ID: a signup or a re-authorization.

    Kept server-side (the browser only carries the flow's state) and encrypted; consumed once;
    expires after ``AUTH_FLOW_TTL_MINUTES``. Nothing of the live connection changes until the
    callback has proven these values.
    """

    class Purpose(models.TextChoices):
        SIGNUP = "signup", "Signup"
        REAUTHORIZE = "reauthorize", "Re-authorization"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    connection = models.ForeignKey(
        DynamicsConnection, on_delete=models.CASCADE, null=True, blank=True
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True
    )
    company_name = models.CharField(max_length=200, blank=True, default="")
    phone = models.CharField(max_length=32, blank=True, default="")
    website = models.URLField(max_length=500, blank=True, default="")
    client_id = models.CharField(max_length=36)
    client_secret_encrypted = models.TextField()
    org_url = models.URLField(max_length=300)
    secret_expires_on = models.DateField(null=True, blank=True)
    connection_version = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(default=_pending_expiry)
    consumed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Pending {self.purpose} {self.id}"

    def secret_context(self) -> str:
        return f"pending:{self.id}:client_secret"

    @property
    def is_expired(self) -> bool:
        return timezone.now() >= self.expires_at
