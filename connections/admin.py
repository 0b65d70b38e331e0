"""Operators see connections' health here, never a secret, ciphertext or token: the encrypted
fields are not in any form or list, and cannot be edited (re-authorize in the product)."""

from django.contrib import admin

from connections.models import DynamicsConnection, PendingAuthorization

_MASK = "•••••••• (encrypted; never shown)"


class _ViewOnlyWithSecretAdmin(admin.ModelAdmin):
    """Viewable, never added or changed here; the client secret shown masked."""

    @admin.display(description="Client secret")
    def client_secret(self, obj) -> str:
        return _MASK

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # an account without its connection could not sign anyone in


@admin.register(DynamicsConnection)
class DynamicsConnectionAdmin(_ViewOnlyWithSecretAdmin):
    list_display = ("account", "org_url", "status", "connected_as", "last_verified_at")
    list_filter = ("status",)
    search_fields = ("account__account_id", "account__company_name", "org_url", "client_id")
    fields = (
        "account",
        "org_url",
        "client_id",
        "client_secret",
        "secret_set_at",
        "secret_expires_on",
        "tenant_id",
        "token_cache",
        "connected_as",
        "status",
        "last_error_code",
        "last_error_message",
        "last_verified_at",
        "version",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(description="Token cache")
    def token_cache(self, obj: DynamicsConnection) -> str:
        return _MASK if obj.token_cache_encrypted else "none"


@admin.register(PendingAuthorization)
class PendingAuthorizationAdmin(_ViewOnlyWithSecretAdmin):
    list_display = ("id", "purpose", "client_id", "org_url", "created_at", "expires_at")
    fields = (
        "purpose",
        "connection",
        "requested_by",
        "company_name",
        "client_id",
        "org_url",
        "client_secret",
        "created_at",
        "expires_at",
    )
    readonly_fields = fields
