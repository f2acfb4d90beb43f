"""Admin for the kernel. Every change made here is written to the audit log."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.db.models import Model
from django.forms.models import model_to_dict
from django.http import HttpRequest

from ops_platform.core.models import (
    ApiClient,
    ApiKey,
    AuditLog,
    DecisionLabel,
    EnforcementAction,
    Policy,
    ReviewerProfile,
    Skill,
    Team,
    User,
    Vendor,
)
from ops_platform.core.services import audit_record

SECRET_FIELDS = {"password", "webhook_secret", "digest"}


def _snapshot(obj: Model) -> dict[str, Any]:
    data = model_to_dict(obj)
    return {
        k: (repr(v) if not isinstance(v, str | int | float | bool | type(None)) else v)
        for k, v in data.items()
        if k not in SECRET_FIELDS
    }


class AuditedAdmin(admin.ModelAdmin):
    """Records before/after of every add, change and delete made through the admin."""

    def save_model(self, request: HttpRequest, obj: Model, form: Any, change: bool) -> None:
        before = _snapshot(type(obj)._default_manager.get(pk=obj.pk)) if change and obj.pk else None
        super().save_model(request, obj, form, change)
        audit_record(
            actor=request.user,  # type: ignore[arg-type]
            action=f"admin.{'change' if change else 'add'}",
            target=obj,
            before=before,
            after=_snapshot(obj),
        )

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        audit_record(actor=request.user, action="admin.delete", target=obj, before=_snapshot(obj))  # type: ignore[arg-type]
        super().delete_model(request, obj)


class ReviewerProfileInline(admin.StackedInline):
    model = ReviewerProfile
    can_delete = False
    filter_horizontal = ["skills"]


@admin.register(User)
class PlatformUserAdmin(AuditedAdmin, UserAdmin):
    inlines = [ReviewerProfileInline]
    list_display = ["username", "first_name", "last_name", "role_list", "is_active"]
    list_filter = ["groups", "is_active"]

    @admin.display(description="roles")
    def role_list(self, obj: User) -> str:
        return ", ".join(obj.roles)


@admin.register(Vendor)
class VendorAdmin(AuditedAdmin):
    list_display = [
        "name",
        "slug",
        "target_sla_attainment",
        "target_quality_score",
        "cost_per_decision",
        "is_active",
    ]


@admin.register(Team)
class TeamAdmin(AuditedAdmin):
    list_display = ["name", "slug", "vendor"]
    list_filter = ["vendor"]


@admin.register(Skill)
class SkillAdmin(AuditedAdmin):
    list_display = ["name", "slug"]


class DecisionLabelInline(admin.TabularInline):
    model = DecisionLabel
    extra = 0


@admin.register(Policy)
class PolicyAdmin(AuditedAdmin):
    list_display = ["name", "slug", "severity", "guidelines_version", "human_review_only", "is_active"]
    inlines = [DecisionLabelInline]
    filter_horizontal = ["enforcement_actions"]
    readonly_fields = ["guidelines_version"]

    def save_model(self, request: HttpRequest, obj: Policy, form: Any, change: bool) -> None:  # type: ignore[override]
        if change and "guidelines" in form.changed_data:
            obj.guidelines_version += 1
        super().save_model(request, obj, form, change)


@admin.register(EnforcementAction)
class EnforcementActionAdmin(AuditedAdmin):
    list_display = ["name", "slug", "strength"]


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    extra = 0
    can_delete = False
    fields = ("lookup", "created_at", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # keys are made by api_client_create / api_key_rotate, which show the key once


@admin.register(ApiClient)
class ApiClientAdmin(AuditedAdmin):
    list_display = ["name", "source", "scopes", "rate_limit_per_minute", "is_active"]
    inlines = [ApiKeyInline]
    exclude = ["webhook_secret"]


@admin.register(AuditLog)
class AuditLogAdmin(admin.ModelAdmin):
    list_display = ["at", "actor_label", "action", "target_type", "target_id"]
    list_filter = ["action", "target_type"]
    search_fields = ["actor_label", "target_id", "action"]
    readonly_fields = tuple(f.name for f in AuditLog._meta.fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
