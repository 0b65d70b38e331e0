from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import models

from accounts.models import Account, AuditEvent, EntraApp, Membership, User

MASK = "•••••••• (encrypted; never shown)"


class ViewOnlyAdmin(admin.ModelAdmin):
    """Viewable, never added, changed or deleted here (the product's flows own these rows)."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # an account without its app or connection could not sign anyone in


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "display_name", "email", "tenant_id", "is_staff")
    search_fields = ("username", "display_name", "email", "object_id")
    readonly_fields = ("tenant_id", "object_id")
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Entra ID identity", {"fields": ("tenant_id", "object_id", "display_name")}),
    )


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ("user",)


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    list_display = ("company_name", "account_id", "created_at")
    search_fields = ("company_name", "account_id", "entra_app__tenant_id")
    readonly_fields = ("account_id", "created_at")
    inlines = [MembershipInline]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def has_add_permission(self, request) -> bool:
        return False  # an account exists only with its proven connection: sign up instead


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "account", "actor", "action", "outcome", "error_code")
    list_filter = ("action", "outcome")
    search_fields = ("account__account_id", "detail", "error_code")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(EntraApp)
class EntraAppAdmin(ViewOnlyAdmin):
    list_display = ("account", "client_id", "tenant_id", "credential_kind", "credential_set_at")
    search_fields = ("account__account_id", "client_id", "tenant_id")
    fields = (
        "account",
        "client_id",
        "tenant_id",
        "credential_kind",
        "credential",
        "credential_set_at",
        "credential_expires_on",
        "version",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields

    @admin.display(description="Credential")
    def credential(self, obj: EntraApp) -> str:
        return MASK
