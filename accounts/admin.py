from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import models

from accounts.models import Account, AuditEvent, Membership, User


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
    list_display = ("company_name", "account_id", "tenant_id", "created_at")
    search_fields = ("company_name", "account_id", "tenant_id")
    readonly_fields = ("account_id", "tenant_id", "created_at")
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
