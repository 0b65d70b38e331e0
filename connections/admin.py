"""Operators see connections' health here, never a secret, ciphertext or token: the encrypted
fields are not in any form or list, and cannot be edited (re-authorize in the product)."""

from django.contrib import admin

from accounts.admin import MASK, ViewOnlyAdmin
from connections.models import DynamicsConnection, PendingAuthorization


@admin.register(DynamicsConnection)
class DynamicsConnectionAdmin(ViewOnlyAdmin):
    list_display = ("account", "org_url", "status", "connected_as", "last_verified_at")
    list_filter = ("status",)
    search_fields = ("account__account_id", "account__company_name", "org_url")
    fields = (
        "account",
        "org_url",
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
        return MASK if obj.token_cache_encrypted else "none"


@admin.register(PendingAuthorization)
class PendingAuthorizationAdmin(ViewOnlyAdmin):
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

    @admin.display(description="Client secret")
    def client_secret(self, obj) -> str:
        return MASK
