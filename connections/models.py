import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Account
from lib.entra.flows import flow_lifetime
from lib.entra.types import Purpose


class DynamicsConnection(models.Model):
    """An account's connection to its Dynamics 365 org: the org, the tokens and their health.

    The app it runs on is the account's ``EntraApp``. The MSAL token cache is stored encrypted
    (``lib/crypto.py``, bound to the account id and field name). ``version`` increases on every
    re-authorization, so a health check or re-authorization that read an older row cannot
    write over a newer one.
    """

    class Status(models.TextChoices):
        CONNECTED = "connected", "Connected"
        WARNINGS = "warnings", "Connected with warnings"
        BUSY = "busy", "Busy"
        NEEDS_REAUTH = "needs_reauth", "Needs re-authentication"
        ERROR = "error", "Error"
        PENDING = "pending", "Pending"
        DISCONNECTED = "disconnected", "Disconnected"

    account = models.OneToOneField(
        Account, on_delete=models.CASCADE, related_name="dynamics_connection"
    )
    org_url = models.URLField(max_length=300)
    token_cache_encrypted = models.TextField(blank=True, default="")
    home_account_id = models.CharField(max_length=200, blank=True, default="")
    connected_as = models.CharField(max_length=256, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    last_error_code = models.CharField(max_length=64, blank=True, default="")
    last_error_message = models.CharField(max_length=1000, blank=True, default="")
    last_verified_at = models.DateTimeField(null=True, blank=True)
    # Dynamics throttled us (429, service protection): no check before this time.
    retry_after_until = models.DateTimeField(null=True, blank=True)
    # A check in progress (``check_connections`` on many processes): until when it is claimed.
    check_claimed_until = models.DateTimeField(null=True, blank=True)
    # A Conditional Access claims challenge to send with the next re-authorization.
    claims_challenge = models.TextField(blank=True, default="")
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Dynamics {self.org_url} for {self.account.account_id}"

    def token_cache_context(self) -> str:
        return f"account:{self.account.account_id}:token_cache"

    def write_health(self, fields: dict) -> bool:
        """Write health fields only on the version that was read; False if it changed."""
        current = DynamicsConnection.objects.filter(pk=self.pk, version=self.version)
        if not current.update(**fields, updated_at=timezone.now()):
            return False
        for name, value in fields.items():
            setattr(self, name, value)
        return True


def _pending_expiry():
    return timezone.now() + flow_lifetime()


class PendingAuthorization(models.Model):
    """Credentials waiting to be proven at Entra ID: a signup or a re-authorization.

    Kept server-side (the browser only carries the flow's state) and encrypted; claimed once;
    expires with the flow it waits for. Nothing of the live account changes until the callback
    has proven these values.
    """

    PURPOSES = [(Purpose.SIGNUP.value, "Signup"), (Purpose.REAUTHORIZE.value, "Re-authorization")]

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    purpose = models.CharField(max_length=16, choices=PURPOSES)
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
    # A client secret, or (with ``certificate_pem``) the private key of a generated certificate.
    credential_encrypted = models.TextField()
    certificate_pem = models.TextField(blank=True, default="")
    org_url = models.URLField(max_length=300)
    secret_expires_on = models.DateField(null=True, blank=True)
    # The versions the re-authorization was started on: a change meanwhile wins over it.
    app_version = models.PositiveIntegerField(null=True, blank=True)
    connection_version = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(default=_pending_expiry)
    consumed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"Pending {self.purpose} {self.id}"

    def credential_context(self) -> str:
        return f"pending:{self.id}:{'private_key' if self.certificate_pem else 'client_secret'}"


class ConnectionNotice(models.Model):
    """An e-mail sent to a connection's admins, by the event it told of: each event once
    (the unique key is the guard, also between processes), never once per check."""

    connection = models.ForeignKey(
        DynamicsConnection, on_delete=models.CASCADE, related_name="notices"
    )
    event = models.CharField(max_length=200)
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "event"], name="notice_once_per_event")
        ]

    def __str__(self) -> str:
        return f"{self.event} for {self.connection_id}"
