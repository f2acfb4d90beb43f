from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from ops_platform.core.admin import AuditedAdmin, IndexedValuesFilter, LargeTableAdmin, ReadOnlyAdmin
from queues.models import Decision, ExposureCategory, ItemEvent, Queue, ReviewItem


@admin.register(ExposureCategory)
class ExposureCategoryAdmin(AuditedAdmin):
    list_display = ["name", "slug", "daily_cap"]


@admin.register(Queue)
class QueueAdmin(AuditedAdmin):
    list_display = [
        "name",
        "slug",
        "sla",
        "ordering",
        "escalation_target",
        "is_sensitive",
        "exposure_category",
        "is_default_intake",
        "is_active",
    ]
    filter_horizontal = ["policies", "required_skills", "allowed_teams", "allowed_vendors"]


class ItemEventInline(admin.TabularInline):
    model = ItemEvent
    extra = 0
    can_delete = False
    readonly_fields = ("at", "actor_label", "event", "from_state", "to_state", "queue", "data")
    fields = readonly_fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ReviewItem)
class ReviewItemAdmin(LargeTableAdmin):
    """Read-only: items change through the review workflow, never by hand."""

    list_display = [
        "id",
        "source",
        "external_id",
        "kind",
        "state",
        "queue",
        "priority",
        "received_at",
        "due_at",
    ]
    list_filter = ["state", "kind", "queue", ("source", IndexedValuesFilter)]  # source leads (source, external_id)
    list_select_related = ["queue"]
    search_fields = ["external_id", "author_ref"]
    inlines = [ItemEventInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in ReviewItem._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Decision)
class DecisionAdmin(LargeTableAdmin, ReadOnlyAdmin):
    list_display = ["id", "item", "reviewer", "policy", "action", "is_violation", "decided_at"]
    list_select_related = ["item", "reviewer", "policy", "action"]
    list_filter = ["is_violation", "policy", "queue"]
